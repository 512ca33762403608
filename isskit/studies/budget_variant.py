"""The budget study's variants of the policy: an empirical-Bayes prior, a second pilot.

:class:`BudgetVariant` is :class:`isskit.policies.Budget` (whose checks it runs) with the
study's extras (docs/budget.md): ``prior="eb"``
(:func:`isskit.studies.budget_priors.empirical_prior`) and ``k1 > 0``
(:func:`isskit.studies.budget_priors.two_stage_rule`). Neither is a policy of the
interface: an empirical prior depends on the batch of images, a second pilot adds a
range the interface's one selection count cannot plan. :func:`gain_table` gives the gains
under either prior. Replayed by :func:`isskit.studies.budget_replay.replay_budget`.

This module never prints and never reads a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isskit.policies._budget_gain import DEFAULT_K_MAX, GainTable, jeffreys_gain_table
from isskit.policies.base import DEFAULT_ALPHA
from isskit.policies.budget import DEFAULT_K0, Budget
from isskit.studies.budget_priors import Prior, discrete_gain_table
from isskit.validate import MAX_SAMPLE_SIZE, check_positive_int, check_sample_size

__all__ = ["PRIORS", "BudgetVariant", "as_variant", "gain_table"]

#: Priors on the chosen class's p: Jeffreys' Beta(1/2, 1/2), or empirical Bayes.
PRIORS = ("jeffreys", "eb")


@dataclass(frozen=True)
class BudgetVariant:
    """The budget policy with the study's extras: an empirical-Bayes prior, a second pilot.

    Parameters
    ----------
    k0, price, B, alpha, k_max :
        As :class:`isskit.policies.Budget` (checked by it, in its words).
    prior : {"jeffreys", "eb"}
        Jeffreys' Beta(1/2, 1/2) (DESIGN.md), or an empirical-Bayes prior fitted to the
        pilots of the images replayed together (:func:`empirical_prior`).
    k1 : int
        Second pilot, >= 0 (0: one stage). With ``k1 > 0`` an image draws ``k1`` more pilot
        samples where their expected worth beats stopping after the first pilot; it then
        counts over ``[k0 + k1, k0 + k1 + k)``. Still ``fixed-n``: both pilots come before,
        and apart from, the estimation samples.

    Examples
    --------
    >>> from isskit.studies.budget_variant import BudgetVariant
    >>> v = BudgetVariant(B=20000, k0=100, k1=1000, prior="eb")
    >>> v.name, v.validity, v.max_samples
    ('Budget-B=20000-k0=100-prior=eb-k1=1000', 'fixed-n', 1001100)
    >>> BudgetVariant(price=1e-5).policy.name  # the one-stage Jeffreys rule is the policy
    'Budget-price=0.00001-k0=300'
    """

    k0: int = DEFAULT_K0
    price: float | None = None
    B: float | None = None
    alpha: float = DEFAULT_ALPHA
    prior: str = "jeffreys"
    k_max: int = DEFAULT_K_MAX
    k1: int = 0
    kind: ClassVar[str] = "budget"
    validity: ClassVar[str] = "fixed-n"

    def __post_init__(self):
        policy = Budget(k0=self.k0, price=self.price, B=self.B, alpha=self.alpha,
                        k_max=self.k_max)
        for key in ("k0", "price", "B", "alpha", "k_max"):
            object.__setattr__(self, key, getattr(policy, key))
        prior = str(self.prior).lower()
        if prior not in PRIORS:
            raise ValueError(f"prior ({self.prior!r}) must be one of {', '.join(PRIORS)}")
        object.__setattr__(self, "prior", prior)
        object.__setattr__(self, "k1", check_positive_int(self.k1, "k1", minimum=0,
                                                          maximum=MAX_SAMPLE_SIZE))

    @property
    def policy(self) -> Budget:
        """The policy of :mod:`isskit.policies.budget` with the same shared parameters."""
        return Budget(k0=self.k0, price=self.price, B=self.B, alpha=self.alpha,
                      k_max=self.k_max)

    @property
    def name(self) -> str:
        """The policy's name, then ``-prior=eb`` and ``-k1=<k1>`` where they apply."""
        out = self.policy.name
        if self.prior != "jeffreys":
            out += f"-prior={self.prior}"
        if self.k1:
            out += f"-k1={self.k1}"
        return out

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: the pilot ``[0, k0)``."""
        return self.k0

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``k0 + k1 + k_max``."""
        return self.k0 + self.k1 + self.k_max

    def params(self) -> dict:
        """The parameters, by their names in DESIGN.md (the policy's, then prior and k1)."""
        return {**self.policy.params(), "prior": self.prior, "k1": self.k1}

    def __str__(self) -> str:
        return self.name


def as_variant(policy) -> BudgetVariant:
    """``policy`` as a :class:`BudgetVariant` (a :class:`Budget` becomes its one-stage twin)."""
    if isinstance(policy, BudgetVariant):
        return policy
    if isinstance(policy, Budget):
        return BudgetVariant(k0=policy.k0, price=policy.price, B=policy.B,
                             alpha=policy.alpha, k_max=policy.k_max)
    raise ValueError(f"policy ({policy!r}) must be a Budget or a BudgetVariant")


def gain_table(k0, sigma, alpha, *, k_max=DEFAULT_K_MAX, prior=None) -> GainTable:
    """The posterior expected radius ``G(x, k)`` for every pilot count, on the k grid.

    Parameters
    ----------
    k0 : int
        Pilot size, >= 1.
    sigma, alpha : float
        Noise level and one-sided failure probability (< 1/2).
    k_max : int
        Largest estimation size on the grid.
    prior : Prior, optional
        A discrete prior (:func:`empirical_prior`) fitted at this ``k0``; default Jeffreys'
        (the policy's table, cached per normalised parameters).

    Returns
    -------
    GainTable

    Examples
    --------
    >>> from isskit.studies.budget_variant import gain_table
    >>> t = gain_table(300, sigma=0.5, alpha=0.001)
    >>> t.gain.shape == (301, t.k.size)
    True
    >>> bool(t.gain[300, -1] > t.gain[250, -1] > 0 == t.gain[300, 5])  # k = 5 cannot certify
    True
    """
    if prior is None:
        return jeffreys_gain_table(k0, sigma, alpha, k_max=k_max)
    k0 = check_sample_size(k0, "k0")
    if not isinstance(prior, Prior):
        raise ValueError(f"prior ({prior!r}) must be None (Jeffreys) or a Prior")
    if prior.k0 != k0:
        raise ValueError(f"prior was fitted at k0 = {prior.k0}, not k0 = {k0}")
    return discrete_gain_table(prior, sigma, alpha, k_max)
