"""The tabulated ISS mapping psi_iss (paper Alg. 1 and Eq. 6) and its lookup k_hat (Alg. 2).

:func:`psi_table` computes a :class:`PsiTable` (psi exact at every grid point,
:mod:`isskit.psi.mapping`) once per process for each set of parameters, however they are
spelled; the table looks up ``psi_iss(p)`` and ``k_hat(p_low, p_up)`` under the
``"paper"`` or ``"sup"`` mapping (:data:`MAPPINGS`) and is saved and loaded as CSV with a
JSON sidecar, or as ``.npz`` (:meth:`PsiTable.save`, :meth:`PsiTable.load`,
:func:`table_files`). Names as in :mod:`isskit.psi.mapping`.

This module never prints, never plots and never imports torch or click.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit._provenance import file_sha256
from isskit.psi.mapping import _cell_values, _check_p, _check_params, psi_exact
from isskit.validate import check_delta

__all__ = [
    "MAPPINGS",
    "PsiTable",
    "psi_table",
    "table_files",
]

#: Mapping names: how ``k_hat`` is looked up from the grid (see :class:`PsiTable`).
MAPPINGS = ("paper", "sup")


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


@functools.lru_cache(maxsize=256)
def _cached_table(k_bar, U, decline, sigma, alpha, delta, mapping) -> PsiTable:
    steps, p = _grid(delta)
    k = psi_exact(p, k_bar, U, decline, sigma, alpha)
    k_cell = _cell_values(p, k, mapping, k_bar, U, decline, sigma, alpha)
    return PsiTable(k_bar=k_bar, U=U, decline=decline, sigma=sigma, alpha=alpha,
                    delta=1.0 / steps, mapping=mapping, p=p, k=k, k_cell=k_cell)


def psi_table(k_bar, U, decline, sigma, alpha, delta, *, mapping: str = "paper",
              cache: bool = True) -> PsiTable:
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
    cache : bool
        False computes the table afresh, neither looked up in nor added to the cache
        (what ``bench/bench_psi.py`` times).

    Returns
    -------
    PsiTable
        Read-only; ``.p``, ``.k``, ``.psi_iss(p)``, ``.k_hat(p_low, p_up)``.
    """
    k_bar, U, decline, sigma, alpha = _check_params(k_bar, U, decline, sigma, alpha)
    steps = round(1.0 / check_delta(delta))
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping ({mapping!r}) must be one of {MAPPINGS}")
    build = _cached_table if cache else _cached_table.__wrapped__
    return build(k_bar, U, decline, sigma, alpha, 1.0 / steps, mapping)
