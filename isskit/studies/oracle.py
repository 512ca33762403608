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
oracle's gain over IAS that the policy takes (:class:`OracleComparison`).

This module never reads or writes files and never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.policies._budget_gain import geometric_grid
from isskit.replay._kernels import _jit
from isskit.stats import expected_radius
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


@dataclass(frozen=True)
class OracleComparison:
    """A policy against IAS and both oracles at the policy's own mean sample size.

    Every ACR here is on the same images; the field names are the keys of
    :meth:`to_dict` (and of ``isskit replay --oracle --json``).

    Attributes
    ----------
    mean_samples : float
        The policy's mean samples per image, the budget everything else is evaluated at.
    policy_acr : float
        The policy's ACR (expected or replayed, as the caller measured it).
    ias_acr_same_samples : float
        IAS's expected ACR at the same mean sample size (:func:`ias_expected_acr`).
    oracle_blind_acr, oracle_aware_acr : float
        Expected ACR of the label-blind and the label-aware oracle at that budget.
    share_blind, share_aware : float
        ``(policy_acr - ias) / (oracle - ias)`` for each oracle: the share of the oracle's
        gain over IAS that the policy takes. NaN where the oracle gains nothing over IAS.
        Not capped: a replayed ACR fluctuates around its expectation, and the label-blind
        oracle does not maximise ACR, so a policy can exceed it.
    """

    mean_samples: float
    policy_acr: float
    ias_acr_same_samples: float
    oracle_blind_acr: float
    oracle_aware_acr: float
    share_blind: float
    share_aware: float

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (NaN stays a float NaN)."""
        return {f: float(getattr(self, f)) for f in self.__dataclass_fields__}


def default_k_grid(k_max: int, points: int = 400, k_min: int = 10) -> np.ndarray:
    """0 and about ``points`` geometrically spaced integer sample sizes in ``[k_min, k_max]``."""
    return geometric_grid(k_max, points, k_min)


def expected_acr(k, p_A, correct, sigma: float, alpha: float) -> float:
    """Expected ACR of sample sizes ``k``: ``mean(1[correct] * max(R(k_i, p_i), 0))``.

    ``k_i = 0`` contributes 0 (nothing sampled, abstain).

    Parameters
    ----------
    k : array_like of int
        Sample size per image, ``>= 0``.
    p_A : array_like of float
        True top-class probability per image, in [0, 1].
    correct : array_like of bool
        Whether the image's top class is its true label.
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float
        The expected ACR, averaged over all images as in the paper's Eq. 7.
    """
    k, p_A, correct = _arrays(k, p_A, correct)
    return float(np.mean(_gain(k, p_A, correct, sigma, alpha)))


def _arrays(k, p_A, correct):
    p_A = np.asarray(p_A, dtype=np.float64)
    if p_A.ndim != 1 or p_A.size == 0:
        raise ValueError(f"p_A must be a non-empty 1-d array (got shape {p_A.shape})")
    if np.any(~((p_A >= 0) & (p_A <= 1))):
        raise ValueError(f"p_A ({p_A[~((p_A >= 0) & (p_A <= 1))][0]}) must be in [0, 1]")
    correct = np.broadcast_to(np.asarray(correct, dtype=bool), p_A.shape)
    k = np.broadcast_to(np.asarray(k), p_A.shape)
    if k.dtype.kind not in "iu" and not np.all(k == np.round(k)):
        raise ValueError("k must hold integer sample sizes")
    k = k.astype(np.int64)
    if np.any(k < 0):
        raise ValueError(f"k ({k[k < 0][0]}) must be >= 0")
    return k, p_A, correct


def _gain(k, p, correct, sigma, alpha):
    """``1[correct] * max(R(k, p), 0)``, 0 where ``k = 0``; broadcast over k and p."""
    k, p = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(p, np.float64))
    r = expected_radius(np.maximum(k, 1), p, sigma, alpha)
    r = np.where((k > 0) & (r > 0), r, 0.0)  # -inf at p = 0 becomes 0 too
    return r * np.broadcast_to(correct, r.shape)


@_jit
def _upper_hull(x, y, hull):
    """Upper concave hull of points sorted by x, from the first point.

    Writes the vertex indices into ``hull`` and returns how many there are. A point on or
    below the chord between its neighbours is not a vertex.
    """
    n = 0
    for j in range(x.shape[0]):
        while n >= 2:
            a = hull[n - 2]
            b = hull[n - 1]
            # b lies on or below the chord a -> j: it is not a hull vertex.
            if (y[b] - y[a]) * (x[j] - x[a]) <= (y[j] - y[a]) * (x[b] - x[a]):
                n -= 1
            else:
                break
        hull[n] = j
        n += 1
    return n


@_jit
def _hull_segments(x, gains, seg_img, seg_from, seg_to):
    """Segments of every image's upper hull of ``(x, gains[i])``, up to its highest vertex.

    Images whose gain is 0 at the last grid point get no segment. Fills the outputs (each
    of size ``rows * len(x)`` at most) and returns the number of segments.
    """
    hull = np.empty(x.shape[0], np.int64)
    s = 0
    for i in range(gains.shape[0]):
        if not gains[i, -1] > 0:
            continue
        n = _upper_hull(x, gains[i], hull)
        # Drop the hull's flat tail: extra samples that buy no radius (first argmax).
        top = 0
        for v in range(1, n):
            if gains[i, hull[v]] > gains[i, hull[top]]:
                top = v
        for v in range(top):
            seg_img[s] = i
            seg_from[s] = hull[v]
            seg_to[s] = hull[v + 1]
            s += 1
    return s


@_jit
def _greedy(seg_img, d_k, d_gain, k_to, total, k):
    """Take hull segments, in the order given, while the budget ``total`` lasts.

    The arrays are already in the greedy's order (decreasing slope), so the pass streams
    through them. A segment that does not fit is skipped, and so are the later segments of
    its image. Writes each image's sample size into ``k`` (zeros on entry) and returns the
    value taken and the Lagrangian bound (the first segment that does not fit, taken
    fractionally; the value itself when every segment fits).
    """
    spent = 0.0
    value = 0.0
    bound = np.nan
    blocked = np.zeros(k.shape[0], np.bool_)
    for s in range(seg_img.shape[0]):
        i = seg_img[s]
        if blocked[i]:
            continue
        if spent + d_k[s] <= total:
            spent += d_k[s]
            value += d_gain[s]
            k[i] = k_to[s]
        else:
            if np.isnan(bound):  # the Lagrangian bound: this segment taken fractionally
                bound = value + d_gain[s] * (total - spent) / d_k[s]
            blocked[i] = True
    if np.isnan(bound):  # every segment fitted: the allocation is optimal outright
        bound = value
    return value, bound


def _check_k_grid(k_grid) -> np.ndarray:
    k_grid = np.asarray(k_grid)
    if k_grid.ndim != 1 or k_grid.size == 0 or k_grid.dtype.kind not in "iu":
        raise ValueError("k_grid must be a non-empty 1-d array of integers")
    if np.any(k_grid < 0):
        raise ValueError(f"k_grid ({k_grid[k_grid < 0][0]}) must hold sample sizes >= 0")
    return np.unique(np.concatenate([[0], k_grid.astype(np.int64)]))


def _check_budget(budget, name: str = "budget") -> float:
    budget = float(budget)
    if not (np.isfinite(budget) and budget >= 0):
        raise ValueError(f"{name} ({budget}) must be a finite number >= 0")
    return budget


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


def ias_expected_acr(mean_samples: float, p_A, correct, sigma: float, alpha: float) -> float:
    """IAS's expected ACR at a (non-integer) mean sample size, exactly.

    At ``n = mean_samples`` with ``n = floor(n) + f``: ``(1 - f) * E[ACR](IAS(floor(n))) +
    f * E[ACR](IAS(floor(n) + 1))``, the expected ACR of the randomised IAS that certifies
    each image with ``floor(n) + 1`` samples with probability ``f`` and ``floor(n)``
    otherwise, whose mean sample size is exactly ``mean_samples``. At an integer it is
    :func:`expected_acr` of ``IAS(n)``; below 1 it interpolates from 0 (no samples).

    Parameters
    ----------
    mean_samples : float
        Mean samples per image, ``>= 0``.
    p_A, correct : array_like
        True top-class probability and correctness per image.
    sigma, alpha : float
        Noise level and one-sided failure probability.

    Returns
    -------
    float

    Examples
    --------
    >>> from isskit.studies.oracle import expected_acr, ias_expected_acr
    >>> p, c = [0.99, 0.8], [True, True]
    >>> lo = expected_acr(1000, p, c, 0.5, 0.001)
    >>> hi = expected_acr(1001, p, c, 0.5, 0.001)
    >>> bool(abs(ias_expected_acr(1000.25, p, c, 0.5, 0.001) - (0.75 * lo + 0.25 * hi)) < 1e-15)
    True
    """
    n = _check_budget(mean_samples, "mean_samples")
    base = int(np.floor(n))
    f = n - base
    lo = expected_acr(base, p_A, correct, sigma, alpha)
    if f == 0.0:
        return lo
    return (1.0 - f) * lo + f * expected_acr(base + 1, p_A, correct, sigma, alpha)


def compare_to_oracles(
    mean_samples: float, policy_acr: float, p_A, correct, *, sigma: float, alpha: float,
    k_grid=None,
) -> OracleComparison:
    """A policy's ACR against IAS and both oracles at the policy's own mean sample size.

    Parameters
    ----------
    mean_samples : float
        The policy's mean samples per image, ``>= 0``.
    policy_acr : float
        The policy's ACR on these images (expected or replayed).
    p_A, correct : array_like
        True top-class probability and correctness per image. For a sampled store the
        empirical frequency of the stream's top class over the whole stream stands in for
        ``p_A`` (``StreamIndex.p_A_empirical``).
    sigma, alpha : float
        Noise level and one-sided failure probability.
    k_grid : array_like of int, optional
        The oracles' candidate sample sizes. Default :func:`default_k_grid` up to
        ``max(10 * mean_samples, 10**6)``.

    Returns
    -------
    OracleComparison

    Examples
    --------
    >>> from isskit.studies.oracle import compare_to_oracles
    >>> c = compare_to_oracles(5_000, 0.55, [0.999, 0.9, 0.7], [True, True, False],
    ...                        sigma=0.5, alpha=0.001)
    >>> sorted(c.to_dict())[:3]
    ['ias_acr_same_samples', 'mean_samples', 'oracle_aware_acr']
    """
    mean_samples = _check_budget(mean_samples, "mean_samples")
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * mean_samples, 10**6)))
    return Oracles(p_A, sigma=sigma, alpha=alpha, correct=correct, k_grid=k_grid).compare(
        mean_samples, policy_acr)


#: Per-policy keys :func:`compare_replayed` returns (the ``--oracle --json`` keys).
COMPARISON_KEYS = ("ias_acr_same_samples", "oracle_blind_acr", "oracle_aware_acr",
                   "share_blind", "share_aware")


def compare_replayed(mean_samples, acr, alpha, p_A, correct, *, sigma: float,
                     k_grid=None) -> dict:
    """Every radius policy of a replay against IAS and both oracles at its own mean samples.

    One :class:`Oracles` (hulls computed once) per distinct ``alpha``, then
    :meth:`Oracles.compare` per policy. Policies with a NaN ``acr`` (decision policies: ACR
    does not apply) get NaN in every key.

    Parameters
    ----------
    mean_samples, acr, alpha : array_like of float, shape (P,)
        Each policy's mean samples per image, replayed ACR and certificate alpha.
    p_A, correct : array_like, shape (n,)
        Each image's true top-class probability (or its stand-in) and whether that class is
        the true label.
    sigma : float
        Noise level.
    k_grid : array_like of int, optional
        The oracles' candidate sample sizes. Default :func:`default_k_grid` up to
        ``max(10 * max(mean_samples), 10**6)``.

    Returns
    -------
    dict of str to ndarray of float64, shape (P,)
        The keys of :data:`COMPARISON_KEYS`.

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.studies.oracle import compare_replayed
    >>> out = compare_replayed([5_000, 1_000], [0.55, float("nan")], [0.001, 0.001],
    ...                        [0.999, 0.9, 0.7], [True, True, False], sigma=0.5)
    >>> bool(out["oracle_blind_acr"][0] <= out["oracle_aware_acr"][0])
    True
    >>> bool(np.isnan(out["share_blind"][1]))  # no ACR, no comparison
    True
    """
    mean_samples = np.asarray(mean_samples, dtype=np.float64).reshape(-1)
    acr = np.asarray(acr, dtype=np.float64).reshape(-1)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    out = {key: np.full(acr.shape, np.nan) for key in COMPARISON_KEYS}
    rows = np.flatnonzero(np.isfinite(acr))
    if rows.size == 0:
        return out
    if k_grid is None:
        k_grid = default_k_grid(int(max(10 * float(np.max(mean_samples[rows])), 10**6)))
    for a in np.unique(alpha[rows]):
        oracles = Oracles(p_A, sigma=sigma, alpha=float(a), correct=correct, k_grid=k_grid)
        for i in rows[alpha[rows] == a]:
            c = oracles.compare(float(mean_samples[i]), float(acr[i])).to_dict()
            for key in COMPARISON_KEYS:
                out[key][i] = c[key]
    return out
