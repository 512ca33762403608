"""The budget policy: each image's pilot decides how many fresh samples buy it the most radius.

DESIGN.md, "Policies": a pilot of ``k0`` fresh samples chooses the class (its most frequent
label) and, with its count ``x`` of that class, gives a Jeffreys posterior
``Beta(x + 1/2, k0 - x + 1/2)`` on the chosen class's probability ``p``. The image then gets
the ``k >= 0`` fresh samples that maximise

    V(k; x) = E_posterior[max(R(k, p), 0)] - price * k,        V(0; x) = 0,

with ``R(k, p)`` the expected radius of :func:`isskit.stats.expected_radius` (the count at
its mean ``p k``, as the paper's Eq. 3). ``k = 0`` abstains after the pilot. The certificate
is Cohen's one-sided Clopper-Pearson bound on the ``k`` samples after the pilot, so the
estimation samples are independent of everything that chose ``k`` (the pilot, and with a
mean budget the other images' pilots): validity ``fixed-n``.

Names: ``k0`` pilot size, ``x`` the pilot's count of its own top class, ``k`` the estimation
sample size, ``price`` radius per sample (the Lagrange multiplier of the mean budget), ``B``
the mean budget per image in samples (pilot included), ``alpha`` the certificate's one-sided
failure probability, ``sigma`` the noise level, ``k_max`` the largest ``k`` considered.

How the rule is computed (``docs/budget.md`` has the measurements):

* **The posterior expectation** ("gain") ``G(x, k) = E[max(R(k, p), 0)]`` is integrated for
  all ``x = 0..k0`` at once on fixed nodes in ``q = 1 - p`` (uniform steps of 0.002 on
  ``p in [0.5, 0.9]``, geometric with ratio 0.98 from ``q = 0.1`` down to ``1e-10``, then 0):
  ``max(R, 0)`` is interpolated linearly between nodes and the interpolant is integrated
  exactly against the Beta posterior through incomplete beta functions of ``(b, a)`` and
  ``(b + 1, a)``, so a posterior as sharp as ``Beta(k0 + 1/2, 1/2)`` costs nothing extra. In
  the cell where ``R(k, .)`` turns positive (at ``p*(k)``, found by bisection) the
  interpolant runs from the cell's end to ``(p*(k), 0)``; and Richardson extrapolation
  against every other node cancels the leading ``h^2`` term. Against
  ``scipy.integrate.quad`` the result is within about 1e-8 sigma (the tests hold it to 1e-7).
  ``R`` scales with ``sigma``, so the tables are computed at ``sigma = 1`` and cached per
  ``(k0, alpha, k_max)``.
* **The argmax over k** is taken on a documented grid, not over every integer: 0 and the
  geometric grid of :func:`isskit.studies.oracle.default_k_grid` from 1 to ``k_max`` with a relative
  step of 2% (every integer below about 50). ``V`` is flat at its maximum, so the best grid
  point loses at most about ``1e-5 sigma`` of expected radius against the best integer
  (measured in the tests), while an exact integer argmax would need the posterior
  expectation at every integer up to ``k_max`` for every pilot count. Ties go to the
  smallest ``k`` (a price at or above every radius-per-sample ratio gives ``k = 0``).
* **A mean budget B** is met by the price: the mean of ``k0 + k(x_i; price)`` over the
  images falls as the price rises, so the price is found by bisection to adjacent doubles
  (:func:`isskit._bisect.bisect_float`); the images whose ``k`` differs between those two
  prices are exactly the ones at the breakpoint, where two sizes tie, and they are split
  between the two (in image order) so that the mean is as close to ``B`` as possible
  without exceeding it: within one image's step in ``k`` divided by the number of images.
* **Empirical Bayes** (``prior="eb"``): instead of Jeffreys' prior, a discrete prior on
  ``p`` fitted by maximum likelihood (EM, the NPMLE) to the pilot counts of all the images
  replayed together. It uses only pilots, which are independent of every image's estimation
  samples, so the certificate keeps alpha; the rule then depends on the batch of images.
* **A second pilot** (``k1 > 0``, beyond DESIGN.md's one-stage definition): after the first
  pilot an image may draw ``k1`` more pilot samples, where the objective expected after
  them (over their predictive distribution, :func:`pilot_predictive`) minus ``price * k1``
  beats stopping (:func:`two_stage_rule`); it then takes the rule's ``k`` for the pooled
  count of ``k0 + k1`` and counts over ``[k0 + k1, k0 + k1 + k)``. With ``B``, the price that
  decides who draws the second pilot is solved on the expected samples: it may not see any
  second pilot, since those samples are estimation samples of the images that stop after
  one. A second price, on the pooled counts of the images that drew it, then shares what
  the others left of ``B`` among them.

This module never prints, never reads a store and never imports click: arrays in, arrays out.
:func:`replay_budget` takes the counts from a callable, which replay answers from its stream
index (see its docstring).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.special import betainc, betaln, gammaln, xlogy

from isskit._bisect import bisect_float
from isskit.stats import certified_radius, cp_lower, expected_radius
from isskit.studies.oracle import default_k_grid
from isskit.validate import (
    MAX_SAMPLE_SIZE,
    check_alpha,
    check_positive_int,
    check_sample_size,
    check_sigma,
)

__all__ = [
    "DEFAULT_K0",
    "DEFAULT_K_MAX",
    "GRID_STEP",
    "PRIORS",
    "Budget",
    "BudgetPlan",
    "BudgetReplay",
    "BudgetTable",
    "GainTable",
    "PriceSolution",
    "Prior",
    "TwoStageRule",
    "binned_prior",
    "budget_table",
    "empirical_prior",
    "gain_table",
    "k_grid",
    "pilot_predictive",
    "plan_budget",
    "replay_budget",
    "solve_price",
    "two_stage_rule",
]

#: Default pilot size. In the study of docs/budget.md (20 shared logs, mean budgets of 4,000
#: to 29,000) 300 is the one-stage pilot that never falls far behind: 1,000 is better at
#: large budgets but spends a quarter of a budget of 4,000 on pilots, 100 the other way.
DEFAULT_K0 = 300
#: Default largest estimation sample size an image may get.
DEFAULT_K_MAX = 10**6
#: Default one-sided failure probability (Cohen et al. and Chen et al. certify at 0.001).
DEFAULT_ALPHA = 0.001
#: Relative step of the grid of k the argmax runs over.
GRID_STEP = 0.02
#: Priors on the chosen class's p: Jeffreys' Beta(1/2, 1/2), or empirical Bayes.
PRIORS = ("jeffreys", "eb")

# Integration nodes in q = 1 - p (see the module docstring). Uniform in p on [0.5, 0.9],
# geometric in q below 0.1: R(k, 1 - q) varies on the scale q ~ 1/k for every k up to
# k_max, which a relative spacing resolves at every scale at once.
_UNIFORM_STEP = 2e-3
_GEOMETRIC_RATIO = 0.98
_Q_MIN = 1e-10
#: Rows of pilot counts integrated at once (bounds the temporary arrays to ~10 MB each).
_ROWS = 256


def _fmt(x) -> str:
    """A number without exponent or trailing zeros (names must not contain a '-' in values)."""
    if isinstance(x, numbers.Integral):
        return str(int(x))
    return np.format_float_positional(float(x), trim="-")


def _q_nodes() -> np.ndarray:
    """Nodes in q on [0, 0.5], increasing, an odd number (every other one is the coarse set).

    Each part (``[0, q_min]`` in two halves, the geometric part, the uniform part) has an
    even number of cells, so the coarse set keeps both ends and the junctions.
    """
    n_geo = math.ceil(math.log(_Q_MIN / 0.1) / math.log(_GEOMETRIC_RATIO))
    n_geo += n_geo % 2
    geo = 0.1 * np.exp(np.linspace(math.log(_Q_MIN / 0.1), 0.0, n_geo + 1))
    n_uni = round(0.4 / _UNIFORM_STEP)
    n_uni += n_uni % 2
    uni = np.linspace(0.1, 0.5, n_uni + 1)
    geo[-1] = 0.1  # exactly the junction
    return np.concatenate([[0.0, 0.5 * _Q_MIN], geo, uni[1:]])


_Q = _q_nodes()


def k_grid(k_max: int) -> np.ndarray:
    """The candidate estimation sizes: 0, then 1 .. ``k_max`` with a relative step of 2%."""
    k_max = check_sample_size(k_max, "k_max")
    points = math.ceil(math.log(k_max) / math.log1p(GRID_STEP)) + 1 if k_max > 1 else 1
    return default_k_grid(k_max, points=points, k_min=1)


# ------------------------------------------------------------------ the policy


def _check_price(price) -> float:
    if isinstance(price, bool) or not isinstance(price, numbers.Real):
        raise ValueError(f"price ({price!r}) must be a real number >= 0 (radius per sample)")
    price = float(price)
    if not (np.isfinite(price) and price >= 0.0):
        raise ValueError(f"price ({price}) must be a finite number >= 0 (radius per sample)")
    return price


def _check_B(B, k0: int) -> float:
    if isinstance(B, bool) or not isinstance(B, numbers.Real):
        raise ValueError(f"B ({B!r}) must be a number of samples per image")
    B = float(B)
    if not np.isfinite(B):
        raise ValueError(f"B ({B}) must be a finite number of samples per image")
    if not B > k0:
        raise ValueError(
            f"B ({_fmt(B)}) must be larger than k0 ({k0}): every image spends its pilot of "
            f"k0 samples, so a mean budget of B = k0 or less leaves nothing to certify with"
        )
    return B


@dataclass(frozen=True)
class Budget:
    """The budget policy: a pilot's posterior chooses each image's fresh sample size.

    Give exactly one of ``price`` (a per-image rule, usable online) and ``B`` (a mean
    budget in replay: the price is solved for over the replayed images).

    Parameters
    ----------
    k0 : int
        Pilot size, >= 1: the class is chosen on ``[0, k0)`` and its count there gives the
        posterior.
    price : float, optional
        Radius bought per sample must exceed this: ``k`` maximises
        ``E[max(R(k, p), 0)] - price * k``. ``>= 0``.
    B : float, optional
        Mean samples per image, pilot included (``mean(k0 + k) <= B``, within one image's
        step of k), ``> k0``.
    alpha : float
        One-sided failure probability of the certificate, in (0, 1/2).
    prior : {"jeffreys", "eb"}
        Jeffreys' Beta(1/2, 1/2) (DESIGN.md), or an empirical-Bayes prior fitted to the
        pilots of the images replayed together (:func:`empirical_prior`).
    k_max : int
        Largest estimation sample size an image may get, >= 1.
    k1 : int
        Second pilot, >= 0 (0: one stage, as DESIGN.md defines the policy). With ``k1 > 0``
        an image draws ``k1`` more pilot samples where their expected worth (the objective
        after them, averaged over their predictive distribution, minus ``price * k1``)
        beats stopping after the first pilot; it then counts over ``[k0 + k1, k0 + k1 + k)``.
        Still ``fixed-n``: both pilots come before, and apart from, the estimation samples.
        With ``B`` a first price, solved on the expected samples (it may see only first
        pilots), decides who draws the second pilot and what the others get; a second
        price then shares the rest of ``B`` among those who drew it, by their pooled
        counts, so the mean meets ``B`` within one image's step.

    Examples
    --------
    >>> from isskit.budget import Budget
    >>> p = Budget(B=26000, k0=300)
    >>> p.name, p.validity, p.selection_size
    ('Budget-B=26000-k0=300', 'fixed-n', 300)
    >>> Budget(price=1e-6).name
    'Budget-price=0.000001-k0=300'
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
        k0 = check_sample_size(self.k0, "k0")
        object.__setattr__(self, "k0", k0)
        if (self.price is None) == (self.B is None):
            raise ValueError(
                f"give exactly one of price ({self.price}) and B ({self.B}): a price per "
                "sample (a per-image rule) or a mean budget B (solved over the replayed images)"
            )
        if self.price is not None:
            object.__setattr__(self, "price", _check_price(self.price))
        else:
            object.__setattr__(self, "B", _check_B(self.B, k0))
        alpha = check_alpha(self.alpha)
        if alpha >= 0.5:
            raise ValueError(
                f"alpha ({alpha}) must be < 0.5: at alpha >= 1/2 the certificate's bound is "
                "no longer below the count's frequency"
            )
        object.__setattr__(self, "alpha", alpha)
        prior = str(self.prior).lower()
        if prior not in PRIORS:
            raise ValueError(f"prior ({self.prior!r}) must be one of {', '.join(PRIORS)}")
        object.__setattr__(self, "prior", prior)
        object.__setattr__(self, "k_max", check_sample_size(self.k_max, "k_max"))
        object.__setattr__(self, "k1", check_positive_int(self.k1, "k1", minimum=0,
                                                          maximum=MAX_SAMPLE_SIZE))

    @property
    def name(self) -> str:
        """Readable name: ``Budget-B=<B>-k0=<k0>`` or ``Budget-price=<price>-k0=<k0>``."""
        head = f"B={_fmt(self.B)}" if self.B is not None else f"price={_fmt(self.price)}"
        out = f"Budget-{head}-k0={self.k0}"
        if self.prior != "jeffreys":
            out += f"-prior={self.prior}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        if self.k_max != DEFAULT_K_MAX:
            out += f"-k_max={self.k_max}"
        if self.k1:
            out += f"-k1={self.k1}"
        return out

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: the pilot ``[0, k0)``."""
        return self.k0

    @property
    def k_bar(self) -> int:
        """The mean budget ``B`` rounded up (0 for a price, whose mean is known only after)."""
        return 0 if self.B is None else math.ceil(self.B)

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``k0 + k1 + k_max``."""
        return self.k0 + self.k1 + self.k_max

    def params(self) -> dict:
        """The policy's parameters, by their names in DESIGN.md."""
        return {
            "kind": self.kind,
            "k0": self.k0,
            "price": self.price,
            "B": self.B,
            "alpha": self.alpha,
            "prior": self.prior,
            "k_max": self.k_max,
            "k1": self.k1,
        }

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------ posterior gains


def _frozen(a) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


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
        p = _frozen(np.asarray(self.p, dtype=np.float64).reshape(-1))
        w = _frozen(np.asarray(self.weight, dtype=np.float64).reshape(-1))
        if p.size == 0 or w.shape != p.shape:
            raise ValueError(f"p ({p.size} points) and weight ({w.size}) must match, >= 1 each")
        if np.any(~((p >= 0) & (p <= 1))):
            raise ValueError(f"prior support ({p[~((p >= 0) & (p <= 1))][0]}) must be in [0, 1]")
        if np.any(~(w >= 0)) or abs(float(w.sum()) - 1.0) > 1e-9:
            raise ValueError(f"prior weights must be >= 0 and sum to 1 (sum {w.sum()})")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "k0", check_sample_size(self.k0, "k0"))


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
        price = _check_price(price)
        rows = np.arange(self.k0 + 1) if x is None else np.asarray(x, dtype=np.int64)
        cols = self.k.size if k_cap is None else int(np.searchsorted(self.k, k_cap, "right"))
        value = self.gain[rows.reshape(-1), :cols] - price * self.k[:cols]
        return self.k[np.argmax(value, axis=1)].reshape(rows.shape)

    def table(self, price: float) -> BudgetTable:
        """The rule at ``price`` as a :class:`BudgetTable` (k for every pilot count)."""
        price = _check_price(price)
        k = self.choose(price)
        j = np.searchsorted(self.k, k)
        value = self.gain[np.arange(self.k0 + 1), j] - price * k
        return BudgetTable(k0=self.k0, price=price, sigma=self.sigma, alpha=self.alpha,
                           prior=self.prior, k_max=int(self.k[-1]),
                           x=_frozen(np.arange(self.k0 + 1)), k=_frozen(k),
                           value=_frozen(value))


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
def _radius_nodes(alpha: float, k_max: int):
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
    return _frozen(radius), _frozen(q_star)


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
    radius, q_star = _radius_nodes(alpha, k_max)
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
    return _frozen(out)


def _prior_support() -> np.ndarray:
    """Support of the empirical-Bayes prior: p = 1 - q on the nodes, and a grid below 1/2."""
    below = np.arange(0.0, 0.5, _UNIFORM_STEP)
    return np.concatenate([below, (1.0 - _Q)[::-1]])


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
    >>> from isskit.budget import empirical_prior
    >>> rng = np.random.default_rng(0)
    >>> prior = empirical_prior(rng.binomial(300, 0.9, 2000), 300)
    >>> float(np.round(np.sum(prior.p * prior.weight), 2))
    0.9
    """
    k0 = check_sample_size(k0, "k0")
    x = _check_pilots(pilot_counts, k0)
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
    return Prior(p=_frozen(p), weight=_frozen(w), k0=k0, iterations=it, log_likelihood=ll * m)


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
    >>> from isskit.budget import binned_prior
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
        radius, _ = _radius_nodes(alpha, k_max)
        weights = post[:, -_Q.size:][:, ::-1]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            radius = expected_radius(k_grid(k_max)[1:, None], prior.p[None, :], 1.0, alpha)
        weights = post
    out = np.zeros((k0 + 1, radius.shape[0] + 1))
    out[:, 1:] = weights @ np.maximum(radius, 0.0).T
    return out


@functools.lru_cache(maxsize=64)
def _cached_gain_table(k0, sigma, alpha, k_max) -> GainTable:
    g = sigma * _jeffreys_unit_gains(k0, alpha, k_max)
    return GainTable(k0=k0, sigma=sigma, alpha=alpha, prior="jeffreys",
                     k=_frozen(k_grid(k_max)), gain=_frozen(g))


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
        (the table is then cached, like psi tables, per normalised parameters).

    Returns
    -------
    GainTable

    Examples
    --------
    >>> from isskit.budget import gain_table
    >>> t = gain_table(300, sigma=0.5, alpha=0.001)
    >>> t.gain.shape == (301, t.k.size)
    True
    >>> bool(t.gain[300, -1] > t.gain[250, -1] > 0 == t.gain[300, 5])  # k = 5 cannot certify
    True
    """
    k0 = check_sample_size(k0, "k0")
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    k_max = check_sample_size(k_max, "k_max")
    if prior is None:
        return _cached_gain_table(k0, sigma, alpha, k_max)
    if not isinstance(prior, Prior):
        raise ValueError(f"prior ({prior!r}) must be None (Jeffreys) or a Prior")
    if prior.k0 != k0:
        raise ValueError(f"prior was fitted at k0 = {prior.k0}, not k0 = {k0}")
    g = sigma * _discrete_unit_gains(prior, alpha, k_max)
    return GainTable(k0=k0, sigma=sigma, alpha=alpha, prior="eb", k=_frozen(k_grid(k_max)),
                     gain=_frozen(g))


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
    >>> from isskit.budget import budget_table
    >>> t = budget_table(300, 1e-5, sigma=0.5, alpha=0.001)
    >>> int(t.k[0]), bool(t.k[300] > t.k[280] > 0)
    (0, True)
    """
    k0 = check_sample_size(k0, "k0")
    price = _check_price(price)
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    k_max = check_sample_size(k_max, "k_max")
    return _cached_budget_table(k0, price, sigma, alpha, k_max)


# ------------------------------------------------------------------ a mean budget


def _check_pilots(pilot_counts, k0: int) -> np.ndarray:
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


@dataclass(frozen=True, eq=False)
class PriceSolution:
    """The price that meets a mean budget over a set of pilots, and each image's k.

    Attributes
    ----------
    price : float
        The price ``B`` implied (radius per sample).
    k : ndarray of int64
        Each image's estimation size; every one maximises ``G(x_i, k) - price * k`` on the
        grid (those at the breakpoint, where two sizes tie, are split between them).
    mean_samples : float
        ``mean(k0 + k)``: ``<= B`` and above ``B - (one image's step in k) / m``.
    B : float
        The mean budget asked for.
    """

    price: float
    k: np.ndarray = field(repr=False)
    mean_samples: float
    B: float


def solve_price(gains: GainTable, pilot_counts, B: float, *, k_cap: int | None = None,
                n_samples: int | None = None) -> PriceSolution:
    """The price at which the images' mean samples ``mean(k0 + k(x_i))`` meet ``B``.

    Parameters
    ----------
    gains : GainTable
        The posterior gains (:func:`gain_table`).
    pilot_counts : array_like of int
        Each image's pilot count, in [0, k0].
    B : float
        Mean samples per image, pilot included, ``> k0``.
    k_cap : int, optional
        Largest estimation size an image may get (what the streams hold after the pilot).
    n_samples : int, optional
        The streams' length N, named in the message when ``B`` cannot be met.

    Returns
    -------
    PriceSolution

    Raises
    ------
    ValueError
        ``B <= k0``, or ``B`` larger than the images can spend even at price 0 (every image
        with any chance of a radius given its largest ``k``).
    """
    k0 = gains.k0
    B = _check_B(B, k0)
    x = _check_pilots(pilot_counts, k0)
    m = x.size
    ux, inv = np.unique(x, return_inverse=True)
    inv = inv.reshape(-1)
    cnt = np.bincount(inv).astype(np.float64)
    total = (B - k0) * m

    def spent(price):
        return float(cnt @ gains.choose(price, ux, k_cap=k_cap))

    at_zero = spent(0.0)
    if at_zero < total:
        most = k0 + at_zero / m
        cap = int(gains.k[-1]) if k_cap is None else min(int(k_cap), int(gains.k[-1]))
        where = f"streams of N = {n_samples} samples" if n_samples is not None else "k_max"
        raise ValueError(
            f"B ({_fmt(B)}) is larger than these images can spend: at most {most:.6g} mean "
            f"samples (k0 = {k0} plus up to {cap} each, the limit of the {where}; images "
            "whose pilot leaves no chance of a radius get nothing)"
        )
    if at_zero == total:
        k = gains.choose(0.0, ux, k_cap=k_cap)[inv]
        return PriceSolution(0.0, _frozen(k), float(k0 + k.mean()), B)
    cols = slice(1, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = float(np.max(gains.gain[ux][:, cols] / gains.k[cols]))
    # At price >= top every k > 0 has V <= 0 = V(0): all abstain, spending 0 <= total.
    hi_start = max(2.0 * top, np.finfo(np.float64).tiny)
    lo, hi = bisect_float(
        np.zeros(1), np.array([hi_start]), lambda price, rows: np.array([spent(price[0]) <= total])
    )
    k_lo = gains.choose(float(lo[0]), ux, k_cap=k_cap)[inv]
    k_hi = gains.choose(float(hi[0]), ux, k_cap=k_cap)[inv]
    # Images at the breakpoint: both sizes tie there. Give the larger one to as many as fit
    # (in image order) so the mean comes within one image's step of B.
    moved = np.flatnonzero(k_lo != k_hi)
    extra = np.cumsum(k_lo[moved] - k_hi[moved])
    take = moved[: int(np.searchsorted(extra, total - k_hi.sum(), side="right"))]
    k = k_hi.copy()
    k[take] = k_lo[take]
    return PriceSolution(float(hi[0]), _frozen(k), float(k0 + k.mean()), B)


# ------------------------------------------------------------------ a second pilot


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
    price = _check_price(price)
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
    return TwoStageRule(price=price, second=_frozen(second), k_one=_frozen(k_one),
                        k_two=_frozen(k_two), expected_samples=_frozen(expected))


# ------------------------------------------------------------------ replay


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


def plan_budget(policy: Budget, pilot_counts, *, sigma: float, n_samples: int | None = None,
                image_ids=None, prior: Prior | None = None, count=None) -> BudgetPlan:
    """Each image's estimation size from its pilot count (and, with ``B``, everyone's).

    Parameters
    ----------
    policy : Budget
        The policy.
    pilot_counts : array_like of int, shape (n,)
        Each image's count of its chosen class over the pilot ``[0, k0)``.
    sigma : float
        Noise level.
    n_samples : int, optional
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
    if not isinstance(policy, Budget):
        raise ValueError(f"policy ({policy!r}) must be a Budget")
    sigma = check_sigma(sigma)
    k0, k1 = policy.k0, policy.k1
    x = _check_pilots(pilot_counts, k0)
    m = x.size
    ids = np.arange(m) if image_ids is None else np.asarray(image_ids)
    k_cap = None
    if n_samples is not None:
        n_samples = check_sample_size(n_samples, "n_samples")
        if n_samples < k0:
            raise ValueError(
                f"policy {policy.name} needs its pilot of {k0} samples for image "
                f"{int(ids[0])}, but each stream holds {n_samples} (N)"
            )
        k_cap = n_samples - k0
    if policy.prior == "jeffreys":
        if prior is not None:
            raise ValueError(f"policy {policy.name} has Jeffreys' prior: give no fitted prior")
    elif prior is None:
        prior = empirical_prior(x, k0)
    gains = gain_table(k0, sigma, policy.alpha, k_max=policy.k_max, prior=prior)
    second = np.zeros(m, bool)
    start = np.full(m, k0, np.int64)
    price_second = math.nan
    if k1 == 0:
        if policy.B is not None:
            sol = solve_price(gains, x, policy.B, k_cap=k_cap, n_samples=n_samples)
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
            price = _solve_two_stage(gains, both, predictive, x, policy.B, k_cap, n_samples)
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
    if n_samples is not None and np.any(start + k > n_samples):
        over = np.flatnonzero(start + k > n_samples)
        more = f" (and {over.size - 1} more images)" if over.size > 1 else ""
        i = int(over[0])
        raise ValueError(
            f"policy {policy.name} needs {int(start[i] + k[i])} samples for image "
            f"{int(ids[i])}{more}, but each stream holds {n_samples} (N); sample more, "
            "raise the price, or lower k_max"
        )
    samples = start + k
    return BudgetPlan(k=_frozen(k), start=_frozen(start), samples=_frozen(samples),
                      second=_frozen(second), price=float(price),
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


def _solve_two_stage(first, both, predictive, x, B, k_cap, n_samples) -> float:
    """The price at which the images' expected samples (over their second pilots) meet B."""
    k0 = first.k0
    B = _check_B(B, k0)
    cnt = np.bincount(x, minlength=k0 + 1).astype(np.float64)
    total = B * x.size

    def spent(price):
        return float(cnt @ two_stage_rule(first, both, predictive, price,
                                          k_cap=k_cap).expected_samples)

    at_zero = spent(0.0)
    if at_zero < total:
        where = f"streams of N = {n_samples} samples" if n_samples is not None else "k_max"
        raise ValueError(
            f"B ({_fmt(B)}) is larger than these images can spend: at most "
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


def replay_budget(policy: Budget, pilot_counts, count, *, sigma: float, chosen,
                  n_samples: int | None = None, image_ids=None,
                  prior: Prior | None = None) -> BudgetReplay:
    """Replay the budget policy from plain arrays: pilot counts in, certificates out.

    :func:`plan_budget`, then the count of each image's chosen class over ``[k0, k0 + k)``
    (``[k0 + k1, k0 + k1 + k)`` after a second pilot) and Cohen's bound on it.

    Parameters
    ----------
    policy : Budget
        The policy.
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
    n_samples, image_ids, prior :
        As in :func:`plan_budget`. With ``k1 > 0``, ``count`` is asked first for the second
        pilots ``[k0, k0 + k1)`` (an empty range where none is drawn).

    Returns
    -------
    BudgetReplay

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.budget import Budget, replay_budget
    >>> rng = np.random.default_rng(0)
    >>> hits = rng.random((50, 40_000)) < 0.98  # 50 streams, chosen class drawn w.p. 0.98
    >>> cum = np.concatenate([np.zeros((50, 1), int), np.cumsum(hits, axis=1)], axis=1)
    >>> count = lambda a, b: cum[np.arange(50), b] - cum[np.arange(50), a]
    >>> res = replay_budget(Budget(B=10_000, k0=300), cum[:, 300], count, sigma=0.5,
    ...                     chosen=np.zeros(50, int), n_samples=40_000)
    >>> bool(9_000 < res.mean_samples <= 10_000), bool(np.all(res.prediction == 0))
    (True, True)
    """
    m = np.asarray(pilot_counts).size
    chosen = np.asarray(chosen)
    if chosen.shape != (m,) or chosen.dtype.kind not in "iu":
        raise ValueError(f"chosen must hold {m} integer classes (got {chosen.shape} "
                         f"{chosen.dtype})")
    plan = plan_budget(policy, pilot_counts, sigma=sigma, n_samples=n_samples,
                       image_ids=image_ids, prior=prior, count=count)
    k = np.array(plan.k)
    start = np.array(plan.start)
    k_A = _check_counts(count(start, start + k), m, k.max(initial=0))
    if np.any(k_A > k):
        raise ValueError(f"count must return {m} integer counts in [0, stop - start] "
                         f"(got {k_A!r})")
    p_lower = np.full(m, np.nan)
    est = k > 0
    if np.any(est):
        p_lower[est] = cp_lower(k_A[est], k[est], policy.alpha)
    certified = p_lower >= 0.5  # NaN (no estimate) compares False: abstain
    prediction = np.where(certified, chosen.astype(np.int64), -1)
    radius = np.zeros(m)
    radius[certified] = certified_radius(p_lower[certified], sigma)
    return BudgetReplay(prediction=_frozen(prediction), radius=_frozen(radius),
                        p_lower=_frozen(p_lower), samples=plan.samples, k=plan.k,
                        price=plan.price, mean_samples=plan.mean_samples)
