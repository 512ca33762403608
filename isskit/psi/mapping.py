"""The ISS mapping psi: the sample size that keeps the radius decline within U.

Names follow DESIGN.md's maths and Chen et al. (AAAI 2022):

===================  ==========================================================
name                 symbol
===================  ==========================================================
``k_bar``            desired sample size (the reference budget), bar k
``U``                maximum decline, absolute (AD) or relative (RD)
``decline``          ``"ad"`` or ``"rd"``
``sigma``            noise level
``alpha``            one-sided failure probability of the certificate
``delta``            grid step of the tabulated mapping (paper Alg. 1)
``psi``              psi(p) = min {k : decline(k; k_bar, p) <= U}, 0 where the
                     target radius is <= 0
``psi_iss``          psi on the grid, off the grid the max of the two
                     neighbouring grid values (paper Eq. 6)
``k_hat``            max(psi_iss(p_low), psi_iss(p_up)) (paper Alg. 2)
===================  ==========================================================

The decline is the one :mod:`isskit.stats` computes (``absolute_decline`` /
``relative_decline``, expected radius with the non-integer count ``p k``), and
"k meets the bound" means exactly ``decline(k; k_bar, p) <= U`` evaluated with those
floating-point operations, so :func:`psi_exact` agrees with a brute-force scan that
uses the same formula.

This module computes and looks up tables; it never prints, never plots and never
imports torch or click.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import betainc, ndtr, ndtri

from isskit._atomic import atomic_path
from isskit._bisect import bisect, bisect_float
from isskit._provenance import file_sha256
from isskit._validate import (
    check_alpha,
    check_decline,
    check_delta,
    check_sample_size,
    check_sigma,
    check_U,
)
from isskit.stats import expected_radius

__all__ = ["MAPPINGS", "PsiTable", "psi_exact", "psi_table", "table_files"]

#: Mapping names: how ``k_hat`` is looked up from the grid (see :class:`PsiTable`).
MAPPINGS = ("paper", "sup")


def _check_params(k_bar, U, decline, sigma, alpha):
    k_bar = check_sample_size(k_bar, "k_bar")
    decline = check_decline(decline)
    U = check_U(U, decline)
    sigma = check_sigma(sigma)
    alpha = check_alpha(alpha)
    return k_bar, U, decline, sigma, alpha


def _check_p(p, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    bad = ~((p >= 0.0) & (p <= 1.0))
    if np.any(bad):
        raise ValueError(f"{name} ({p[bad].flat[0]}) must be in [0, 1]")
    return p


def _target(r_bar: np.ndarray, U: float, decline: str) -> np.ndarray:
    """The radius R(k, p) must reach: ``R_bar - U`` (AD) or ``(1 - U) R_bar`` (RD)."""
    return r_bar - U if decline == "ad" else (1.0 - U) * r_bar


def _meets(k, p, r_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Whether ``decline(k; k_bar, p) <= U``, with exactly the operations of isskit.stats.

    ``k = 0`` (no samples: abstain) never meets here; callers only ask where the target
    radius is > 0, and there abstaining loses the whole radius R_bar > U (or > U R_bar).
    """
    k = np.asarray(k)
    out = np.zeros(k.shape, dtype=bool)
    pos = k >= 1
    if np.any(pos):
        # Same operations as stats.absolute_decline / relative_decline.
        drop = r_bar[pos] - expected_radius(k[pos], p[pos], sigma, alpha)
        if decline == "rd":
            drop = drop / r_bar[pos]
        out[pos] = drop <= U
    return out


def _bisect_betainc(p, q_star, k_bar, alpha) -> np.ndarray:
    """Smallest k in [1, k_bar] with ``I_{q*}(p k, k - p k + 1) <= alpha``, all p at once.

    The forward regularised incomplete beta is about 15x cheaper than its inverse, and
    ``Beta(alpha; a, b) >= q*`` iff ``I_{q*}(a, b) <= alpha`` (the CDF is increasing), so
    the search runs on ``betainc``; the caller re-checks the answer with the exact
    inverse. Assumes the predicate is monotone in k (see :func:`psi_exact`).
    """

    def meets(mid, rows):
        kf = mid.astype(np.float64)
        a = p[rows] * kf
        return betainc(a, kf - a + 1.0, q_star[rows]) <= alpha

    # k = 0 fails (no samples); k_bar meets (decline(k_bar) = 0 <= U)
    _, hi = bisect(np.zeros(p.shape, np.int64), np.full(p.shape, k_bar, np.int64), meets)
    return hi


def _bisect_exact(p, r_bar, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Bisection on the exact predicate (:func:`_meets`); the fallback of the fast search."""

    def meets(mid, rows):
        return _meets(mid, p[rows], r_bar[rows], U, decline, sigma, alpha)

    _, hi = bisect(np.zeros(p.shape, np.int64), np.full(p.shape, k_bar, np.int64), meets)
    return hi


def psi_exact(p, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """The exact mapping ``psi(p) = min {k >= 1 : decline(k; k_bar, p) <= U}``, vectorised.

    0 where the target radius ``R(k_bar, p) - U`` (AD) or ``(1 - U) R(k_bar, p)`` (RD)
    is <= 0: there the certificate is worth at most U (AD) or nothing (RD), so ISS
    abstains after the pilot. Elsewhere ``1 <= psi(p) <= k_bar`` (k_bar itself has
    decline 0).

    Algorithm. ``R(k, p) >= target`` iff the Clopper-Pearson bound
    ``Beta(alpha; p k, k - p k + 1)`` reaches ``q* = Phi(target / sigma)``, iff
    ``I_{q*}(p k, k - p k + 1) <= alpha``. The search runs on that forward incomplete
    beta (several times cheaper than the Beta quantile), for all p at once: a secant
    iteration in ``sqrt(k)`` (:func:`_secant_guess`) gives the candidate; then the exact
    predicate ``decline(k) <= U`` of :mod:`isskit.stats` is evaluated at the candidate and
    at candidate - 1 (two Beta quantiles per p). Where that check fails (a secant not
    converged, or a tie within an ulp where the two formulations round differently), the
    point is redone by bisection on the forward function and, if still needed, by
    bisection on the exact predicate.

    The answer is the exact minimum when ``R(k, p)`` is non-decreasing in k, which the
    search relies on ("k meets, k - 1 fails" is then the global minimum). That is
    checked, not assumed: a Hypothesis property in the tests, exhaustive scans recorded
    in ``docs/mapping.md``, and
    :func:`isskit.psi.verify.verify` with ``check_minimal=True`` scans every k below psi for
    the user's parameters. For ``alpha >= 1/2`` the bound is not monotone in k (above the
    median, more samples pull the quantile down towards p), and this function scans k
    upward instead, which finds the exact minimum without that assumption.

    Parameters
    ----------
    p : float or array_like
        True top-class probabilities p_A in [0, 1].
    k_bar : int
        Desired sample size, >= 1.
    U : float
        Maximum decline, > 0 (and < 1 for RD).
    decline : {"ad", "rd"}
        Absolute or relative radius decline.
    sigma : float
        Noise level, > 0.
    alpha : float
        One-sided failure probability in (0, 1).

    Returns
    -------
    ndarray of int64
        psi(p), the shape of ``p``.
    """
    k_bar, U, decline, sigma, alpha = _check_params(k_bar, U, decline, sigma, alpha)
    p = _check_p(p)
    shape = p.shape
    p = p.ravel()
    out = np.zeros(p.shape, dtype=np.int64)
    # p <= 1/2: the lower bound Beta(alpha; ...) is < p <= 1/2, so R(k_bar, p) < 0 and
    # the target is negative. Skipping those halves the work on a grid from 0.
    idx = np.flatnonzero(p > 0.5) if alpha < 0.5 else np.flatnonzero(p > 0.0)
    if idx.size == 0:
        return out.reshape(shape)
    pa = p[idx]
    r_bar = expected_radius(k_bar, pa, sigma, alpha)
    target = _target(r_bar, U, decline)
    act = target > 0
    idx, pa, r_bar, target = idx[act], pa[act], r_bar[act], target[act]
    if idx.size == 0:
        return out.reshape(shape)
    if alpha >= 0.5:
        out[idx] = _scan_exact(pa, r_bar, k_bar, U, decline, sigma, alpha)
        return out.reshape(shape)
    q_star = ndtr(target / sigma)
    k = _secant_guess(pa, q_star, r_bar / sigma, k_bar, alpha)
    good = _is_minimum(k, pa, r_bar, U, decline, sigma, alpha)
    if not np.all(good):
        # Secant not converged (rare, next to p = 1): bisection on betainc, then the same
        # exact re-check; what still disagrees (a tie within an ulp) bisects exactly.
        bad = np.flatnonzero(~good)
        k[bad] = _bisect_betainc(pa[bad], q_star[bad], k_bar, alpha)
        good = _is_minimum(k[bad], pa[bad], r_bar[bad], U, decline, sigma, alpha)
        bad = bad[~good]
        if bad.size:
            k[bad] = _bisect_exact(pa[bad], r_bar[bad], k_bar, U, decline, sigma, alpha)
    out[idx] = k
    return out.reshape(shape)


def _is_minimum(k, p, r_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Whether k meets the bound and k - 1 does not (two exact Beta quantiles per point)."""
    return _meets(k, p, r_bar, U, decline, sigma, alpha) & ~_meets(
        k - 1, p, r_bar, U, decline, sigma, alpha
    )


def _secant_guess(p, q_star, z_bar, k_bar, alpha, max_iter: int = 8) -> np.ndarray:
    """Candidate psi: the root in k of ``I_{q*}(p k, k - p k + 1) = alpha``, rounded up.

    In the normal approximation the incomplete beta at q* is ``Phi((q* - p) sqrt(k) /
    s)``, so ``Phi^-1(I) - Phi^-1(alpha)`` is nearly linear in ``s = sqrt(k)``, and a
    secant iteration in s (continuous k, the forward function only) converges in two or
    three steps. It starts from the same approximation calibrated at k_bar, where the
    bound ``Phi(z_bar)`` is already known: ``p - bound`` scales as ``1/sqrt(k)``. At p = 1
    the bound is ``alpha**(1/k)`` and the root ``log(alpha) / log(q*)`` is exact.
    """
    z_alpha = ndtri(alpha)
    s_max = math.sqrt(k_bar)

    def h(s, sel):
        k = s * s
        a = p[sel] * k
        with np.errstate(divide="ignore"):
            return ndtri(betainc(a, k - a + 1.0, q_star[sel])) - z_alpha

    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = s_max * (p - ndtr(z_bar)) / (p - q_star)
        one = p == 1.0
        s1[one] = np.sqrt(np.log(alpha) / np.log(q_star[one]))
    s1 = np.clip(np.nan_to_num(s1, nan=s_max), 1.0, s_max)
    todo = np.flatnonzero(~one)
    s0 = np.clip(s1[todo] * 1.02, 1.0, s_max)
    s0 = np.where(s0 == s1[todo], s1[todo] * 0.98, s0)
    h0 = h(s0, todo)
    h1 = h(s1[todo], todo)
    for _ in range(max_iter):
        if todo.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = s1[todo] - h1 * (s1[todo] - s0) / (h1 - h0)
        s2 = np.clip(np.where(np.isfinite(s2), s2, s1[todo]), 1.0, s_max)
        # converged when k = s^2 moves by less than 0.01: then rounding up is decided
        moving = np.abs(s2 * s2 - s1[todo] ** 2) >= 0.01
        s0, h0 = s1[todo][moving], h1[moving]
        s1[todo] = s2
        todo = todo[moving]
        h1 = h(s1[todo], todo) if todo.size else h1[:0]
    k = np.ceil(s1 * s1 - 1e-6)
    return np.clip(k, 1, k_bar).astype(np.int64)


def _scan_exact(p, r_bar, k_bar, U, decline, sigma, alpha, chunk: int = 1024) -> np.ndarray:
    """Smallest k meeting the bound by scanning k = 1, 2, ... (no monotonicity assumed).

    All points advance together, a chunk of k at a time; a point leaves the scan at its
    first k that meets the bound (k_bar always does).
    """
    out = np.zeros(p.shape, dtype=np.int64)
    todo = np.arange(p.size)
    for start in range(1, k_bar + 1, chunk):
        if todo.size == 0:
            break
        ks = np.arange(start, min(start + chunk, k_bar + 1), dtype=np.int64)
        kk = np.broadcast_to(ks, (todo.size, ks.size))
        ok = _meets(kk, np.broadcast_to(p[todo, None], kk.shape),
                    np.broadcast_to(r_bar[todo, None], kk.shape), U, decline, sigma, alpha)
        hit = ok.any(axis=1)
        out[todo[hit]] = ks[np.argmax(ok[hit], axis=1)]
        todo = todo[~hit]
    return out


def _grid(delta: float) -> tuple[int, np.ndarray]:
    """``steps = 1/delta`` and the grid ``i / steps`` (exact endpoints 0 and 1)."""
    steps = round(1.0 / check_delta(delta))
    return steps, np.arange(steps + 1, dtype=np.float64) / steps


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class PsiTable:
    """The ISS mapping tabulated on the grid ``p = 0, delta, ..., 1``, with its parameters.

    A value: arrays are read-only, so a cached table can be shared by every caller.

    Attributes
    ----------
    k_bar, U, decline, sigma, alpha, delta :
        The parameters (see the module docstring).
    mapping : {"paper", "sup"}
        How ``k_hat`` is looked up. ``"paper"``: Eq. 6 and Alg. 2 as written,
        ``k_hat = max(psi_iss(p_low), psi_iss(p_up))``. ``"sup"``: ``k_hat`` is the
        largest psi over the whole interval ``[p_low, p_up]`` (cells included), which
        is what Prop. 1 needs when psi is not monotone (RD is U-shaped and jumps from 0
        to k_bar where R(k_bar, p) crosses 0); see ``docs/mapping.md``.
    p : ndarray of float64
        The grid, ``i / steps`` for ``i = 0 .. steps``, ``steps = 1/delta``.
    k : ndarray of int64
        ``psi(p)`` at each grid point, exact (:func:`psi_exact`).
    k_cell : ndarray of int64, optional
        For each cell ``[p_i, p_{i+1}]`` the value an off-grid p inside it looks up:
        ``max(k_i, k_{i+1})`` for ``"paper"`` (and the default); for ``"sup"`` an upper
        bound on psi over the closed cell, ``>= max(k_i, k_{i+1})``.
    """

    k_bar: int
    U: float
    decline: str
    sigma: float
    alpha: float
    delta: float
    mapping: str
    p: np.ndarray = field(repr=False)
    k: np.ndarray = field(repr=False)
    k_cell: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.mapping not in MAPPINGS:
            raise ValueError(f"mapping ({self.mapping!r}) must be one of {MAPPINGS}")
        steps, grid = _grid(self.delta)
        p = _frozen(np.asarray(self.p, dtype=np.float64))
        k = _frozen(np.asarray(self.k, dtype=np.int64))
        if p.shape != grid.shape or not np.array_equal(p, grid):
            raise ValueError(f"p must be the grid i/{steps}, i = 0..{steps}")
        if k.shape != p.shape or np.any(k < 0):
            raise ValueError(f"k (shape {k.shape}) must hold one count >= 0 per grid point")
        neighbour_max = np.maximum(k[:-1], k[1:])
        if self.k_cell is None or self.mapping == "paper":
            k_cell = neighbour_max
        else:
            k_cell = np.asarray(self.k_cell, dtype=np.int64)
            if k_cell.shape != (steps,) or np.any(k_cell < neighbour_max):
                raise ValueError(
                    f"k_cell (shape {k_cell.shape}) must hold one value per cell ({steps}), "
                    "each >= the max of the cell's two grid values"
                )
        k_cell = _frozen(k_cell)
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "k_cell", k_cell)
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_sparse", _sparse_max(k_cell))

    # -- lookups ---------------------------------------------------------------------

    def _locate(self, p, name):
        """Grid index and whether p lies exactly on the grid (cell index when off it)."""
        p = _check_p(p, name)
        r = np.rint(p * self._steps).astype(np.int64)
        r = np.clip(r, 0, self._steps)
        on = self.p[r] == p
        cell = np.minimum(np.floor(p * self._steps).astype(np.int64), self._steps - 1)
        # p * steps may round across an integer; the comparison with the grid decides.
        cell = np.where(self.p[cell] > p, cell - 1, cell)
        cell = np.where(self.p[np.minimum(cell + 1, self._steps)] < p, cell + 1, cell)
        return p, r, on, np.clip(cell, 0, self._steps - 1)

    def psi_iss(self, p) -> np.ndarray:
        """psi_iss (paper Eq. 6): the grid value on the grid, the cell value off it.

        Off the grid the ``"paper"`` mapping takes the max of the two neighbouring grid
        values; ``"sup"`` takes its bound on psi over the cell.

        Parameters
        ----------
        p : float or array_like
            Probabilities in [0, 1].

        Returns
        -------
        int64 or ndarray of int64
        """
        p, r, on, cell = self._locate(p, "p")
        out = np.where(on, self.k[r], self.k_cell[cell])
        return out[()] if out.ndim == 0 else out

    def k_hat(self, p_low, p_up) -> np.ndarray:
        """The ISS sample size for the pilot interval ``[p_low, p_up]`` (paper Alg. 2).

        ``"paper"``: ``max(psi_iss(p_low), psi_iss(p_up))``. ``"sup"``: the largest psi
        over the interval: the endpoints' values and every cell strictly between them.

        Parameters
        ----------
        p_low, p_up : float or array_like
            Interval ends in [0, 1], ``p_low <= p_up``, broadcast together.

        Returns
        -------
        int64 or ndarray of int64
        """
        p_low, p_up = np.broadcast_arrays(np.asarray(p_low, np.float64),
                                          np.asarray(p_up, np.float64))
        out = np.maximum(self.psi_iss(p_low), self.psi_iss(p_up))
        bad = ~(p_low <= p_up)
        if np.any(bad):
            raise ValueError(
                f"p_low ({p_low[bad].flat[0]}) must be <= p_up ({p_up[bad].flat[0]})"
            )
        if self.mapping == "sup":
            _, rl, onl, cl = self._locate(p_low, "p_low")
            _, ru, onu, cu = self._locate(p_up, "p_up")
            first = np.where(onl, rl, cl)  # first cell that meets the interval's inside
            last = np.where(onu, ru - 1, cu)  # last such cell
            inner = _range_max(self._sparse, first, last)
            out = np.maximum(out, inner)
        return out[()] if np.ndim(out) == 0 else out

    # -- values, files ---------------------------------------------------------------

    def params(self) -> dict:
        """The parameters as a dict (what the table is a value of)."""
        return {
            "k_bar": self.k_bar,
            "U": self.U,
            "decline": self.decline,
            "sigma": self.sigma,
            "alpha": self.alpha,
            "delta": self.delta,
            "mapping": self.mapping,
        }

    def to_dict(self) -> dict:
        """Parameters and arrays as plain Python values (JSON-ready)."""
        return {**self.params(), "p": self.p.tolist(), "k": self.k.tolist(),
                "k_cell": self.k_cell.tolist()}

    def save(self, path) -> Path:
        """Write the table as ``.csv`` (what ``isskit psi --out`` writes) or ``.npz``.

        The CSV is exactly the header ``p,k`` and one row per grid point, so any CSV reader
        takes it as it is (``pandas.read_csv``, ``numpy.loadtxt(..., skiprows=1)``). Its
        parameters, and for the ``"sup"`` mapping the cells whose value exceeds the max of
        their two grid values, go to a JSON sidecar ``<path>.json`` (``table.csv.json``),
        which :meth:`load` reads. ``.npz`` holds everything in one file.

        Each file is written atomically (:func:`isskit._atomic.atomic_path`), the CSV
        first; the sidecar records the CSV's SHA-256, so a save killed between the two
        (a new CSV beside the old sidecar) is refused by :meth:`load`, never read with
        the old table's parameters.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        OSError
            A file could not be written (disk full, ...); that file is unchanged.
        """
        path, *sidecar = table_files(path)
        if not sidecar:
            # the temporary ends in .npz too, so savez appends nothing to its name
            with atomic_path(path) as tmp:
                np.savez(tmp, p=self.p, k=self.k, k_cell=self.k_cell,
                         **{k: np.asarray(v) for k, v in self.params().items()})
            return path
        raised = np.flatnonzero(self.k_cell > np.maximum(self.k[:-1], self.k[1:]))
        lines = ["p,k"] + [
            f"{p!r},{k}" for p, k in zip(self.p.tolist(), self.k.tolist(), strict=True)
        ]
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
            digest = file_sha256(tmp)
        meta = {
            "format": "isskit psi table",
            **self.params(),
            "k_cell_raised": {str(int(i)): int(self.k_cell[i]) for i in raised},
            "csv_sha256": digest,
        }
        with atomic_path(sidecar[0]) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path, **params) -> PsiTable:
        """Read a table written by :meth:`save` (``.csv`` with its sidecar, or ``.npz``).

        Parameters
        ----------
        path : str or Path
            The table.
        **params
            For a CSV without its ``<path>.json`` sidecar: the parameters ``k_bar, U,
            decline, sigma, alpha, delta`` (and ``mapping``, default ``"paper"``). Given
            with a sidecar, they must agree with it.

        Returns
        -------
        PsiTable
        """
        path = Path(path)
        names = ("k_bar", "U", "decline", "sigma", "alpha", "delta", "mapping")
        if path.suffix == ".npz":
            with np.load(path) as z:
                stored = {k: z[k].item() for k in names}
                return cls(**stored, p=z["p"], k=z["k"], k_cell=z["k_cell"])
        lines = path.read_text().splitlines()
        if not lines or lines[0].strip() != "p,k":
            raise ValueError(f"{path} is not an isskit psi table (first line is not 'p,k')")
        try:
            arr = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:] if ln],
                           dtype=np.float64).reshape(-1, 2)
        except ValueError:
            raise ValueError(f"{path} is not an isskit psi table (a row is not 'p,k')") from None
        meta, raised = {}, {}
        if _sidecar(path).is_file():
            meta = json.loads(_sidecar(path).read_text())
            raised = meta.pop("k_cell_raised", {})
            meta.pop("format", None)
            digest = meta.pop("csv_sha256", None)  # absent in sidecars before it was added
            if digest is not None and digest != file_sha256(path):
                raise ValueError(
                    f"{path} does not match its sidecar {_sidecar(path).name} (the sidecar"
                    " records another table's SHA-256: an interrupted save, or an edited"
                    " file); save the table again"
                )
            clash = {k: (meta[k], v) for k, v in params.items() if k in meta and meta[k] != v}
            if clash:
                raise ValueError(f"parameters given for {path} differ from its sidecar: {clash}")
        meta = {"mapping": "paper", **meta, **params}
        missing = [n for n in names if n not in meta]
        if missing:
            raise ValueError(
                f"{path} is not an isskit psi table with parameters: its sidecar "
                f"{_sidecar(path).name} is missing and {missing} were not given"
            )
        k = arr[:, 1].astype(np.int64)
        k_cell = np.maximum(k[:-1], k[1:])
        for i, v in raised.items():
            k_cell[int(i)] = int(v)
        return cls(
            k_bar=int(meta["k_bar"]), U=float(meta["U"]), decline=str(meta["decline"]),
            sigma=float(meta["sigma"]), alpha=float(meta["alpha"]),
            delta=float(meta["delta"]), mapping=str(meta["mapping"]),
            p=arr[:, 0], k=k, k_cell=k_cell,
        )


def _sidecar(path: Path) -> Path:
    """The JSON file beside a CSV table that holds its parameters: ``table.csv.json``."""
    return path.with_name(path.name + ".json")


def table_files(path) -> list[Path]:
    """The files :meth:`PsiTable.save` writes: a ``.npz`` alone, or the CSV and its sidecar."""
    path = Path(path)
    return [path] if path.suffix == ".npz" else [path, _sidecar(path)]


def _sparse_max(values: np.ndarray) -> list[np.ndarray]:
    """Sparse table for O(1) range-max queries: level j holds max over 2**j cells."""
    levels = [np.asarray(values, dtype=np.int64)]
    span = 1
    while 2 * span <= values.size:
        prev = levels[-1]
        levels.append(np.maximum(prev[:-span], prev[span:]))
        span *= 2
    return levels


def _range_max(levels, first, last) -> np.ndarray:
    """Max over cells ``first..last`` (inclusive), 0 where the range is empty."""
    first = np.asarray(first, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    length = last - first + 1
    empty = length <= 0
    length = np.where(empty, 1, length)
    j = np.floor(np.log2(length)).astype(np.int64)
    out = np.zeros(first.shape, dtype=np.int64)
    for lev in np.unique(j):
        sel = (j == lev) & ~empty
        if np.any(sel):
            arr = levels[lev]
            out[sel] = np.maximum(arr[first[sel]], arr[last[sel] - (1 << lev) + 1])
    return out


def _cell_values(p, k, mapping, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Per-cell lookup values (see :class:`PsiTable`)."""
    neighbour_max = np.maximum(k[:-1], k[1:])
    if mapping == "paper":
        return neighbour_max
    return _cell_sup(p, k, neighbour_max, k_bar, U, decline, sigma, alpha)


def _cell_sup(p, k, neighbour_max, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Upper bound on psi over each closed cell, for the ``"sup"`` mapping.

    Where psi is monotone across a cell its sup is at one of the cell's ends, so the
    neighbour max is the sup (that psi is monotone inside every other cell is what
    :mod:`isskit.psi.verify` checks on a fine grid). The cells where the target radius
    turns positive hold a jump of psi from 0 up to its right limit at the sign change
    p0 (k_bar itself for RD, where R(k_bar, p0) = 0 leaves no room for any decline);
    there psi is evaluated on points packed geometrically towards p0.
    """
    out = neighbour_max.copy()
    for i in _threshold_cells(k):
        ps = _threshold_samples(p[i], p[i + 1], k_bar, U, decline, sigma, alpha)
        out[i] = max(out[i], int(psi_exact(ps, k_bar, U, decline, sigma, alpha).max()))
        if decline == "rd":
            # the limit at p0 from above is k_bar itself: R(k_bar, p0) = 0 > R(k, p0) for
            # k < k_bar, so no smaller k reaches a target (1 - U) R(k_bar, p) -> 0+
            out[i] = k_bar
    return out


def _threshold_cells(k) -> np.ndarray:
    """Cells whose left end has psi = 0 and right end psi > 0 (the target turns positive)."""
    return np.flatnonzero((k[:-1] == 0) & (k[1:] > 0))


def _threshold(lo, hi, k_bar, U, decline, sigma, alpha) -> float:
    """The smallest float p in (lo, hi] where the target radius is > 0 (bisection to an ulp)."""

    def positive(p):
        return bool(_target(np.asarray(expected_radius(k_bar, p, sigma, alpha)), U, decline) > 0)

    return bisect_float(lo, hi, positive)


def _threshold_samples(lo, hi, k_bar, U, decline, sigma, alpha) -> np.ndarray:
    """Points of the cell ``(lo, hi]`` from the sign change p0 on.

    p0 itself, points packed geometrically towards p0 (down to 1e-12 of the cell), and
    evenly spaced points up to ``hi``.
    """
    p0 = _threshold(lo, hi, k_bar, U, decline, sigma, alpha)
    t = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 49), np.linspace(0.0, 1.0, 17)[1:]])
    return np.unique(np.minimum(p0 + t * (hi - p0), hi))


@functools.lru_cache(maxsize=256)
def _cached_table(k_bar, U, decline, sigma, alpha, delta, mapping) -> PsiTable:
    steps, p = _grid(delta)
    k = psi_exact(p, k_bar, U, decline, sigma, alpha)
    k_cell = _cell_values(p, k, mapping, k_bar, U, decline, sigma, alpha)
    return PsiTable(k_bar=k_bar, U=U, decline=decline, sigma=sigma, alpha=alpha,
                    delta=1.0 / steps, mapping=mapping, p=p, k=k, k_cell=k_cell)


def psi_table(k_bar, U, decline, sigma, alpha, delta, *, mapping: str = "paper") -> PsiTable:
    """The tabulated ISS mapping psi_iss for these parameters (paper Alg. 1), cached.

    Arguments are validated and normalised (``k_bar`` to int, ``decline`` lower-case,
    ``delta`` to ``1/round(1/delta)``) before the cache lookup, so a sweep never
    computes the same table twice however its parameters are spelled.

    Parameters
    ----------
    k_bar : int
        Desired sample size, >= 1.
    U : float
        Maximum decline, > 0 (< 1 for RD).
    decline : {"ad", "rd"}
        Absolute or relative decline.
    sigma : float
        Noise level, > 0.
    alpha : float
        Failure probability in (0, 1).
    delta : float
        Grid step; 1/delta must be an integer.
    mapping : {"paper", "sup"}
        How ``k_hat`` is looked up (see :class:`PsiTable`).

    Returns
    -------
    PsiTable
        Read-only; ``.p``, ``.k``, ``.psi_iss(p)``, ``.k_hat(p_low, p_up)``.
    """
    k_bar, U, decline, sigma, alpha = _check_params(k_bar, U, decline, sigma, alpha)
    steps = round(1.0 / check_delta(delta))
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping ({mapping!r}) must be one of {MAPPINGS}")
    return _cached_table(k_bar, U, decline, sigma, alpha, 1.0 / steps, mapping)

