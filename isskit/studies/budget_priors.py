"""The budget study's priors and its two-stage rule, beyond DESIGN.md's one-stage policy.

:mod:`isskit.policies.budget` is the policy (Jeffreys' prior, one pilot); the study of
docs/budget.md (:mod:`isskit.budget`, ``bench/budget_study.py``) also measures

* **empirical Bayes** (:func:`empirical_prior`): a discrete prior on ``p`` fitted by
  maximum likelihood (EM, the NPMLE) to the pilot counts of all the images replayed
  together. It uses only pilots, which are independent of every image's estimation
  samples, so the certificate keeps alpha; the rule then depends on the batch of images;
* **a known distribution of p** (:func:`binned_prior`), for synthetic or imported streams:
  the best a one-stage rule of this form can do with the same pilots;
* **a second pilot** (:func:`two_stage_rule`): after the first pilot an image may draw
  ``k1`` more pilot samples where the objective expected after them (over their predictive
  distribution, :func:`pilot_predictive`) minus ``price * k1`` beats stopping.

The gains under a discrete prior (:func:`discrete_gain_table`) use the policy's grid of k
and radii at its integration nodes (:mod:`isskit.policies._budget_gain`), and the rule
maximised is the policy's (``GainTable.choose``).

This module never prints and never reads a store: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, gammaln, xlogy

from isskit.policies._budget_gain import (
    Q_NODES,
    UNIFORM_STEP,
    GainTable,
    check_pilots,
    check_price,
    frozen,
    k_grid,
    radius_nodes,
)
from isskit.stats import expected_radius
from isskit.validate import check_alpha, check_sample_size, check_sigma

__all__ = [
    "Prior",
    "TwoStageRule",
    "binned_prior",
    "discrete_gain_table",
    "empirical_prior",
    "pilot_predictive",
    "two_stage_rule",
]


@dataclass(frozen=True, eq=False)
class Prior:
    """A discrete prior on p for the pilots of size ``k0`` (:func:`empirical_prior` fits one).

    Attributes
    ----------
    p : ndarray of float64
        Support points in [0, 1].
    weight : ndarray of float64
        Prior probability of each point (>= 0, sums to 1).
    k0 : int
        The pilot size the posterior is taken at.
    iterations : int
        EM iterations run (0 for a prior given outright).
    log_likelihood : float
        Marginal log-likelihood of the pilot counts it was fitted to (binomial
        coefficients omitted); NaN for a prior given outright.
    """

    p: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    k0: int
    iterations: int = 0
    log_likelihood: float = math.nan

    def __post_init__(self):
        p = frozen(np.asarray(self.p, dtype=np.float64).reshape(-1))
        w = frozen(np.asarray(self.weight, dtype=np.float64).reshape(-1))
        if p.size == 0 or w.shape != p.shape:
            raise ValueError(f"p ({p.size} points) and weight ({w.size}) must match, >= 1 each")
        if np.any(~((p >= 0) & (p <= 1))):
            raise ValueError(f"prior support ({p[~((p >= 0) & (p <= 1))][0]}) must be in [0, 1]")
        if np.any(~(w >= 0)) or abs(float(w.sum()) - 1.0) > 1e-9:
            raise ValueError(f"prior weights must be >= 0 and sum to 1 (sum {w.sum()})")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "k0", check_sample_size(self.k0, "k0"))



def _prior_support() -> np.ndarray:
    """Support of the empirical-Bayes prior: p = 1 - q on the nodes, and a grid below 1/2."""
    below = np.arange(0.0, 0.5, UNIFORM_STEP)
    return np.concatenate([below, (1.0 - Q_NODES)[::-1]])



def empirical_prior(pilot_counts, k0: int, *, max_iter: int = 500, tol: float = 1e-8) -> Prior:
    """The discrete prior on p that maximises the likelihood of the pilot counts (NPMLE).

    Each count is taken as ``x_i ~ Binomial(k0, p_i)`` with ``p_i`` drawn from the prior;
    the prior lives on a fixed grid (the integration nodes of the gains above 1/2, steps of
    0.002 below) and EM runs from the uniform prior until an iteration raises the mean
    log-likelihood by less than ``tol``, or ``max_iter`` iterations. EM creeps towards the
    NPMLE (the log-likelihood still rises by about 1e-7 per image and iteration after 1000),
    but the rule it implies does not move with it: on the shipped ImageNet logs the share of
    the label-blind oracle's gain stays within +-0.5% from 100 to 10,000 iterations, so the
    default stops at 500.

    Parameters
    ----------
    pilot_counts : array_like of int
        Each image's pilot count of its chosen class, in [0, k0].
    k0 : int
        Pilot size.
    max_iter : int
        Most EM iterations.
    tol : float
        Stop when an iteration raises the mean log-likelihood by less than this.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.studies.budget_priors import empirical_prior
    >>> rng = np.random.default_rng(0)
    >>> prior = empirical_prior(rng.binomial(300, 0.9, 2000), 300)
    >>> float(np.round(np.sum(prior.p * prior.weight), 2))
    0.9
    """
    k0 = check_sample_size(k0, "k0")
    x = check_pilots(pilot_counts, k0)
    max_iter = int(max_iter)
    ux, cnt = np.unique(x, return_counts=True)
    p = _prior_support()
    with np.errstate(divide="ignore"):
        loglik = xlogy(ux[:, None], p[None, :]) + xlogy(k0 - ux[:, None], 1.0 - p[None, :])
    shift = loglik.max(axis=1, keepdims=True)
    L = np.exp(loglik - shift)  # (distinct x, support), each row scaled to a max of 1
    w = np.full(p.size, 1.0 / p.size)
    m = cnt.sum()
    prev = -np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        mix = L @ w
        ll = float(np.sum(cnt * (np.log(mix) + shift[:, 0]))) / m
        w = w * ((cnt / mix) @ L) / m
        if ll - prev < tol:
            break
        prev = ll
    w = w / w.sum()
    return Prior(p=frozen(p), weight=frozen(w), k0=k0, iterations=it, log_likelihood=ll * m)



def binned_prior(p, k0: int) -> Prior:
    """A known distribution of p as a prior, on :func:`empirical_prior`'s support.

    Each value moves to the nearest support point (whose radii are tabulated already). For
    studies with known p_A (synthetic or imported streams): the rule under the true
    distribution bounds what any prior can do with the same pilots. The support's spacing
    is 2% of ``1 - p`` above p = 0.9 (down to ``1 - p = 1e-10``, and p = 1 itself), 0.002
    below.

    Parameters
    ----------
    p : array_like of float
        Values in [0, 1] (one per image, say).
    k0 : int
        The pilot size the posterior will be taken at.

    Returns
    -------
    Prior

    Examples
    --------
    >>> from isskit.studies.budget_priors import binned_prior
    >>> prior = binned_prior([1.0, 1.0, 0.9, 0.3], 300)
    >>> float(prior.weight[prior.p == 1.0][0])
    0.5
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.size == 0 or np.any(~((p >= 0) & (p <= 1))):
        raise ValueError(f"p must hold values in [0, 1] (got {p[:5]!r}...)")
    support = _prior_support()
    right = np.clip(np.searchsorted(support, p), 1, support.size - 1)
    nearest = np.where(support[right] - p < p - support[right - 1], right, right - 1)
    weight = np.bincount(nearest, minlength=support.size) / p.size
    return Prior(p=support, weight=weight, k0=k0)



def _discrete_unit_gains(prior: Prior, alpha: float, k_max: int) -> np.ndarray:
    """``G(x, k)`` at sigma = 1 under a discrete prior: the posterior lives on its support."""
    k0 = prior.k0
    x = np.arange(k0 + 1, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore"):
        loglik = xlogy(x, prior.p[None, :]) + xlogy(k0 - x, 1.0 - prior.p[None, :])
        logpost = loglik + np.log(prior.weight)[None, :]
    logpost -= logpost.max(axis=1, keepdims=True)
    post = np.exp(logpost)
    post /= post.sum(axis=1, keepdims=True)
    support = _prior_support()
    if prior.p.shape == support.shape and np.array_equal(prior.p, support):
        # empirical_prior's support: above 1/2 it is 1 - q on the nodes, whose radii are
        # tabulated already (in node order, q increasing; below 1/2 the radius is < 0)
        radius, _ = radius_nodes(alpha, k_max)
        weights = post[:, -Q_NODES.size:][:, ::-1]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            radius = expected_radius(k_grid(k_max)[1:, None], prior.p[None, :], 1.0, alpha)
        weights = post
    out = np.zeros((k0 + 1, radius.shape[0] + 1))
    out[:, 1:] = weights @ np.maximum(radius, 0.0).T
    return out




def discrete_gain_table(prior: Prior, sigma: float, alpha: float, k_max: int) -> GainTable:
    """``G(x, k)`` under a discrete prior fitted at ``prior.k0``, on the grid up to ``k_max``."""
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    k_max = check_sample_size(k_max, "k_max")
    if not isinstance(prior, Prior):
        raise ValueError(f"prior ({prior!r}) must be a Prior")
    g = sigma * _discrete_unit_gains(prior, alpha, k_max)
    return GainTable(k0=prior.k0, sigma=sigma, alpha=alpha, prior="eb",
                     k=frozen(k_grid(k_max)), gain=frozen(g))



def pilot_predictive(k0: int, k1: int, prior: Prior | None = None) -> np.ndarray:
    """``P(x1 | x)``: the second pilot's count given the first's, under the posterior.

    Jeffreys' prior: the beta-binomial ``BB(x1; k1, x + 1/2, k0 - x + 1/2)``; a discrete
    prior: the posterior mixture of ``Binomial(k1, p)`` over its support.

    Parameters
    ----------
    k0, k1 : int
        First and second pilot sizes.
    prior : Prior, optional
        A discrete prior at ``k0``; default Jeffreys'.

    Returns
    -------
    ndarray of float64, shape (k0 + 1, k1 + 1)
        Row x: the distribution of x1 = 0..k1.
    """
    x = np.arange(k0 + 1, dtype=np.float64)[:, None]
    x1 = np.arange(k1 + 1, dtype=np.float64)[None, :]
    log_choose = gammaln(k1 + 1.0) - gammaln(x1 + 1.0) - gammaln(k1 - x1 + 1.0)
    if prior is None:
        a, b = x + 0.5, k0 - x + 0.5
        return np.exp(log_choose + betaln(x1 + a, k1 - x1 + b) - betaln(a, b))
    with np.errstate(divide="ignore"):
        logpost = xlogy(x, prior.p) + xlogy(k0 - x, 1.0 - prior.p) + np.log(prior.weight)
    post = np.exp(logpost - logpost.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    p = prior.p[:, None]
    with np.errstate(divide="ignore"):
        binom = np.exp(log_choose + xlogy(x1, p) + xlogy(k1 - x1, 1.0 - p))
    return post @ binom


@dataclass(frozen=True, eq=False)
class TwoStageRule:
    """The two-stage budget rule at one price, for every first-pilot count x = 0..k0.

    Attributes
    ----------
    price : float
        Radius per sample.
    second : ndarray of bool, shape (k0 + 1,)
        Whether a first pilot of x draws the second pilot: the objective expected after it,
        ``sum_x1 P(x1 | x) max_k [G2(x + x1, k) - price k] - price k1``, beats stopping,
        ``max_k [G1(x, k) - price k]``.
    k_one : ndarray of int64, shape (k0 + 1,)
        Estimation size after the first pilot alone.
    k_two : ndarray of int64, shape (k0 + k1 + 1,)
        Estimation size after both, by the pooled count ``x + x1`` of ``k0 + k1``.
    expected_samples : ndarray of float64, shape (k0 + 1,)
        Samples an image with first count x consumes, on average over x1.
    """

    price: float
    second: np.ndarray = field(repr=False)
    k_one: np.ndarray = field(repr=False)
    k_two: np.ndarray = field(repr=False)
    expected_samples: np.ndarray = field(repr=False)


def two_stage_rule(first: GainTable, both: GainTable, predictive, price: float, *,
                   k_cap: int | None = None) -> TwoStageRule:
    """The two-stage rule from the gains after one pilot and after both.

    Parameters
    ----------
    first, both : GainTable
        Gains at pilot size ``k0`` and ``k0 + k1`` (same prior, sigma, alpha, grid).
    predictive : ndarray, shape (k0 + 1, k1 + 1)
        :func:`pilot_predictive`.
    price : float
        Radius per sample, >= 0.
    k_cap : int, optional
        Most samples after the first pilot (``N - k0``): estimation sizes are capped at
        ``k_cap`` after one pilot and at ``k_cap - k1`` after two (no second pilot where
        ``k1 > k_cap``).

    Returns
    -------
    TwoStageRule
    """
    price = check_price(price)
    k0, k1 = first.k0, both.k0 - first.k0
    if k1 < 1 or predictive.shape != (k0 + 1, k1 + 1):
        raise ValueError(f"predictive ({predictive.shape}) must be (k0 + 1, k1 + 1) = "
                         f"({k0 + 1}, {k1 + 1})")
    k_one = first.choose(price, k_cap=k_cap)
    v_one = first.gain[np.arange(k0 + 1), np.searchsorted(first.k, k_one)] - price * k_one
    cap_two = None if k_cap is None else k_cap - k1
    if cap_two is not None and cap_two < 0:  # the streams cannot hold a second pilot
        second = np.zeros(k0 + 1, bool)
        k_two = np.zeros(k0 + k1 + 1, np.int64)
        after = np.zeros(k0 + 1)
    else:
        k_two = both.choose(price, k_cap=cap_two)
        v_two = both.gain[np.arange(k0 + k1 + 1), np.searchsorted(both.k, k_two)] - price * k_two
        pooled = np.arange(k0 + 1)[:, None] + np.arange(k1 + 1)[None, :]
        worth = (predictive * v_two[pooled]).sum(axis=1) - price * k1
        second = worth > v_one
        after = (predictive * k_two[pooled]).sum(axis=1)
    expected = np.where(second, k0 + k1 + after, k0 + k_one)
    return TwoStageRule(price=price, second=frozen(second), k_one=frozen(k_one),
                        k_two=frozen(k_two), expected_samples=frozen(expected))

