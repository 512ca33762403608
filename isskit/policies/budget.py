"""The budget policy: each image's pilot decides how many fresh samples buy it the most radius.

DESIGN.md, "Policies": a pilot of ``k0`` fresh samples chooses the class (its most frequent
label) and, with its count ``x`` of that class, gives a Jeffreys posterior
``Beta(x + 1/2, k0 - x + 1/2)`` on the chosen class's probability ``p``. The image then gets
the ``k >= 0`` fresh samples that maximise

    V(k; x) = E_posterior[max(R(k, p), 0)] - price * k,        V(0; x) = 0,

with ``R(k, p)`` the expected radius of :func:`isskit.stats.expected_radius` (the count at
its mean ``p k``, as the paper's Eq. 3), on the grid of :mod:`isskit.policies._budget_gain`
(which computes the posterior expectation). ``k = 0`` abstains after the pilot. The class
is counted over ``[k0, k0 + k)`` and the certificate is Cohen's one-sided Clopper-Pearson
bound on those ``k`` samples, independent of everything that chose ``k`` (the pilot, and
with a mean budget the other images' pilots): validity ``fixed-n``.

Two ways to give the price:

* ``price=`` (radius per sample): a per-image rule, usable online (``isskit certify`` asks
  :meth:`~isskit.policies.RadiusPolicy.needs`, which plans from the pilot alone);
* ``B=`` (mean samples per image, pilot included): the price is solved over the images
  replayed together, from their pilot counts alone (:meth:`Budget.fit`, which replay calls
  before planning). The mean ``k0 + k(x_i)`` falls as the price rises, so the price is
  found by bisection to adjacent doubles (:func:`isskit._bisect.bisect_float`): the fitted
  policy is ``budget price=<that price>``, whose mean is at most ``B`` while the next
  smaller double spends more than ``B``. Replay reports the price, so a user can carry it to
  ``isskit certify`` and get the same sizes image by image.

Names: ``k0`` pilot size, ``x`` the pilot's count of its own top class, ``k`` the estimation
sample size, ``price`` radius per sample (the Lagrange multiplier of the mean budget), ``B``
the mean budget per image in samples (pilot included), ``alpha`` the certificate's one-sided
failure probability, ``k_max`` the largest ``k`` an image may get.

This module never prints and never reads a store.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from isskit._bisect import bisect_float
from isskit._renamed import renamed as _renamed
from isskit.policies._budget_gain import (
    DEFAULT_K_MAX,
    GainTable,
    check_pilots,
    check_price,
    frozen,
    jeffreys_gain_table,
)
from isskit.policies.base import DEFAULT_ALPHA, CountPlan, RadiusPolicy, fmt, name_suffix, register
from isskit.validate import check_alpha, check_sample_size

__all__ = ["DEFAULT_K0", "Budget", "PriceSolution", "check_B", "solve_price"]

#: Default pilot size. In the study of docs/budget.md (20 shared logs, mean budgets of 4,000
#: to 29,000) 300 is the one-stage pilot that never falls far behind: 1,000 is better at
#: large budgets but spends a quarter of a budget of 4,000 on pilots, 100 the other way.
DEFAULT_K0 = 300


def check_B(B, k0: int) -> float:
    """``B`` as a finite float above ``k0``, or a ValueError naming it."""
    if isinstance(B, bool) or not isinstance(B, numbers.Real):
        raise ValueError(f"B ({B!r}) must be a number of samples per image")
    B = float(B)
    if not np.isfinite(B):
        raise ValueError(f"B ({B}) must be a finite number of samples per image")
    if not B > k0:
        raise ValueError(
            f"B ({fmt(B)}) must be larger than k0 ({k0}): every image spends its pilot of "
            f"k0 samples, so a mean budget of B = k0 or less leaves nothing to certify with"
        )
    return B


@register
@dataclass(frozen=True)
class Budget(RadiusPolicy):
    """The budget policy: a pilot's posterior chooses each image's fresh sample size.

    Give exactly one of ``price`` (a per-image rule, usable online) and ``B`` (a mean
    budget: the price is solved for over the images replayed together, :meth:`fit`).

    Parameters
    ----------
    k0 : int
        Pilot size, >= 1: the class is chosen on ``[0, k0)`` and its count there gives the
        posterior. Default 300.
    price : float, optional
        Radius bought per sample must exceed this: ``k`` maximises
        ``E[max(R(k, p), 0)] - price * k``. ``>= 0``.
    B : float, optional
        Mean samples per image, pilot included (``mean(k0 + k) <= B``), ``> k0``.
    alpha : float
        One-sided failure probability of the certificate, in (0, 1/2).
    k_max : int
        Largest estimation sample size an image may get, >= 1 (default 10^6).

    Examples
    --------
    >>> from isskit.policies import Budget
    >>> p = Budget(B=26000, k0=300)
    >>> p.name, p.validity, p.selection_size
    ('Budget-B=26000-k0=300', 'fixed-n', 300)
    >>> q = Budget(price=1e-5)
    >>> q.name
    'Budget-price=0.00001-k0=300'
    >>> plan = q.plan([300, 290, 150], sigma=0.5)  # all agree, mostly, a coin
    >>> int(plan.start), bool(plan.k[0] > plan.k[1] > 0 == plan.k[2])
    (300, True)
    """

    k0: int = DEFAULT_K0
    price: float | None = None
    B: float | None = None
    alpha: float = DEFAULT_ALPHA
    k_max: int = DEFAULT_K_MAX
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
            object.__setattr__(self, "price", check_price(self.price))
        else:
            object.__setattr__(self, "B", check_B(self.B, k0))
        alpha = check_alpha(self.alpha)
        if alpha >= 0.5:
            raise ValueError(
                f"alpha ({alpha}) must be < 0.5: at alpha >= 1/2 the certificate's bound is "
                "no longer below the count's frequency"
            )
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "k_max", check_sample_size(self.k_max, "k_max"))

    @property
    def name(self) -> str:
        """Readable name: ``Budget-B=<B>-k0=<k0>`` or ``Budget-price=<price>-k0=<k0>``."""
        head = f"B={fmt(self.B)}" if self.B is not None else f"price={fmt(self.price)}"
        return f"Budget-{head}-k0={self.k0}" + name_suffix(self, ("alpha", "k_max"))

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: the pilot ``[0, k0)``."""
        return self.k0

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume: ``k0 + k_max``."""
        return self.k0 + self.k_max

    @property
    def budget(self) -> int:
        """``B`` rounded up; ``k0`` for a price, whose mean is known only once replayed."""
        return self.k0 if self.B is None else math.ceil(self.B)

    def gains(self, sigma: float) -> GainTable:
        """The posterior gains ``G(x, k)`` the rule maximises over (cached per sigma).

        The grid reaches at least 10^6 whatever ``k_max`` (which only caps it), so that a
        policy fitted on streams of N samples (``k_max = N - k0``) chooses on the same grid
        as the unfitted one.
        """
        return jeffreys_gain_table(self.k0, sigma, self.alpha,
                                   k_max=max(DEFAULT_K_MAX, self.k_max))

    def fit(self, x, *, sigma: float, samples_per_image: int | None = None) -> Budget:
        """With ``B``: the price policy whose mean over pilot counts ``x`` meets ``B``.

        Parameters
        ----------
        x : array_like of int, shape (n,)
            Every image's count of its chosen class over the pilot ``[0, k0)``.
        sigma : float
            Noise level.
        samples_per_image : int, optional
            Samples each stream holds: sizes above ``samples_per_image - k0`` are not considered,
            and the fitted policy's ``k_max`` is capped there.

        Returns
        -------
        Budget
            ``self`` for a price; else ``Budget(price=..., k0, alpha, k_max)``.

        Raises
        ------
        ValueError
            ``B`` larger than these images can spend (at price 0), naming the limit.
        """
        if self.B is None:
            return self
        k_cap = (
            self.k_max
            if samples_per_image is None
            else min(self.k_max, int(samples_per_image) - self.k0)
        )
        sol = solve_price(self.gains(sigma), x, self.B, k_cap=max(k_cap, 0),
                          samples_per_image=samples_per_image)
        return Budget(k0=self.k0, price=sol.price, alpha=self.alpha, k_max=max(k_cap, 1))

    def k(self, x, *, sigma: float) -> np.ndarray:
        """The estimation size for pilot counts ``x`` (needs a price: fit a ``B`` first)."""
        if self.price is None:
            raise ValueError(
                f"policy {self.name} has a mean budget B = {fmt(self.B)}: its price is solved "
                "over the images replayed together (isskit replay does it and reports the "
                "price); to certify one image at a time, give that price= instead"
            )
        x = np.asarray(x, dtype=np.int64)
        return self.gains(sigma).choose(self.price, x, k_cap=self.k_max)

    def plan(self, x, *, sigma: float) -> CountPlan:
        """Count ``k(x)`` fresh samples after the pilot: ``[k0, k0 + k)``."""
        k = self.k(x, sigma=sigma)
        return CountPlan(start=self.k0, k=k, k_hat=k)

    def params(self) -> dict:
        """The policy's parameters, by their names in DESIGN.md."""
        return {
            "kind": self.kind,
            "k0": self.k0,
            "price": self.price,
            "B": self.B,
            "alpha": self.alpha,
            "k_max": self.k_max,
        }

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class PriceSolution:
    """The price that meets a mean budget over a set of pilots, and each image's k.

    Attributes
    ----------
    price : float
        The price ``B`` implied (radius per sample): the smallest double at which
        ``mean(k0 + k) <= B``.
    k : ndarray of int64
        Each image's estimation size at that price.
    mean_samples : float
        ``mean(k0 + k)``, ``<= B``.
    B : float
        The mean budget asked for.
    """

    price: float
    k: np.ndarray = field(repr=False)
    mean_samples: float
    B: float


@_renamed(n_samples="samples_per_image")
def solve_price(gains: GainTable, pilot_counts, B: float, *, k_cap: int | None = None,
                samples_per_image: int | None = None) -> PriceSolution:
    """The price at which the images' mean samples ``mean(k0 + k(x_i))`` meet ``B``.

    Every image's ``k`` depends on its own pilot count alone, at one price for all: the
    rule stays a per-image rule, and the price can be carried to an online run. The mean
    is a step function of the price; the price returned is the lowest (to one double) whose
    mean does not exceed ``B``, so the mean falls short of ``B`` by at most the images whose
    count sits at that step, times their step in ``k``, over the number of images.

    Parameters
    ----------
    gains : GainTable
        The posterior gains (any prior: :meth:`Budget.gains`, or the study's).
    pilot_counts : array_like of int
        Each image's pilot count, in [0, k0].
    B : float
        Mean samples per image, pilot included, ``> k0``.
    k_cap : int, optional
        Largest estimation size an image may get (what the streams hold after the pilot).
    samples_per_image : int, optional
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
    B = check_B(B, k0)
    x = check_pilots(pilot_counts, k0)
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
        where = (
            f"streams of N = {samples_per_image} samples"
            if samples_per_image is not None
            else "k_max"
        )
        raise ValueError(
            f"B ({fmt(B)}) is larger than these images can spend: at most {most:.6g} mean "
            f"samples (k0 = {k0} plus up to {cap} each, the limit of the {where}; images "
            "whose pilot leaves no chance of a radius get nothing)"
        )
    price = 0.0
    if at_zero > total:
        with np.errstate(divide="ignore", invalid="ignore"):
            top = float(np.max(gains.gain[ux][:, 1:] / gains.k[1:]))
        # At price >= top every k > 0 has V <= 0 = V(0): all abstain, spending 0 <= total.
        _, hi = bisect_float(np.zeros(1), np.array([max(2.0 * top, np.finfo(np.float64).tiny)]),
                             lambda p, rows: np.array([spent(p[0]) <= total]))
        price = float(hi[0])
    k = gains.choose(price, ux, k_cap=k_cap)[inv]
    return PriceSolution(price, frozen(k), float(k0 + k.mean()), B)
