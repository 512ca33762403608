"""The budget rule's posterior gains: ``G(x, k) = E[max(R(k, p), 0) | x]`` and ``k`` at a price.

Private to :mod:`isskit.policies.budget` (the policy) and :mod:`isskit.budget` (the study's
variants, which add priors of their own on the same nodes and grid). The rule, written once
here: after a pilot of ``k0`` with count ``x`` of its chosen class, the image gets the ``k``
on the grid (:func:`k_grid`) that maximises ``G(x, k) - price * k``, ties to the smallest
(:meth:`GainTable.choose`).

* **The posterior expectation** under Jeffreys' prior, ``Beta(x + 1/2, k0 - x + 1/2)``, is
  integrated for all ``x = 0..k0`` at once on fixed nodes in ``q = 1 - p`` (uniform steps of
  0.002 on ``p in [0.5, 0.9]``, geometric with ratio 0.98 from ``q = 0.1`` down to
  ``1e-10``, then 0): ``max(R, 0)`` is interpolated linearly between nodes and the
  interpolant is integrated exactly against the Beta posterior through incomplete beta
  functions of ``(b, a)`` and ``(b + 1, a)``, so a posterior as sharp as
  ``Beta(k0 + 1/2, 1/2)`` costs nothing extra. In the cell where ``R(k, .)`` turns positive
  (at ``p*(k)``, found by bisection) the interpolant runs from the cell's end to
  ``(p*(k), 0)``; and Richardson extrapolation against every other node cancels the leading
  ``h^2`` term. Against ``scipy.integrate.quad`` the result is within about 1e-8 sigma (the
  tests hold it to 1e-7). ``R`` scales with ``sigma``, so the tables are computed at
  ``sigma = 1`` and cached per ``(k0, alpha, k_max)``.
* **The argmax over k** is taken on a documented grid, not over every integer: 0 and the
  geometric grid from 1 to ``k_max`` with a relative step of 2% (every integer below about
  50). ``V`` is flat at its maximum, so the best grid point loses at most about
  ``1e-5 sigma`` of expected radius against the best integer (measured in the tests), while
  an exact integer argmax would need the posterior expectation at every integer up to
  ``k_max`` for every pilot count.

This module never prints and never reads a store: arrays in, arrays out.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betainc

from isskit._bisect import bisect_float
from isskit.stats import expected_radius
from isskit.validate import check_alpha, check_sample_size, check_sigma

__all__ = [
    "DEFAULT_K_MAX",
    "GRID_STEP",
    "Q_NODES",
    "UNIFORM_STEP",
    "BudgetTable",
    "GainTable",
    "budget_table",
    "check_pilots",
    "check_price",
    "frozen",
    "geometric_grid",
    "jeffreys_gain_table",
    "k_grid",
    "radius_nodes",
]

#: Default largest estimation sample size an image may get (and the least top of the grid).
DEFAULT_K_MAX = 10**6
#: Relative step of the grid of k the argmax runs over.
GRID_STEP = 0.02


# Integration nodes in q = 1 - p (see the module docstring). Uniform in p on [0.5, 0.9],
# geometric in q below 0.1: R(k, 1 - q) varies on the scale q ~ 1/k for every k up to
# k_max, which a relative spacing resolves at every scale at once.
UNIFORM_STEP = 2e-3
_GEOMETRIC_RATIO = 0.98
_Q_MIN = 1e-10
#: Rows of pilot counts integrated at once (bounds the temporary arrays to ~10 MB each).
_ROWS = 256


def _q_nodes() -> np.ndarray:
    """Nodes in q on [0, 0.5], increasing, an odd number (every other one is the coarse set).

    Each part (``[0, q_min]`` in two halves, the geometric part, the uniform part) has an
    even number of cells, so the coarse set keeps both ends and the junctions.
    """
    n_geo = math.ceil(math.log(_Q_MIN / 0.1) / math.log(_GEOMETRIC_RATIO))
    n_geo += n_geo % 2
    geo = 0.1 * np.exp(np.linspace(math.log(_Q_MIN / 0.1), 0.0, n_geo + 1))
    n_uni = round(0.4 / UNIFORM_STEP)
    n_uni += n_uni % 2
    uni = np.linspace(0.1, 0.5, n_uni + 1)
    geo[-1] = 0.1  # exactly the junction
    return np.concatenate([[0.0, 0.5 * _Q_MIN], geo, uni[1:]])


_Q = _q_nodes()



def geometric_grid(k_max: int, points: int, k_min: int) -> np.ndarray:
    """0 and about ``points`` geometrically spaced integer sample sizes in ``[k_min, k_max]``.

    The one grid of sample sizes: the budget rule's (:func:`k_grid`) and the oracles'
    (:func:`isskit.studies.oracle.default_k_grid`).
    """
    if not (1 <= k_min <= k_max):
        raise ValueError(f"k_min ({k_min}) and k_max ({k_max}) must satisfy 1 <= k_min <= k_max")
    grid = np.unique(np.round(np.geomspace(k_min, k_max, points)).astype(np.int64))
    return np.concatenate([[0], grid])


def k_grid(k_max: int) -> np.ndarray:
    """The candidate estimation sizes: 0, then 1 .. ``k_max`` with a relative step of 2%."""
    k_max = check_sample_size(k_max, "k_max")
    points = math.ceil(math.log(k_max) / math.log1p(GRID_STEP)) + 1 if k_max > 1 else 1
    return geometric_grid(k_max, points=points, k_min=1)


def check_price(price) -> float:
    """``price`` as a finite float >= 0, or a ValueError naming it."""
    if isinstance(price, bool) or not isinstance(price, numbers.Real):
        raise ValueError(f"price ({price!r}) must be a real number >= 0 (radius per sample)")
    price = float(price)
    if not (np.isfinite(price) and price >= 0.0):
        raise ValueError(f"price ({price}) must be a finite number >= 0 (radius per sample)")
    return price


def check_pilots(pilot_counts, k0: int) -> np.ndarray:
    """Pilot counts as a non-empty 1-d int64 array in ``[0, k0]``, or a ValueError naming one."""
    x = np.asarray(pilot_counts)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"pilot counts must be a non-empty 1-d array (got shape {x.shape})")
    if x.dtype.kind not in "iu" and not np.all(np.isfinite(x) & (x == np.round(x))):
        raise ValueError("pilot counts must be integers")
    x = x.astype(np.int64)
    bad = (x < 0) | (x > k0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"pilot count ({x[i]}) of image {i} must be in [0, k0 = {k0}]")
    return x


def frozen(a) -> np.ndarray:
    """A read-only copy of ``a`` (cached tables are shared)."""
    a = np.array(a)
    a.flags.writeable = False
    return a


Q_NODES = frozen(_Q)


@dataclass(frozen=True, eq=False)
class GainTable:
    """Posterior expected radius ``G(x, k) = E[max(R(k, p), 0) | x]`` for x = 0..k0, k on a grid.

    Attributes
    ----------
    k0 : int
        Pilot size; rows are the pilot counts ``x = 0..k0``.
    sigma, alpha : float
        Noise level and one-sided failure probability.
    prior : str
        ``"jeffreys"`` or ``"eb"``.
    k : ndarray of int64
        The grid of estimation sizes (:func:`k_grid`), 0 first.
    gain : ndarray of float64, shape (k0 + 1, len(k))
        ``G(x, k)``; 0 in the column ``k = 0``.
    """

    k0: int
    sigma: float
    alpha: float
    prior: str
    k: np.ndarray = field(repr=False)
    gain: np.ndarray = field(repr=False)

    def choose(self, price: float, x=None, *, k_cap: int | None = None) -> np.ndarray:
        """The ``k`` maximising ``G(x, k) - price * k`` on the grid (ties to the smallest).

        Parameters
        ----------
        price : float
            Radius per sample, >= 0.
        x : array_like of int, optional
            Pilot counts (default: every x = 0..k0).
        k_cap : int, optional
            Consider only grid sizes ``<= k_cap`` (what the streams hold).

        Returns
        -------
        ndarray of int64
            ``k(x)``, the shape of ``x``.
        """
        price = check_price(price)
        rows = np.arange(self.k0 + 1) if x is None else np.asarray(x, dtype=np.int64)
        cols = self.k.size if k_cap is None else int(np.searchsorted(self.k, k_cap, "right"))
        value = self.gain[rows.reshape(-1), :cols] - price * self.k[:cols]
        return self.k[np.argmax(value, axis=1)].reshape(rows.shape)

    def table(self, price: float) -> BudgetTable:
        """The rule at ``price`` as a :class:`BudgetTable` (k for every pilot count)."""
        price = check_price(price)
        k = self.choose(price)
        j = np.searchsorted(self.k, k)
        value = self.gain[np.arange(self.k0 + 1), j] - price * k
        return BudgetTable(k0=self.k0, price=price, sigma=self.sigma, alpha=self.alpha,
                           prior=self.prior, k_max=int(self.k[-1]),
                           x=frozen(np.arange(self.k0 + 1)), k=frozen(k),
                           value=frozen(value))


@dataclass(frozen=True, eq=False)
class BudgetTable:
    """The budget rule at one price: the estimation size ``k(x)`` for every pilot count x.

    Attributes
    ----------
    k0, price, sigma, alpha, prior, k_max :
        The parameters.
    x : ndarray of int64
        Pilot counts ``0..k0``.
    k : ndarray of int64
        ``k(x)``: fresh samples after the pilot (0 abstains).
    value : ndarray of float64
        ``G(x, k(x)) - price * k(x)``, the maximised objective (>= 0).
    """

    k0: int
    price: float
    sigma: float
    alpha: float
    prior: str
    k_max: int
    x: np.ndarray = field(repr=False)
    k: np.ndarray = field(repr=False)
    value: np.ndarray = field(repr=False)



@functools.lru_cache(maxsize=16)
def radius_nodes(alpha: float, k_max: int):
    """``R(k, 1 - q)`` at sigma = 1 on the grid x nodes, and ``q*(k) = 1 - p*(k)``.

    ``p*(k)`` is the smallest double with ``R(k, p) >= 0`` (NaN where ``R(k, 1) <= 0``: no
    p certifies at that k). Read-only arrays, shared by every table of this alpha.
    """
    ks = k_grid(k_max)[1:]
    p = np.clip(1.0 - _Q, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = expected_radius(ks[:, None], p[None, :], 1.0, alpha)
    if np.any(radius[:, -1] >= 0):  # p = 1/2 never certifies for alpha < 1/2
        raise ValueError(f"alpha ({alpha}) certifies p = 1/2: the budget rule needs alpha < 0.5")
    top = radius[:, 0] > 0  # R(k, 1) > 0
    q_star = np.full(ks.shape, np.nan)
    rows = np.flatnonzero(top)
    if rows.size:
        _, hi = bisect_float(
            np.full(rows.size, 0.5), np.ones(rows.size),
            lambda x, r: expected_radius(ks[rows[r]], x, 1.0, alpha) >= 0,
        )
        q_star[rows] = 1.0 - hi  # exact: hi is in [1/2, 1]
    return frozen(radius), frozen(q_star)


def _linear_rule(q, radius, q_star, F0, F1, F0s, F1s):
    """Integral of the piecewise-linear interpolant of max(R, 0) against each posterior.

    ``q`` nodes (J,), ``radius`` R at the nodes (K, J), ``q_star`` (K,), ``F0``/``F1`` the
    posterior's CDF and first partial moment of q at the nodes (X, J), ``F0s``/``F1s`` the
    same at ``q_star`` (X, K). Returns (X, K).
    """
    h = np.maximum(radius, 0.0)
    m0 = np.diff(F0, axis=1)
    m1 = np.diff(F1, axis=1)
    dq = np.diff(q)
    # h(Q) ~ h_j (q_{j+1} - Q) / dq + h_{j+1} (Q - q_j) / dq on cell j
    c_left = (q[1:] * m0 - m1) / dq
    c_right = (m1 - q[:-1] * m0) / dq
    out = c_left @ h[:, :-1].T + c_right @ h[:, 1:].T
    # The cell where R turns positive (q_j < q* <= q_{j+1}): integrate the line from
    # (q_j, R_j) to (q*, 0) over [q_j, q*] instead of the interpolant of the clipped values.
    cols = np.flatnonzero(np.isfinite(q_star))
    j = np.searchsorted(q, q_star[cols], side="left") - 1
    ok = (j >= 0) & (j < q.size - 1)
    cols, j = cols[ok], j[ok]
    if cols.size:
        d = q_star[cols] - q[j]
        M0 = F0s[:, cols] - F0[:, j]
        M1 = F1s[:, cols] - F1[:, j]
        line = radius[cols, j] * (q_star[cols] * M0 - M1) / d
        old = h[cols, j] * c_left[:, j] + h[cols, j + 1] * c_right[:, j]
        out[:, cols] += line - old
    return out


@functools.lru_cache(maxsize=16)
def _jeffreys_unit_gains(k0: int, alpha: float, k_max: int) -> np.ndarray:
    """``G(x, k)`` at sigma = 1 under Jeffreys' prior, for x = 0..k0 (read-only)."""
    radius, q_star = radius_nodes(alpha, k_max)
    qs = np.where(np.isfinite(q_star), q_star, 0.5)
    out = np.zeros((k0 + 1, radius.shape[0] + 1))
    fine = np.arange(_Q.size)
    coarse = fine[::2]
    for start in range(0, k0 + 1, _ROWS):
        x = np.arange(start, min(start + _ROWS, k0 + 1), dtype=np.float64)[:, None]
        a, b = x + 0.5, k0 - x + 0.5  # p ~ Beta(a, b), so q = 1 - p ~ Beta(b, a)
        mean_q = b / (a + b)
        F0 = betainc(b, a, _Q[None, :])
        F1 = mean_q * betainc(b + 1.0, a, _Q[None, :])
        F0s = betainc(b, a, qs[None, :])
        F1s = mean_q * betainc(b + 1.0, a, qs[None, :])
        g = [_linear_rule(_Q[sel], radius[:, sel], q_star, F0[:, sel], F1[:, sel], F0s, F1s)
             for sel in (fine, coarse)]
        # Richardson: the linear rule's error is c h^2 + O(h^3) for smooth R (kink aside)
        rich = (4.0 * g[0] - g[1]) / 3.0
        out[start : start + x.shape[0], 1:] = np.maximum(rich, 0.0)
    return frozen(out)




@functools.lru_cache(maxsize=64)
def _cached_gain_table(k0, sigma, alpha, k_max) -> GainTable:
    g = sigma * _jeffreys_unit_gains(k0, alpha, k_max)
    return GainTable(k0=k0, sigma=sigma, alpha=alpha, prior="jeffreys",
                     k=frozen(k_grid(k_max)), gain=frozen(g))


def jeffreys_gain_table(k0, sigma, alpha, *, k_max=DEFAULT_K_MAX) -> GainTable:
    """``G(x, k)`` under Jeffreys' prior for every pilot count, on :func:`k_grid` (cached).

    Arguments are validated and normalised before the cache lookup (as
    :func:`isskit.psi.psi_table` does), so a sweep never computes a table twice.

    Examples
    --------
    >>> from isskit.policies._budget_gain import jeffreys_gain_table
    >>> t = jeffreys_gain_table(300, sigma=0.5, alpha=0.001)
    >>> t.gain.shape == (301, t.k.size)
    True
    """
    return _cached_gain_table(check_sample_size(k0, "k0"), check_sigma(sigma),
                              check_alpha(alpha), check_sample_size(k_max, "k_max"))


@functools.lru_cache(maxsize=256)
def _cached_budget_table(k0, price, sigma, alpha, k_max) -> BudgetTable:
    return _cached_gain_table(k0, sigma, alpha, k_max).table(price)


def budget_table(k0, price, sigma, alpha, *, k_max=DEFAULT_K_MAX) -> BudgetTable:
    """The budget rule under Jeffreys' prior at a price: ``k(x)`` for x = 0..k0, cached.

    Arguments are validated and normalised before the cache lookup (as
    :func:`isskit.psi.psi_table` does), so a sweep never computes a table twice.

    Parameters
    ----------
    k0 : int
        Pilot size, >= 1.
    price : float
        Radius per sample, >= 0.
    sigma, alpha : float
        Noise level and one-sided failure probability (< 1/2).
    k_max : int
        Largest estimation size considered.

    Returns
    -------
    BudgetTable
        Read-only arrays ``.x``, ``.k``, ``.value``.

    Examples
    --------
    >>> from isskit.policies._budget_gain import budget_table
    >>> t = budget_table(300, 1e-5, sigma=0.5, alpha=0.001)
    >>> int(t.k[0]), bool(t.k[300] > t.k[280] > 0)
    (0, True)
    """
    k0 = check_sample_size(k0, "k0")
    price = check_price(price)
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    k_max = check_sample_size(k_max, "k_max")
    return _cached_budget_table(k0, price, sigma, alpha, k_max)


