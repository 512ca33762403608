"""The budget study's replay from plain arrays: pilot counts in, certificates out.

:func:`plan_budget` gives each image's estimation size and :func:`replay_budget` its
certificate, for the policy (:class:`isskit.policies.Budget`: the one-stage Jeffreys case
calls its own :meth:`~isskit.policies.Budget.fit` and :meth:`~isskit.policies.Budget.k`)
and the study's variants (:class:`isskit.studies.budget_variant.BudgetVariant`), from pilot
counts and a counting callable (a stream index answers it). :func:`isskit.replay.replay`
replays the policy itself over a store; this module is what ``bench/budget_study.py`` runs
for every variant on the same streams.

With ``B`` and a second pilot, the price that decides who draws it is solved on the
expected samples: it may not see any second pilot, since those samples are estimation
samples of the images that stop after one. A second price, on the pooled counts of the
images that drew it, then shares what the others left of ``B`` among them.

This module never prints, never reads a store and never imports click: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from isskit._bisect import bisect_float
from isskit._renamed import renamed as _renamed
from isskit.policies._budget_gain import GainTable, check_pilots, frozen
from isskit.policies.base import fmt
from isskit.policies.budget import check_B, solve_price
from isskit.replay.planner import _certify
from isskit.studies.budget_priors import Prior, empirical_prior, pilot_predictive, two_stage_rule
from isskit.studies.budget_variant import as_variant, gain_table
from isskit.validate import check_sample_size, check_sigma

__all__ = ["BudgetPlan", "BudgetReplay", "plan_budget", "replay_budget"]

@dataclass(frozen=True, eq=False)
class BudgetPlan:
    """How many fresh samples each image gets: what replay and ``certify`` need before counting.

    Attributes
    ----------
    k : ndarray of int64
        Estimation sample size per image (0 abstains after the pilot).
    start : ndarray of int64
        Where each image's count range ``[start, start + k)`` begins: ``k0``, or
        ``k0 + k1`` after a second pilot.
    samples : ndarray of int64
        Samples consumed, ``start + k``.
    second : ndarray of bool
        Which images drew the second pilot (all False for one stage).
    price : float
        The price used: given, or the one the mean budget ``B`` implied (with a second
        pilot: the price that chose who draws it, meeting B on average).
    mean_samples : float
        ``mean(samples)``.
    prior : Prior or None
        The empirical-Bayes prior used (None for Jeffreys').
    price_second : float
        With ``B`` and a second pilot: the price that then shared what was left of ``B``
        among the images that drew it (by their pooled counts), so that the mean meets
        ``B`` within one image's step; NaN otherwise (inf where nothing was left).
    """

    k: np.ndarray = field(repr=False)
    start: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)
    second: np.ndarray = field(repr=False)
    price: float
    mean_samples: float
    prior: Prior | None = field(repr=False)
    price_second: float = math.nan


def _check_counts(k_A, m, most):
    k_A = np.asarray(k_A)
    if k_A.shape != (m,) or k_A.dtype.kind not in "iu" or np.any((k_A < 0) | (k_A > most)):
        raise ValueError(f"count must return {m} integer counts in [0, stop - start] "
                         f"(got {k_A!r})")
    return k_A.astype(np.int64)


@_renamed(n_samples="samples_per_image")
def plan_budget(policy, pilot_counts, *, sigma: float, samples_per_image: int | None = None,
                image_ids=None, prior: Prior | None = None, count=None) -> BudgetPlan:
    """Each image's estimation size from its pilot count (and, with ``B``, everyone's).

    Parameters
    ----------
    policy : Budget or BudgetVariant
        The policy, or one of the study's variants.
    pilot_counts : array_like of int, shape (n,)
        Each image's count of its chosen class over the pilot ``[0, k0)``.
    sigma : float
        Noise level.
    samples_per_image : int, optional
        Samples per stream, N: with ``B``, sizes above what the streams hold are not
        considered (and a ``B`` the streams cannot meet is an error); with ``price``, an
        image that needs more than N is an error naming it.
    image_ids : array_like of int, optional
        Dataset index of each image, for error messages (default 0..n-1).
    prior : Prior, optional
        For ``prior="eb"``: a prior already fitted to these pilot counts
        (:func:`empirical_prior`), so that several budgets over the same images fit it
        once. Default: fitted here.
    count : callable, optional
        Needed with ``k1 > 0`` only: ``count(start, stop)`` as in :func:`replay_budget`,
        asked once for the second pilots ``[k0, k0 + k1)`` (an empty range elsewhere).

    Returns
    -------
    BudgetPlan
    """
    policy = as_variant(policy)
    sigma = check_sigma(sigma)
    k0, k1 = policy.k0, policy.k1
    x = check_pilots(pilot_counts, k0)
    m = x.size
    ids = np.arange(m) if image_ids is None else np.asarray(image_ids)
    k_cap = None
    if samples_per_image is not None:
        samples_per_image = check_sample_size(samples_per_image, "samples_per_image")
        if samples_per_image < k0:
            raise ValueError(
                f"policy {policy.name} needs its pilot of {k0} samples for image "
                f"{int(ids[0])}, but each stream holds {samples_per_image} (N)"
            )
        k_cap = samples_per_image - k0
    if policy.prior == "jeffreys":
        if prior is not None:
            raise ValueError(f"policy {policy.name} has Jeffreys' prior: give no fitted prior")
    elif prior is None:
        prior = empirical_prior(x, k0)
    gains = gain_table(k0, sigma, policy.alpha, k_max=policy.k_max, prior=prior)
    second = np.zeros(m, bool)
    start = np.full(m, k0, np.int64)
    price_second = math.nan
    if k1 == 0 and prior is None:
        # DESIGN.md's policy itself: its own fit (the price B implies) and its own rule
        fitted = policy.policy.fit(x, sigma=sigma, samples_per_image=samples_per_image)
        k, price = np.array(fitted.k(x, sigma=sigma)), fitted.price
    elif k1 == 0:
        if policy.B is not None:
            sol = solve_price(gains, x, policy.B, k_cap=k_cap, samples_per_image=samples_per_image)
            k, price = np.array(sol.k), sol.price
        else:
            price = policy.price
            k = gains.choose(price, x)
    else:
        if count is None:
            raise ValueError(f"policy {policy.name} draws a second pilot: give count, which "
                             "counts it")
        later = None if prior is None else Prior(p=prior.p, weight=prior.weight, k0=k0 + k1)
        both = gain_table(k0 + k1, sigma, policy.alpha, k_max=policy.k_max, prior=later)
        predictive = pilot_predictive(k0, k1, prior)
        if policy.B is not None:
            price = _solve_two_stage(gains, both, predictive, x, policy.B, k_cap, samples_per_image)
        else:
            price = policy.price
        rule = two_stage_rule(gains, both, predictive, price, k_cap=k_cap)
        second = rule.second[x]
        start = np.where(second, k0 + k1, k0)
        x1 = _check_counts(count(np.full(m, k0), start), m, k1)
        k = np.where(second, rule.k_two[x + x1], rule.k_one[x])
        if policy.B is not None and np.any(second):
            # The price above met B on average over the second pilots; now that they are
            # drawn, what the images that stopped after one pilot left of B is shared among
            # the others by a second price, on their pooled counts alone: B is met within
            # one image's step, and no price ever sees an estimation sample.
            rest = policy.B * m - float(np.sum((k0 + k)[~second]))
            k[second], price_second = _share_rest(both, (x + x1)[second], rest,
                                                  None if k_cap is None else k_cap - k1)
    if samples_per_image is not None and np.any(start + k > samples_per_image):
        over = np.flatnonzero(start + k > samples_per_image)
        more = f" (and {over.size - 1} more images)" if over.size > 1 else ""
        i = int(over[0])
        raise ValueError(
            f"policy {policy.name} needs {int(start[i] + k[i])} samples for image "
            f"{int(ids[i])}{more}, but each stream holds {samples_per_image} (N); sample more, "
            "raise the price, or lower k_max"
        )
    samples = start + k
    return BudgetPlan(k=frozen(k), start=frozen(start), samples=frozen(samples),
                      second=frozen(second), price=float(price),
                      mean_samples=float(samples.mean()), prior=prior,
                      price_second=float(price_second))


def _share_rest(both: GainTable, pooled, total: float, k_cap):
    """Estimation sizes of the images after a second pilot, spending ``total`` samples.

    ``total`` covers their pilots too. The budget rule's price for their mean
    ``total / n``; with nothing left beyond the pilots they all abstain, and with more than
    they can spend each gets what it would at price 0.
    """
    n = pooled.size
    mean = total / n
    if not mean > both.k0:
        return np.zeros(n, np.int64), math.inf
    most = both.k0 + float(np.mean(both.choose(0.0, pooled, k_cap=k_cap)))
    if mean >= most:
        return both.choose(0.0, pooled, k_cap=k_cap), 0.0
    sol = solve_price(both, pooled, mean, k_cap=k_cap)
    return np.array(sol.k), sol.price


def _solve_two_stage(first, both, predictive, x, B, k_cap, samples_per_image) -> float:
    """The price at which the images' expected samples (over their second pilots) meet B."""
    k0 = first.k0
    B = check_B(B, k0)
    cnt = np.bincount(x, minlength=k0 + 1).astype(np.float64)
    total = B * x.size

    def spent(price):
        return float(cnt @ two_stage_rule(first, both, predictive, price,
                                          k_cap=k_cap).expected_samples)

    at_zero = spent(0.0)
    if at_zero < total:
        where = (
            f"streams of N = {samples_per_image} samples"
            if samples_per_image is not None
            else "k_max"
        )
        raise ValueError(
            f"B ({fmt(B)}) is larger than these images can spend: at most "
            f"{at_zero / x.size:.6g} mean samples on average (the limit of the {where})"
        )
    if at_zero == total:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        top = max(float(np.max(g.gain[:, 1:] / g.k[1:])) for g in (first, both))
    _, hi = bisect_float(np.zeros(1), np.array([max(2.0 * top, np.finfo(float).tiny)]),
                         lambda price, rows: np.array([spent(price[0]) <= total]))
    return float(hi[0])


@dataclass(frozen=True, eq=False)
class BudgetReplay:
    """Per-image results of the budget policy (DESIGN.md: a radius policy's four outputs).

    Attributes
    ----------
    prediction : ndarray of int64
        The chosen class where certified, -1 (abstain) elsewhere.
    radius : ndarray of float64
        Certified radius, 0 where abstaining.
    p_lower : ndarray of float64
        Cohen's one-sided bound on the ``k`` samples after the pilot; NaN where ``k = 0``
        (no estimate was made).
    samples : ndarray of int64
        Samples consumed, ``k0 + k``.
    k : ndarray of int64
        Estimation sample size.
    price : float
        The price used: given, or the one the mean budget ``B`` implied.
    mean_samples : float
        ``mean(samples)``.
    """

    prediction: np.ndarray = field(repr=False)
    radius: np.ndarray = field(repr=False)
    p_lower: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)
    k: np.ndarray = field(repr=False)
    price: float
    mean_samples: float


@_renamed(n_samples="samples_per_image")
def replay_budget(policy, pilot_counts, count, *, sigma: float, chosen,
                  samples_per_image: int | None = None, image_ids=None,
                  prior: Prior | None = None) -> BudgetReplay:
    """Replay the budget policy from plain arrays: pilot counts in, certificates out.

    :func:`plan_budget`, then the count of each image's chosen class over ``[k0, k0 + k)``
    (``[k0 + k1, k0 + k1 + k)`` after a second pilot) and Cohen's bound on it.

    Parameters
    ----------
    policy : Budget or BudgetVariant
        The policy, or one of the study's variants.
    pilot_counts : array_like of int, shape (n,)
        Each image's count of its chosen class over the pilot ``[0, k0)``.
    count : callable
        ``count(start, stop)`` -> int array (n,): each image's count of its chosen class
        over ``[start[i], stop[i])`` (``stop <= start`` gives 0). Replay answers it from its
        stream index: with ``j = index.column(k0)``, ``x = index.mode_counts[:, j]``,
        ``chosen = index.modes[:, j]`` and ``slot = index.slot[:, j]``, the call
        ``isskit.replay._kernels.count_ranges(slot[None], start[None], stop[None], index.bits,
        index.cum, out[None])`` fills ``out``, O(1) per image.
    sigma : float
        Noise level.
    chosen : array_like of int, shape (n,)
        Each image's chosen class (its pilot's most frequent label).
    samples_per_image, image_ids, prior :
        As in :func:`plan_budget`. With ``k1 > 0``, ``count`` is asked first for the second
        pilots ``[k0, k0 + k1)`` (an empty range where none is drawn).

    Returns
    -------
    BudgetReplay

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.policies import Budget
    >>> from isskit.studies.budget_replay import replay_budget
    >>> rng = np.random.default_rng(0)
    >>> hits = rng.random((50, 40_000)) < 0.98  # 50 streams, chosen class drawn w.p. 0.98
    >>> cum = np.concatenate([np.zeros((50, 1), int), np.cumsum(hits, axis=1)], axis=1)
    >>> count = lambda a, b: cum[np.arange(50), b] - cum[np.arange(50), a]
    >>> res = replay_budget(Budget(B=10_000, k0=300), cum[:, 300], count, sigma=0.5,
    ...                     chosen=np.zeros(50, int), samples_per_image=40_000)
    >>> bool(9_000 < res.mean_samples <= 10_000), bool(np.all(res.prediction == 0))
    (True, True)
    """
    policy = as_variant(policy)
    m = np.asarray(pilot_counts).size
    chosen = np.asarray(chosen)
    if chosen.shape != (m,) or chosen.dtype.kind not in "iu":
        raise ValueError(f"chosen must hold {m} integer classes (got {chosen.shape} "
                         f"{chosen.dtype})")
    plan = plan_budget(policy, pilot_counts, sigma=sigma, samples_per_image=samples_per_image,
                       image_ids=image_ids, prior=prior, count=count)
    k = np.array(plan.k)
    start = np.array(plan.start)
    k_A = _check_counts(count(start, start + k), m, k.max(initial=0))
    if np.any(k_A > k):
        raise ValueError(f"count must return {m} integer counts in [0, stop - start] "
                         f"(got {k_A!r})")
    # the certificate is replay's own rule (Cohen's bound on the count; k = 0 abstains)
    prediction, radius, p_lower = (a[0] for a in _certify(
        chosen.astype(np.int64)[None].copy(), k_A[None], k[None], np.array([policy.alpha]),
        sigma))
    return BudgetReplay(prediction=frozen(prediction), radius=frozen(radius),
                        p_lower=frozen(p_lower), samples=plan.samples, k=plan.k,
                        price=plan.price, mean_samples=plan.mean_samples)
