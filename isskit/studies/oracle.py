"""The ceiling of input-specific sampling: oracles that know every image's p_A.

Any input-specific policy (ISS among them) decides each image's sample size ``k_i`` from
samples of that image. An oracle that knows the true top-class probability ``p_i`` of
every image, and whether its prediction is correct, can instead choose the ``k_i`` that
maximise the expected ACR

    ACR(k) = (1 / m) * sum_i 1[correct_i] * max(R(k_i, p_i), 0)

at a given mean sample size ``sum_i k_i / m <= budget``, with ``R`` the expected radius of
:func:`isskit.stats.expected_radius` (the paper's Eq. 3: the count taken at its mean
``p k``). No policy that only sees samples can beat it on average, so the oracle's ACR
bounds what input-specific sampling can gain over input-agnostic sampling (IAS) at the
same cost.

The optimisation is a resource allocation over a grid of sample sizes per image
(``0`` = spend nothing and abstain). It is solved by the Lagrangian / greedy method on
each image's upper concave hull of ``(k, max(R, 0))``:

* Where each image's gain curve is concave on the grid, the greedy on marginal gains is
  exact up to the one segment cut by the budget: the returned allocation is optimal for
  the budget it spends, and :attr:`OracleResult.upper_bound` (the same greedy with the last
  segment taken fractionally, i.e. the Lagrangian dual value) is at most one image's
  radius step above the optimum.
* Where a curve is not concave (``max(R, 0)`` is flat at 0 until ``k`` is large enough to
  certify, then rises: p_A just above 1/2), the hull bridges the flat part with a chord.
  Allocations are still taken at hull vertices, which are real grid points, so the
  returned value is always achieved; the chord only makes the upper bound (the concave
  relaxation) looser. ``acr <= optimum <= upper_bound`` holds in every case, and the
  tests check it against brute force.

Two oracles (DESIGN.md, "Metrics"), both on the same allocation machinery:

* **label-aware** (:func:`oracle_allocation`, :meth:`Oracles.aware`): knows each ``p_i`` and
  whether the prediction is correct, and maximises the expected ACR above. An absolute
  bound: no policy can beat it on average.
* **label-blind** (:func:`oracle_blind`, :meth:`Oracles.blind`): knows each ``p_i`` but not
  the correctness, so it maximises the expected radius summed over *all* images,
  ``(1/m) sum_i max(R(k_i, p_i), 0)``, at the same mean budget; its ACR is then evaluated
  with correctness. It is the ceiling of every policy that sees only samples (such a policy
  cannot tell a confident wrong prediction from a right one), e.g. the budget policy
  (:mod:`isskit.policies.budget`), which maximises the same objective from a pilot's posterior.

:func:`compare_to_oracles` (or :meth:`Oracles.compare`, which reuses one set of hulls for
many budgets) puts a policy's ACR at its own mean sample size beside IAS's expected ACR at
the same mean (:func:`ias_expected_acr`), both oracles' ACR there, and the share of each
oracle's gain over IAS that the policy takes (:class:`OracleComparison`);
:func:`compare_replayed` does it for every radius policy of a replay. Those live in
:mod:`isskit.studies.oracle_compare` and the machinery (hulls, greedy, gains) in
``isskit.studies._oracle_core``; every public name is re-exported here.

This module never reads or writes files and never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.studies._oracle_core import (
    _arrays,
    _check_budget,
    _check_k_grid,
    _gain,
    _greedy,
    _hull_segments,
    default_k_grid,
    expected_acr,
)
from isskit.studies.oracle_compare import (
    COMPARISON_KEYS,
    OracleComparison,
    compare_replayed,
    compare_to_oracles,
    ias_expected_acr,
)
from isskit.validate import check_alpha, check_sigma

__all__ = [
    "COMPARISON_KEYS",
    "BlindOracleResult",
    "OracleComparison",
    "OracleResult",
    "Oracles",
    "compare_replayed",
    "compare_to_oracles",
    "default_k_grid",
    "expected_acr",
    "ias_expected_acr",
    "oracle_allocation",
    "oracle_blind",
]


@dataclass(frozen=True)
class OracleResult:
    """An oracle allocation of sample sizes.

    Attributes
    ----------
    k : ndarray of int64
        Sample size given to each image (0 for images that get nothing).
    acr : float
        Expected ACR the allocation achieves, ``mean(1[correct] * max(R(k_i, p_i), 0))``.
    upper_bound : float
        The concave relaxation's value at the same budget: no allocation on the grid
        with mean sample size ``<= budget`` has a higher expected ACR.
    mean_samples : float
        Mean of ``k`` (``<= budget``).
    budget : float
        The mean sample budget asked for.
    k_grid : ndarray of int64
        The candidate sample sizes (0 included).
    """

    k: np.ndarray
    acr: float
    upper_bound: float
    mean_samples: float
    budget: float
    k_grid: np.ndarray


@dataclass(frozen=True)
class BlindOracleResult:
    """A label-blind oracle allocation: maximal expected radius over all images at a budget.

    Attributes
    ----------
    k : ndarray of int64
        Sample size given to each image, correct or not (0 for images that get nothing).
    acr : float
        Expected ACR of the allocation, evaluated with correctness:
        ``mean(1[correct] * max(R(k_i, p_i), 0))``.
    radius : float
        What the blind oracle maximises: the expected radius over all images,
        ``mean(max(R(k_i, p_i), 0))``.
    radius_bound : float
        The concave relaxation's value of that objective: no allocation on the grid with
        mean sample size ``<= budget`` has a higher expected radius over all images.
    mean_samples : float
        Mean of ``k`` (``<= budget``).
    budget : float
        The mean sample budget asked for.
    k_grid : ndarray of int64
        The candidate sample sizes (0 included).
    """

    k: np.ndarray
    acr: float
    radius: float
    radius_bound: float
    mean_samples: float
    budget: float
    k_grid: np.ndarray


class Oracles:
    """Both oracles on one set of images, for any number of budgets.

    The gain curves ``max(R(k, p_i), 0)`` on ``k_grid`` and their upper concave hulls are
    computed once here; each :meth:`aware` or :meth:`blind` call is then one greedy pass
    over the hull segments (see :func:`oracle_allocation` for the method and exactness).
    ``Oracles(...).aware(budget)`` is :func:`oracle_allocation` with the same ``k_grid``,
    number for number.

    Parameters
    ----------
    p_A : array_like of float
        True top-class probability of each image.
    sigma, alpha : float
        Noise level and one-sided failure probability of the certificate.
    correct : bool or array_like of bool
        Whether each image's top class is its true label.
    k_grid : array_like of int, optional
        Candidate sample sizes; 0 is always added. Default :func:`default_k_grid` up to
        ``10**6``.

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.studies.oracle import Oracles
    >>> p_A = np.array([0.999, 0.9, 0.7, 0.99])
    >>> correct = np.array([True, True, True, False])
    >>> o = Oracles(p_A, sigma=0.5, alpha=0.001, correct=correct)
    >>> bool(o.blind(10_000).acr <= o.aware(10_000).acr)
    True
    >>> c = o.compare(10_000, policy_acr=0.9)
    >>> c.ias_acr_same_samples < c.oracle_blind_acr <= c.oracle_aware_acr
    True
    """

    def __init__(self, p_A, *, sigma: float, alpha: float, correct=True, k_grid=None):
        self.sigma = check_sigma(sigma)
        self.alpha = check_alpha(alpha)
        _, self.p_A, self.correct = _arrays(0, p_A, correct)
        self.k_grid = _check_k_grid(default_k_grid(10**6) if k_grid is None else k_grid)
        # max(R, 0) for every image, correct or not: the blind oracle's gain curves; the
        # aware oracle's are the same numbers for correct images (x 1.0) and 0 elsewhere.
        radius = _gain(self.k_grid[None, :], self.p_A[:, None], True, self.sigma, self.alpha)
        m, g = radius.shape
        seg_img = np.empty(m * g, np.int64)
        seg_from = np.empty(m * g, np.int64)
        seg_to = np.empty(m * g, np.int64)
        n = _hull_segments(self.k_grid.astype(np.float64), radius, seg_img, seg_from, seg_to)
        seg_img, seg_from, seg_to = seg_img[:n], seg_from[:n], seg_to[:n]
        d_k = (self.k_grid[seg_to] - self.k_grid[seg_from]).astype(np.float64)
        d_gain = radius[seg_img, seg_to] - radius[seg_img, seg_from]
        # Decreasing slope; within an image the hull's slopes already decrease, and the
        # stable sort on (slope, vertex) keeps an image's segments in hull order on ties.
        slope = d_gain / d_k
        order_blind = np.lexsort((seg_from, -slope))
        sub = np.flatnonzero(self.correct[seg_img])
        order_aware = sub[np.lexsort((seg_from[sub], -slope[sub]))]
        # Each oracle's segments stored in its greedy order: the pass then streams.
        self._segments = {
            name: (seg_img[o], d_k[o], d_gain[o], self.k_grid[seg_to[o]])
            for name, o in (("blind", order_blind), ("aware", order_aware))
        }

    def _allocate(self, name, budget):
        k = np.zeros(self.p_A.size, np.int64)
        segments = self._segments[name]
        if segments[0].size == 0:
            return k, 0.0, 0.0
        value, bound = _greedy(*segments, budget * self.p_A.size, k)
        return k, float(value), float(bound)

    def aware(self, budget: float) -> OracleResult:
        """The label-aware oracle at a mean budget (see :func:`oracle_allocation`)."""
        budget = _check_budget(budget)
        k, value, bound = self._allocate("aware", budget)
        if self._segments["aware"][0].size == 0:
            return OracleResult(k, 0.0, 0.0, 0.0, budget, self.k_grid)
        acr = expected_acr(k, self.p_A, self.correct, self.sigma, self.alpha)
        m = self.p_A.size
        return OracleResult(k, acr, float(max(bound, value) / m), float(k.mean()), budget,
                            self.k_grid)

    def blind(self, budget: float) -> BlindOracleResult:
        """The label-blind oracle at a mean budget (see :func:`oracle_blind`)."""
        budget = _check_budget(budget)
        k, value, bound = self._allocate("blind", budget)
        m = self.p_A.size
        radius = expected_acr(k, self.p_A, True, self.sigma, self.alpha)
        acr = expected_acr(k, self.p_A, self.correct, self.sigma, self.alpha)
        return BlindOracleResult(k, acr, radius, float(max(bound, value) / m),
                                 float(k.mean()), budget, self.k_grid)

    def ias_acr(self, mean_samples: float) -> float:
        """IAS's expected ACR at a mean sample size (:func:`ias_expected_acr`)."""
        return ias_expected_acr(mean_samples, self.p_A, self.correct, self.sigma, self.alpha)

    def compare(self, mean_samples: float, policy_acr: float) -> OracleComparison:
        """A policy's ACR against IAS and both oracles at its mean samples.

        The label-aware value is the better of its own greedy and the label-blind
        allocation with the incorrect images' samples dropped (a feasible allocation of the
        same budget), so ``oracle_blind_acr <= oracle_aware_acr`` holds exactly, not only
        up to the greedy's gap.

        Parameters
        ----------
        mean_samples : float
            The policy's mean samples per image (its budget), ``>= 0``.
        policy_acr : float
            The policy's ACR.

        Returns
        -------
        OracleComparison
        """
        mean_samples = _check_budget(mean_samples, "mean_samples")
        policy_acr = float(policy_acr)
        if not np.isfinite(policy_acr):
            raise ValueError(f"policy_acr ({policy_acr}) must be a finite number")
        ias = self.ias_acr(mean_samples)
        blind = self.blind(mean_samples).acr
        aware = max(self.aware(mean_samples).acr, blind)

        def share(oracle):
            return (policy_acr - ias) / (oracle - ias) if oracle > ias else float("nan")

        return OracleComparison(mean_samples, policy_acr, ias, blind, aware, share(blind),
                                share(aware))


def oracle_allocation(
    p_A, budget: float, *, sigma: float, alpha: float, correct=True, k_grid=None
) -> OracleResult:
    """Sample sizes that maximise expected ACR at a mean sample budget, knowing every p_A.

    Greedy on marginal gains over each image's upper concave hull of ``(k, gain)`` on
    ``k_grid``: hull segments of all images are taken in order of decreasing slope
    (radius per sample) while the budget lasts; a segment that does not fit is skipped
    and so are the later segments of its image, and smaller ones after it may still be
    taken. See the module docstring for exactness.

    Parameters
    ----------
    p_A : array_like of float
        True top-class probability of each image.
    budget : float
        Mean sample size per image allowed (over all images, as ``mean_samples`` of a
        replay), ``>= 0``.
    sigma, alpha : float
        Noise level and one-sided failure probability of the certificate.
    correct : bool or array_like of bool
        Whether each image's top class is its true label; incorrect images gain nothing
        and get ``k = 0``.
    k_grid : array_like of int, optional
        Candidate sample sizes; 0 is always added. Default :func:`default_k_grid` up to
        ``max(10 * budget, 10**6)``.

    Returns
    -------
    OracleResult
        The allocation, its expected ACR and the relaxation's upper bound.

    Examples
    --------
    >>> from isskit.studies.oracle import oracle_allocation
    >>> res = oracle_allocation([0.999, 0.9, 0.6], 20_000, sigma=0.5, alpha=0.001)
    >>> bool(res.mean_samples <= 20_000 and res.acr <= res.upper_bound)
    True
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    budget = _check_budget(budget)
    _arrays(0, p_A, correct)
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * budget, 10**6)))
    return Oracles(p_A, sigma=sigma, alpha=alpha, correct=correct, k_grid=k_grid).aware(budget)


def oracle_blind(
    p_A, budget: float, *, sigma: float, alpha: float, correct=True, k_grid=None
) -> BlindOracleResult:
    """The label-blind oracle: maximal expected radius over all images at a mean budget.

    It knows every ``p_i`` but not which predictions are correct, so it allocates as
    :func:`oracle_allocation` does with every image counted as correct, and its ACR is then
    evaluated with the real correctness. Its ACR is at most the label-aware oracle's
    relaxation bound at the same budget (and, on the instances of the tests and the
    study, at most the aware greedy's ACR itself; :meth:`Oracles.compare` makes that exact).

    Parameters
    ----------
    p_A : array_like of float
        True top-class probability of each image.
    budget : float
        Mean sample size per image allowed, ``>= 0``.
    sigma, alpha : float
        Noise level and one-sided failure probability of the certificate.
    correct : bool or array_like of bool
        Whether each image's top class is its true label: used only to evaluate the ACR.
    k_grid : array_like of int, optional
        Candidate sample sizes; 0 is always added. Default :func:`default_k_grid` up to
        ``max(10 * budget, 10**6)``.

    Returns
    -------
    BlindOracleResult

    Examples
    --------
    >>> from isskit.studies.oracle import oracle_allocation, oracle_blind
    >>> p_A, correct = [0.999, 0.9, 0.999], [True, True, False]
    >>> blind = oracle_blind(p_A, 20_000, sigma=0.5, alpha=0.001, correct=correct)
    >>> aware = oracle_allocation(p_A, 20_000, sigma=0.5, alpha=0.001, correct=correct)
    >>> int(blind.k[2]) > 0 == int(aware.k[2])  # it cannot tell image 2 is wrong
    True
    >>> bool(blind.acr < aware.acr)
    True
    """
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    budget = _check_budget(budget)
    _arrays(0, p_A, correct)
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * budget, 10**6)))
    return Oracles(p_A, sigma=sigma, alpha=alpha, correct=correct, k_grid=k_grid).blind(budget)
