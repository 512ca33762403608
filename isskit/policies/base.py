"""The policy interface: what every certification policy says about itself, in one place.

A policy is a frozen, self-validating dataclass deriving from :class:`Policy`. Its module
says everything about it (DESIGN.md, "A policy is one unit"): its parameters and their
checks, which samples of a stream it reads in which order, how it decides from counts,
what it consumes and its validity class. Replay (:mod:`isskit.replay`), the validity audit
(:mod:`isskit.studies.audit`), the oracle comparison and online certification all execute that one
definition; none of them knows a policy class by name.

A *radius policy* (:class:`RadiusPolicy`, "what radius can I certify?") works in two steps
over one image's stream ``labels[0:N]``:

1. **selection**: the class is the most frequent label of ``labels[0:m]`` with
   ``m = selection_size`` (ties to the smallest label); let ``x`` be its count there;
2. **plan**: from ``x`` alone, :meth:`RadiusPolicy.plan` gives the count range
   ``[start, start + k)`` the chosen class is counted over (``k = 0`` abstains without an
   estimate). The certificate is then Cohen's one-sided Clopper-Pearson bound at the
   policy's ``alpha`` on that count, and the image consumes ``max(m, start + k)`` samples.

That is all a replay, an audit or an online run needs: the replay counts ranges on its
index, the audit knows the law of a range's count given the selection count (binomial
where the ranges are disjoint, hypergeometric inside the selection), and an online run
draws up to ``max(m, start + k)``.

A new policy registers its spec keyword with :func:`register`; :mod:`isskit.policies.spec`
then parses it, and replay, audit and export take it with no change elsewhere
(docs/policies.md shows one).

This module imports nothing heavier than NumPy and never reads a store.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

# the naming rule and the outcome records live in their own modules; policies import them here
from isskit.policies._naming import SHORTHAND_UNIT as SHORTHAND_UNIT
from isskit.policies._naming import fmt as fmt
from isskit.policies._naming import name_suffix as name_suffix
from isskit.policies._naming import units as units
from isskit.policies._outcomes import Counted as Counted
from isskit.policies._outcomes import CountPlan as CountPlan
from isskit.policies._outcomes import Decided as Decided

__all__ = [
    "DEFAULT_ALPHA",
    "KINDS",
    "CountPlan",
    "Counted",
    "Decided",
    "DecisionPolicy",
    "Policy",
    "RadiusPolicy",
    "name_suffix",
    "register",
]

#: Default one-sided failure probability: Cohen et al. and Chen et al. both certify at 0.001.
DEFAULT_ALPHA = 0.001

#: Spec keyword -> policy class, filled by :func:`register` as policy modules are imported.
KINDS: dict[str, type] = {}


def register(cls):
    """Class decorator: make a policy class known to the spec language by its ``kind``.

    Parameters
    ----------
    cls : type
        A frozen dataclass deriving from :class:`Policy`, with a ``kind`` class variable.

    Returns
    -------
    type
        ``cls`` itself.
    """
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind.isidentifier() or kind != kind.lower():
        raise ValueError(f"policy class {cls.__name__} needs a lower-case identifier kind")
    if not issubclass(cls, Policy):
        raise ValueError(f"policy class {cls.__name__} must derive from isskit.policies.Policy")
    other = KINDS.get(kind)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"policy kind {kind!r} is taken by {other.__name__}")
    KINDS[kind] = cls
    return cls


class Policy:
    """Base of every certification policy (a frozen dataclass in its own module).

    Subclasses set the class variables ``kind`` (the spec keyword), ``question``
    (``"radius"`` or ``"decision"``) and ``validity`` (DESIGN.md's validity class: for
    example ``"fixed-n"``), and define :attr:`name`, :meth:`params` and
    :attr:`max_samples`.
    """

    kind: ClassVar[str]
    question: ClassVar[str]
    validity: ClassVar[str]

    @property
    def name(self) -> str:  # pragma: no cover - every policy defines it
        """Readable name, unique among the policies of one kind (the results' ``policy``)."""
        raise NotImplementedError

    def params(self) -> dict:  # pragma: no cover - every policy defines it
        """The policy's parameters by their names in the paper, with ``kind`` first."""
        raise NotImplementedError

    @property
    def max_samples(self) -> int:  # pragma: no cover - every policy defines it
        """Most samples one image can consume."""
        raise NotImplementedError

    @property
    def reference_size(self) -> int | None:
        """The IAS sample size this policy is measured against by default, if its own.

        ISS accelerates ``IAS(k_bar)``; policies without a budget of their own return
        ``None`` and are compared with the largest one of the replay
        (:meth:`default_reference`).
        """
        return None

    @property
    def budget(self) -> int:
        """The sample size the policy spends on its estimate when nothing else decides it."""
        return self.max_samples

    def default_reference(self, policies=()):
        """The reference of MAD and speed-up when none is given: ``IAS(n, alpha)``.

        ``n`` is the policy's own :attr:`reference_size` where it has one (ISS: its
        ``k_bar``), else the largest :attr:`reference_size` among ``policies`` (the paper's
        Table 1 compares IAS-2.6 with IAS-10 beside ISS-10-x), else the largest
        :attr:`budget` among ``policies`` and this policy.

        Parameters
        ----------
        policies : sequence of Policy
            Every policy of the replay.

        Returns
        -------
        Policy
        """
        from isskit.policies.ias import IAS

        # decision policies' budgets are stopping limits, not sample sizes to compare with
        policies = [p for p in policies if p.question == "radius"]
        n = self.reference_size
        if n is None:
            own = [p.reference_size for p in policies if p.reference_size is not None]
            n = max(own) if own else max([p.budget for p in policies] + [self.budget])
        return IAS(n=n, alpha=self.alpha)

    @classmethod
    def shorthand_grid(cls, decline, b, head: str) -> dict:
        """The paper-style shorthand ``<KIND>-<a>`` of a policy with a ``shorthand_key``.

        ``a`` (in units of 10,000 samples) becomes ``shorthand_key``, which
        :mod:`isskit.policies.spec` fills in; this returns the grid of the rest. The default
        takes no decline and no second number (``IAS-2.6``, ``Cohen-10``).
        """
        if decline is not None or b is not None:
            raise ValueError(
                f"{cls.kind} shorthand {head!r} takes one number, the sample size in units "
                f"of 10,000 (e.g. {getattr(cls, 'shorthand_example', cls.__name__ + '-10')})"
            )
        return {}

    def __str__(self) -> str:
        return self.name


class RadiusPolicy(Policy):
    """A policy that certifies a radius: selection on ``[0, m)``, then one count range.

    Subclasses define :attr:`selection_size` and :meth:`plan`, and have an ``alpha``.
    """

    question: ClassVar[str] = "radius"

    @property
    def selection_size(self) -> int:  # pragma: no cover - every policy defines it
        """``m``: the class is the most frequent label of ``labels[0:m]``."""
        raise NotImplementedError

    @property
    def fixed_samples(self) -> bool:
        """Whether every image consumes :attr:`max_samples` (the plan ignores the pilot)."""
        return False

    def plan(self, x, *, sigma: float) -> CountPlan:  # pragma: no cover - every policy
        """The count range for selection counts ``x``.

        Parameters
        ----------
        x : ndarray of int64
            Count of the chosen class in ``labels[0:m]``, one per image (or per distinct
            count: the result must depend on ``x`` alone).
        sigma : float
            Noise level of the streams (for policies whose size depends on the radius).

        Returns
        -------
        CountPlan
            ``start`` and ``k`` broadcastable against ``x``.
        """
        raise NotImplementedError

    def fit(self, x, *, sigma: float, samples_per_image: int | None = None) -> RadiusPolicy:
        """The policy ready to plan a set of images, from every image's selection count.

        Most policies plan each image from its own selection count and return themselves.
        A policy whose rule depends on the whole set (the budget policy with a mean budget
        ``B``: its price is solved over the images) returns the per-image policy it
        implies, which :meth:`plan` then answers; replay calls this once per policy
        before planning, and reports what the fitted policy's :meth:`params` add.

        Parameters
        ----------
        x : ndarray of int64, shape (n,)
            Count of the chosen class in ``labels[0:m]`` of every image replayed together.
        sigma : float
            Noise level of the streams.
        samples_per_image : int, optional
            Samples each stream holds (N), where known.

        Returns
        -------
        RadiusPolicy
            ``self`` by default.
        """
        return self

    def samples_consumed(self, plan: CountPlan):
        """Samples an image consumes under ``plan``: ``max(m, start + k)``."""
        return np.maximum(self.selection_size, np.asarray(plan.start) + np.asarray(plan.k))

    @property
    def static_need(self) -> int:
        """Samples every image needs whatever its stream: its size if fixed, else ``m``."""
        return self.max_samples if self.fixed_samples else self.selection_size

    def needs(self, labels, *, sigma: float, true_label: int | None = None):
        """Evaluate the policy on a stream prefix: decided, or the samples it needs.

        DESIGN.md: "a policy evaluated on a stream prefix either decides, or answers with
        the least total number of samples it needs". ``isskit certify`` draws up to that
        number and asks again, so online certification runs this one definition, from
        :attr:`selection_size` and :meth:`plan` as replay does.

        Parameters
        ----------
        labels : array of int, shape (t,)
            The image's first ``t`` labels in draw order.
        sigma : float
            Noise level (for :meth:`plan`).
        true_label : int, optional
            Unused (a radius policy chooses its class); accepted so that every policy
            is asked the same way (:meth:`DecisionPolicy.needs`).

        Returns
        -------
        int or Counted
            The least total number of samples (> ``t``) needed before the policy can
            decide, or what it counted once ``t`` suffices.
        """
        labels = np.asarray(labels)
        if self.fixed_samples and labels.size < self.max_samples:
            # it consumes that many whatever the stream: ask for them at once, not m first
            return int(self.max_samples)
        m = int(self.selection_size)
        if labels.size < m:
            return m
        # the most frequent label of the selection, ties to the smallest (argmax: first)
        counts = np.bincount(labels[:m].astype(np.int64), minlength=1)
        chosen = int(np.argmax(counts))
        x = np.asarray([counts[chosen]], dtype=np.int64)
        plan = self.plan(x, sigma=sigma)
        start, k, k_hat = (int(np.asarray(v).reshape(-1)[0]) for v in
                           (plan.start, plan.k, plan.k_hat))
        samples = max(m, start + k)
        if labels.size < samples:
            return samples
        k_A = int(np.count_nonzero(labels[start:start + k] == chosen))
        return Counted(chosen=chosen, k_A=k_A, k=k, samples=samples, k_hat=k_hat)

#: The reference of a decision policy's speed-up when none is given: Cohen's CERTIFY with
#: n0 = 100, n = 100,000 (Cohen et al. 2019; the issue's default ``cohen n0=100 n=100000``).
DECISION_REFERENCE_N0 = 100
DECISION_REFERENCE_N = 100_000


class DecisionPolicy(Policy):
    """A policy that answers "certified at radius ``r``?": 1 certified, 0 not, -1 undecided.

    Subclasses (:mod:`isskit.policies.adaptive`, :mod:`~isskit.policies.staged`,
    :mod:`~isskit.policies.cs`) have ``r`` and ``alpha`` fields, and say what they need
    from a stream index:

    * ``uses_true_label``: the policy tests ``labels == true label`` (``staged``, ``cs``):
      the index holds a bit vector of each image's true label;
    * :attr:`selection_ranges`: ``[start, stop)`` ranges whose mode chooses a class
      (``adaptive``'s stages): the index holds those modes and a bit vector of every class
      they choose; the class is then counted over :attr:`estimation_ranges`.

    Their evaluation over those arrays is :mod:`isskit.decision` (one function per family);
    ACR and a radius grid do not apply to them.
    """

    question: ClassVar[str] = "decision"
    uses_true_label: ClassVar[bool] = False
    r: float
    alpha: float

    @property
    def selection_ranges(self) -> tuple[tuple[int, int], ...]:
        """``[start, stop)`` ranges whose most frequent label the policy needs (none here)."""
        return ()

    @property
    def estimation_ranges(self) -> tuple[tuple[int, int], ...]:
        """``[start, stop)`` ranges the chosen classes are counted over (none here)."""
        return ()

    @property
    def static_need(self) -> int:
        """Samples every image needs whatever its stream: the first draw that may decide."""
        return 1

    def default_reference(self, policies=()):
        """Cohen's CERTIFY ``Cohen(n0=100, n=100000)`` at this policy's ``alpha``.

        Its certified accuracy at ``r`` counts an image certified when its radius is at least
        ``r`` (the rule of the decision policies, not the strict ``>`` of CA on a grid).
        """
        from isskit.policies.cohen import Cohen

        return Cohen(n0=DECISION_REFERENCE_N0, n=DECISION_REFERENCE_N, alpha=self.alpha)

    def needs(self, labels, *, sigma: float, true_label: int | None = None):
        """Evaluate the policy on a stream prefix: decided, or the samples it needs.

        The same contract as :meth:`RadiusPolicy.needs`, by the same code replay runs:
        the policy's evaluation in :mod:`isskit.decision` (``decide_adaptive``,
        ``decide_staged``, ``decide_cs``) on the one stream ``labels`` with
        ``online=True``, which answers :data:`isskit.decision.NEED_MORE` and the least
        total the policy needs where the prefix cannot decide it yet (adaptive and
        staged: the end of the next stage; cs: the next draw at which a threshold can be
        crossed). Drawing up to that number and asking again therefore gives the
        decision and the samples replay finds on the whole stream.

        Parameters
        ----------
        labels : array of int, shape (t,)
            The image's first ``t`` labels in draw order.
        sigma : float
            Noise level of the stream (``p0 = Phi(r / sigma)``).
        true_label : int, optional
            The image's true label: required by the policies that test it
            (:attr:`uses_true_label`: ``staged``, ``cs``).

        Returns
        -------
        int or Decided
            The least total number of samples (> ``t``) needed before the policy can
            decide, or its answer once ``t`` suffices.

        Raises
        ------
        ValueError
            ``true_label`` missing where the policy tests it, or bad parameters.

        Examples
        --------
        >>> from isskit.policies import Staged
        >>> p = Staged(r=0.25, stages=(100, 1000))
        >>> p.needs([3] * 40, sigma=0.5, true_label=3)
        100
        >>> p.needs([3] * 100, sigma=0.5, true_label=3)
        Decided(decision=1, samples=100, prediction=3)
        """
        from isskit.decision import NEED_MORE

        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be one stream (1-D), got shape {labels.shape}")
        if self.uses_true_label:
            if true_label is None:
                raise ValueError(f"policy {self.name} tests the true label: give true_label")
            true_label = int(true_label)
        decision, samples, prediction = self._decide_prefix(labels, sigma, true_label)
        if int(decision) == NEED_MORE:
            return int(samples)
        return Decided(decision=int(decision), samples=int(samples),
                       prediction=int(prediction))

    def _decide_prefix(self, labels, sigma, true_label):  # pragma: no cover - every policy
        """``(decision, samples, prediction)`` of :mod:`isskit.decision` on one prefix, online."""
        raise NotImplementedError
