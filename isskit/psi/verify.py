"""Exhaustive checks of the paper's Propositions 1 and 2 for one ISS mapping table.

Prop. 1 (bounded decline): for every interval ``[p_low, p_up]`` and every p_A in it,
``decline(k_hat(p_low, p_up); k_bar, p_A) <= U``. Prop. 2 (tightness): for every
interval with ends on the grid and every ``k < k_hat``, some p in the interval has
``decline(k; k_bar, p) > U``. The paper proves both for AD with the exact, continuous
psi; here they are checked for the tabulated psi_iss of :mod:`isskit.psi`, integer k,
AD and RD, and either mapping.

Which intervals: all of them, every ``0 <= p_low <= p_up <= 1`` (real ends, on or off
the grid), not only those a Clopper-Pearson pilot can produce. That is stronger, and
the check costs no more, because the worst interval for each p_A has a closed form
(:func:`verify`). Which p_A: every grid point, ``fine`` evenly spaced points inside
every cell, and, in the cells where the target radius turns positive, the sign change
p0 and points packed geometrically towards it (where psi jumps).

The decline of a certificate is computed on radii clipped at 0, as certification
does: an abstention (k_hat = 0, or a negative expected radius) has radius 0. Where the
target radius is positive this is exactly the decline :func:`isskit.psi.psi_exact`
bounds, so the two agree to the bit on the grid.

The closed forms of the worst intervals live in :mod:`isskit.psi._worst`. This module
computes and returns a result object; it never prints (a tqdm bar on
stderr only when asked) and never imports click or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import betainc, ndtr

from isskit.progress import progress_bar
from isskit.psi._worst import (
    _clipped_decline,
    _pilot_bytes,
    _points,
    _worst_cp_intervals,
    _worst_intervals,
)
from isskit.psi.mapping import _meets, _target, _threshold_samples, psi_exact
from isskit.psi.table import psi_table
from isskit.stats import expected_radius
from isskit.validate import (
    check_memory,
    check_pilot_size,
    check_positive_int,
)

__all__ = ["VerifyResult", "Violation", "verify", "verify_table"]

#: Most points p_A inside the cells one check evaluates: a million take about 2 s and
#: 150 MB (k_bar = 100000, RD), so this bounds one check near 20 s and 1.5 GB.
_MAX_POINTS = 10_000_000


@dataclass(frozen=True)
class Violation:
    """One counterexample to a proposition.

    Attributes
    ----------
    proposition : int
        1 (bounded decline) or 2 (tightness).
    p_low, p_up : float
        The pilot interval.
    p_A : float
        The true probability at which the decline is evaluated.
    k_hat : int
        The mapping's sample size for ``[p_low, p_up]``.
    decline_minus_U : float
        Prop. 1: ``decline(k_hat; k_bar, p_A) - U`` (> 0: the bound is broken).
        Prop. 2: ``decline(k_hat - 1; k_bar, p_A) - U`` at the p_A where ``k_hat - 1``
        comes closest to breaking the bound (<= 0: ``k_hat - 1`` would do everywhere,
        so ``k_hat`` is not tight).
    r_bar : float
        ``R(k_bar, p_A)``, the radius at stake: a large relative decline of a tiny
        radius costs little in absolute terms.
    """

    proposition: int
    p_low: float
    p_up: float
    p_A: float
    k_hat: int
    decline_minus_U: float
    r_bar: float


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found.

    Attributes
    ----------
    holds : bool
        Both propositions hold at every point checked (and psi is minimal at every grid
        point, when that was checked).
    prop1, prop2 : bool
        Each proposition on its own.
    minimal : bool or None
        Every k below psi fails at every grid point (None: not checked).
    worst : Violation or None
        The worst violation of Prop. 1 (largest excess decline); if Prop. 1 holds, the
        worst of Prop. 2; None when both hold.
    worst_prop1, worst_prop2 : Violation or None
        The worst violation of each proposition.
    n_violations_prop1 : int
        How many of the p_A checked break Prop. 1 for their worst interval.
    max_decline : float
        The largest decline ``decline(k_hat; p_A)`` over every p_A and its worst
        interval: <= U when Prop. 1 holds; its distance to U is the margin.
    n_points : int
        How many p_A were checked.
    params : dict
        The table's parameters and the verification settings.
    """

    holds: bool
    prop1: bool
    prop2: bool
    minimal: bool | None
    worst: Violation | None
    worst_prop1: Violation | None
    worst_prop2: Violation | None
    n_violations_prop1: int
    max_decline: float
    n_points: int
    params: dict

    def to_dict(self) -> dict:
        """Plain Python values (JSON-ready)."""
        return asdict(self)



def verify(k_bar, U, decline, sigma, alpha, delta, *, mapping: str = "paper", fine: int = 16,
           k0: int | None = None, check_minimal: bool = False,
           progress: bool = False) -> VerifyResult:
    """Check Props. 1 and 2 for ``psi_table(k_bar, U, decline, sigma, alpha, delta)``.

    See :func:`verify_table`, which this calls on the (cached) table.

    Parameters
    ----------
    k_bar, U, decline, sigma, alpha, delta, mapping :
        As for :func:`isskit.psi.psi_table`.
    fine, k0, check_minimal, progress :
        As for :func:`verify_table`.

    Returns
    -------
    VerifyResult
    """
    table = psi_table(k_bar, U, decline, sigma, alpha, delta, mapping=mapping)
    return verify_table(table, fine=fine, k0=k0, check_minimal=check_minimal,
                        progress=progress)


def verify_table(table, *, fine: int = 16, k0: int | None = None, check_minimal: bool = False,
                 progress: bool = False) -> VerifyResult:
    """Check Props. 1 and 2 for one table (any :class:`isskit.psi.PsiTable`, also hand-made).

    Prop. 1 is checked for every interval ``[p_low, p_up]`` at once: for each p_A the
    interval containing it with the smallest k_hat is found in closed form (prefix and
    suffix minima of the table for ``"paper"``, the point interval for ``"sup"``), and
    the decline at that k_hat is evaluated. Exact (not sampled) over intervals; sampled
    over p_A, ``fine`` points per cell plus the sign-change points. Two Beta quantiles
    per p_A: about 0.1 s for k_bar = 100000, delta = 0.001.

    With ``k0``, Prop. 1 is checked only for the intervals ISS can produce from a pilot
    of k0 samples: the two-sided Clopper-Pearson intervals ``cp_interval(k_A, k0,
    alpha)``, k_A = 0..k0. Both ends increase with k_A, so the intervals containing p_A
    are a contiguous run of k_A, and the smallest k_hat among them is a range minimum.

    Prop. 2 for intervals with grid ends: k_hat is the largest of the grid values (and,
    for ``"sup"``, cell values) it spans, so ``k_hat - 1`` breaks the bound somewhere in
    the interval iff it breaks it at the point that supplies the max. That reduces to
    one check per grid point (``decline(psi(p) - 1; p) > U``) and, for raised ``"sup"``
    cells, one per cell at the p where psi reaches the cell value. "Every k < k_hat"
    follows from ``k_hat - 1`` when the decline is monotone in k; ``check_minimal``
    scans every k below psi at every grid point to show it without that assumption
    (one forward incomplete beta per k below psi: about 1 s for AD, 30 s for RD at
    k_bar = 100000, delta = 0.001).

    Parameters
    ----------
    table : PsiTable
        The table to check, with its mapping.
    fine : int
        Points p_A inside each grid cell, >= 1 (at most 10 million points in all).
    k0 : int, optional
        Pilot size: check Prop. 1 on the pilot's Clopper-Pearson intervals only (default:
        on every interval).
    check_minimal : bool
        Also scan every k < psi(p) at every grid point.
    progress : bool
        Show a tqdm bar on stderr during the ``check_minimal`` scan.

    Returns
    -------
    VerifyResult
    """
    fine = check_positive_int(fine, "fine")
    cells = table.p.size - 1
    if cells * fine > _MAX_POINTS:
        raise ValueError(
            f"fine ({fine}) x {cells:,} grid cells = {cells * fine:,} points p_A, more than "
            f"{_MAX_POINTS:,}; use a smaller fine or a coarser delta"
        )
    U, decline, sigma, alpha = table.U, table.decline, table.sigma, table.alpha
    p_A, cell, on_grid = _points(table, fine)
    if k0 is None:
        lo_idx, hi_idx, k_hat = _worst_intervals(table, cell, on_grid)
        p_low_all = p_up_all = None
    else:
        lo_idx = hi_idx = None
        k0 = check_pilot_size(k0, table.k_bar)
        check_memory(_pilot_bytes(k0), "k0", k0,
                     f"Clopper-Pearson intervals of all {k0 + 1:,} pilot counts and a "
                     "range-minimum table over them")
        p_low_all, p_up_all, k_hat = _worst_cp_intervals(table, p_A, k0)

    # Points where R(k_bar, p_A) <= 0 lose nothing (clipped decline 0); skip their quantiles.
    live = p_A > 0.5 if alpha < 0.5 else p_A > 0.0
    dec = np.zeros(p_A.size)
    r_bar = expected_radius(table.k_bar, p_A[live], sigma, alpha)
    dec[live] = _clipped_decline(k_hat[live], p_A[live], r_bar, decline, sigma, alpha)
    excess = dec - U
    bad1 = excess > 0
    worst1 = None
    if np.any(bad1):
        j = int(np.argmax(excess))
        if p_low_all is not None:
            p_low, p_up = float(p_low_all[j]), float(p_up_all[j])
        elif lo_idx is None:
            p_low = p_up = float(p_A[j])
        else:
            p_low, p_up = float(table.p[lo_idx[j]]), float(table.p[hi_idx[j]])
        r_bar_j = float(expected_radius(table.k_bar, p_A[j], sigma, alpha))
        worst1 = Violation(1, p_low, p_up, float(p_A[j]), int(k_hat[j]), float(excess[j]),
                           r_bar_j)

    worst2 = _prop2(table)
    minimal = _check_minimal(table, progress) if check_minimal else None
    prop1, prop2 = worst1 is None, worst2 is None
    return VerifyResult(
        holds=prop1 and prop2 and minimal is not False,
        prop1=prop1,
        prop2=prop2,
        minimal=minimal,
        worst=worst1 if worst1 is not None else worst2,
        worst_prop1=worst1,
        worst_prop2=worst2,
        n_violations_prop1=int(bad1.sum()),
        max_decline=float(dec.max()),
        n_points=int(p_A.size),
        params={**table.params(), "fine": fine,
                "intervals": "all" if k0 is None else f"clopper-pearson, k0={k0}"},
    )


def _prop2(table) -> Violation | None:
    """Tightness for grid-ended intervals: ``k - 1`` must break the bound where k is attained."""
    U, decline, sigma, alpha = table.U, table.decline, table.sigma, table.alpha
    ps, ks = [table.p[table.k > 0]], [table.k[table.k > 0]]
    if table.mapping == "sup":
        raised = np.flatnonzero(table.k_cell > np.maximum(table.k[:-1], table.k[1:]))
        for c in raised:
            s = _threshold_samples(table.p[c], table.p[c + 1], table.k_bar, U, decline,
                                        sigma, alpha)
            psi_s = psi_exact(s, table.k_bar, U, decline, sigma, alpha)
            at = psi_s == table.k_cell[c]
            # The cell value is the max of psi over these samples, so it is attained at one;
            # if not (a changed table), no p supplies it and the cell is not tight.
            if not np.any(at):
                return Violation(2, float(table.p[c]), float(table.p[c + 1]), float("nan"),
                                 int(table.k_cell[c]), float("nan"), float("nan"))
            ps.append(s[at][:1])
            ks.append(table.k_cell[[c]])
    p = np.concatenate(ps)
    k = np.concatenate(ks)
    if p.size == 0:
        return None
    r_bar = expected_radius(table.k_bar, p, sigma, alpha)
    below = _clipped_decline(k - 1, p, r_bar, decline, sigma, alpha) - U
    bad = below <= 0
    if not np.any(bad):
        return None
    j = int(np.argmax(np.where(bad, -below, -np.inf)))
    return Violation(2, float(p[j]), float(p[j]), float(p[j]), int(k[j]), float(below[j]),
                     float(r_bar[j]))


def _check_minimal(table, progress: bool, chunk: int = 2048) -> bool:
    """Every k in [1, psi(p) - 1] fails at every grid point, by scanning them all.

    Uses the forward incomplete beta (``k`` fails iff ``I_{q*}(p k, k - p k + 1) >
    alpha``); values within a relative 1e-9 of alpha are decided by the exact predicate.
    """
    U, decline, sigma, alpha = table.U, table.decline, table.sigma, table.alpha
    sel = table.k > 1
    p, k = table.p[sel], table.k[sel]
    if p.size == 0:
        return True
    r_bar = expected_radius(table.k_bar, p, sigma, alpha)
    q_star = ndtr(_target(r_bar, U, decline) / sigma)
    kmax = int(k.max())
    for start in progress_bar(range(1, kmax, chunk), enabled=progress, desc="minimality",
                              unit="chunk", leave=False):
        ks = np.arange(start, min(start + chunk, kmax), dtype=np.float64)
        rows = np.flatnonzero(k > start)
        a = p[rows, None] * ks[None, :]
        cdf = betainc(a, ks[None, :] - a + 1.0, q_star[rows, None])
        below = ks[None, :] < k[rows, None]
        meets = below & (cdf <= alpha * (1 + 1e-9))
        if np.any(meets):
            r, c = np.nonzero(meets)
            exact = _meets(ks[c].astype(np.int64), p[rows[r]], r_bar[rows[r]], U, decline,
                                sigma, alpha)
            if np.any(exact):
                return False
    return True
