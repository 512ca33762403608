"""Input-specific sampling, ISS (Chen et al., AAAI 2022, Alg. 2).

Over one image's stream: a pilot ``[0, k0)`` chooses the class (its most frequent label) and
gives a two-sided Clopper-Pearson interval ``(p_low, p_up)`` at level ``alpha`` on its count;
the mapping psi (:mod:`isskit.psi`, built for ``k_bar``, ``U``, ``decline``, ``delta`` and the
store's ``sigma``) turns it into ``k_hat = max(psi_iss(p_low), psi_iss(p_up))`` (paper Eq. 6).
The paper reuses the pilot: the class is counted over ``[0, k_hat)`` and the image consumes
``max(k0, k_hat)`` (validity ``paper-faithful``: the audit finds up to 1.88 alpha at
p_A = 1/2). ``fresh=True`` counts over the ``k_hat`` fresh samples ``[k0, k0 + k_hat)`` and
consumes ``k0 + k_hat`` (validity ``fixed-n``: the count is independent of what chose its
size). ``k_hat = 0`` abstains after the pilot.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from isskit.policies.base import (
    DEFAULT_ALPHA,
    CountPlan,
    RadiusPolicy,
    fmt,
    name_suffix,
    register,
    units,
)
from isskit.validate import (
    check_alpha,
    check_decline,
    check_delta,
    check_pilot_size,
    check_sample_size,
    check_U,
)

__all__ = ["DEFAULT_DELTA", "ISS"]

#: Default grid step of psi: the paper's grid p = 0.5, 0.501, ..., 1 (reference code).
DEFAULT_DELTA = 0.001


def _default_k0(k_bar: int) -> int:
    """ISS's pilot size when none is given: ``k_bar / 100`` (DESIGN.md), at least 1."""
    return max(1, k_bar // 100)


@functools.lru_cache(maxsize=256)
def _pilot_interval(k0: int, alpha: float, x_bytes: bytes):
    """Two-sided CP interval of each pilot count (cached: a sweep asks for the same ones)."""
    from isskit.stats import cp_interval

    x = np.frombuffer(x_bytes, dtype=np.int64)
    low, up = cp_interval(x, np.full(x.shape, k0), alpha)
    return np.atleast_1d(low), np.atleast_1d(up)


@register
@dataclass(frozen=True)
class ISS(RadiusPolicy):
    """Input-specific sampling (Chen et al. 2022, Alg. 2).

    Parameters
    ----------
    k_bar : int
        Desired sample size (the IAS budget ISS accelerates), >= 1.
    U : float
        Maximum radius decline: > 0, and < 1 for ``decline="rd"``.
    decline : {"ad", "rd"}
        Absolute (paper Eq. 4) or relative (Eq. 5) radius decline.
    k0 : int, optional
        Pilot size, in ``[1, k_bar]``. Default ``max(1, k_bar // 100)`` (DESIGN.md:
        k0 = k_bar / 100).
    delta : float
        Grid step of psi_iss, in (0, 1] and dividing 1. Default 0.001, the paper's grid.
    alpha : float
        Failure probability, in (0, 1): the pilot interval is two-sided at ``alpha``
        (the reference code's ``proportion_confint(k, k0, alpha, method="beta")``) and the
        final bound one-sided at ``alpha``.
    fresh : bool
        Count over fresh samples after the pilot instead of reusing it.
    mapping : {"paper", "sup"}
        How ``k_hat`` is looked up from psi's table (:class:`isskit.psi.PsiTable`):
        ``"paper"`` (default) as the paper writes it, ``"sup"`` the largest psi over the
        whole pilot interval.

    Examples
    --------
    >>> from isskit.policies import ISS
    >>> p = ISS(k_bar=100_000, U=0.05, decline="ad")
    >>> p.name, p.k0, p.validity
    ('ISS-AD-10-0.05', 1000, 'paper-faithful')
    >>> ISS(k_bar=100_000, U=0.05, decline="ad", fresh=True).validity
    'fixed-n'
    """

    k_bar: int
    U: float
    decline: str
    k0: int | None = None
    delta: float = DEFAULT_DELTA
    alpha: float = DEFAULT_ALPHA
    fresh: bool = False
    mapping: str = "paper"
    kind: ClassVar[str] = "iss"

    def __post_init__(self):
        from isskit.psi import MAPPINGS

        k_bar = check_sample_size(self.k_bar, "k_bar")
        decline = check_decline(self.decline)
        object.__setattr__(self, "k_bar", k_bar)
        object.__setattr__(self, "decline", decline)
        object.__setattr__(self, "U", check_U(self.U, decline))
        # The pilot is part of the budget it sizes (Alg. 2): replay, audit and verify all
        # refuse k0 > k_bar through check_pilot_size, in the same words.
        k0 = _default_k0(k_bar) if self.k0 is None else check_pilot_size(self.k0, k_bar)
        object.__setattr__(self, "k0", k0)
        object.__setattr__(self, "delta", check_delta(self.delta))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if not isinstance(self.fresh, bool | np.bool_):
            raise ValueError(f"fresh ({self.fresh!r}) must be True or False")
        object.__setattr__(self, "fresh", bool(self.fresh))
        mapping = str(self.mapping).lower()
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping ({self.mapping!r}) must be one of {', '.join(MAPPINGS)}")
        object.__setattr__(self, "mapping", mapping)

    shorthand_key: ClassVar[str] = "k_bar"

    @classmethod
    def shorthand_grid(cls, decline, b, head: str) -> dict:
        """The paper's ``ISS-AD-<k_bar / 10^4>-<U>`` (see :mod:`isskit.policies.spec`)."""
        if decline is None or b is None:
            raise ValueError(
                f"ISS shorthand {head!r} must read ISS-AD-<k_bar/10^4>-<U> or "
                "ISS-RD-<k_bar/10^4>-<U>, e.g. ISS-AD-10-0.05"
            )
        return {"decline": [decline.lower()], "U": [float(b)]}

    @property
    def validity(self) -> str:
        """``fixed-n`` with a fresh count, ``paper-faithful`` when the pilot is reused."""
        return "fixed-n" if self.fresh else "paper-faithful"

    @property
    def name(self) -> str:
        """Readable name: the paper's ``ISS-AD-<k_bar in 10^4>-<U>`` plus non-default params."""
        return (f"ISS-{self.decline.upper()}-{units(self.k_bar)}-{fmt(self.U)}"
                + name_suffix(self, ("k0", "delta", "alpha", "mapping", "fresh"),
                              defaults={"k0": _default_k0(self.k_bar)}))

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: the pilot ``[0, k0)``."""
        return self.k0

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume (``k_hat <= k_bar``, since ``psi <= k_bar``)."""
        return self.k0 + self.k_bar if self.fresh else max(self.k0, self.k_bar)

    @property
    def reference_size(self) -> int:
        """ISS is measured against the IAS it accelerates, ``IAS(k_bar)``."""
        return self.k_bar

    @property
    def budget(self) -> int:
        """The desired sample size ``k_bar``."""
        return self.k_bar

    def table(self, sigma: float):
        """The psi table this policy looks ``k_hat`` up in (cached by :mod:`isskit.psi`)."""
        from isskit.psi import psi_table

        return psi_table(self.k_bar, self.U, self.decline, sigma, self.alpha, self.delta,
                         mapping=self.mapping)

    def k_hat(self, x, *, sigma: float) -> np.ndarray:
        """``k_hat`` for pilot counts ``x`` of the chosen class (paper Alg. 2, Eq. 6)."""
        x = np.ascontiguousarray(np.atleast_1d(x), dtype=np.int64)
        low, up = _pilot_interval(self.k0, self.alpha, x.tobytes())
        return np.asarray(self.table(sigma).k_hat(low, up), dtype=np.int64).reshape(x.shape)

    def plan(self, x, *, sigma: float) -> CountPlan:
        """Count ``k_hat`` samples: ``[0, k_hat)`` reusing the pilot, or ``[k0, k0 + k_hat)``."""
        k_hat = self.k_hat(x, sigma=sigma)
        return CountPlan(start=self.k0 if self.fresh else 0, k=k_hat, k_hat=k_hat)

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {
            "kind": self.kind,
            "k_bar": self.k_bar,
            "U": self.U,
            "decline": self.decline,
            "k0": self.k0,
            "delta": self.delta,
            "alpha": self.alpha,
            "fresh": self.fresh,
            "mapping": self.mapping,
        }

    def __str__(self) -> str:
        return self.name
