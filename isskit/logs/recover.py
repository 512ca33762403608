"""Count recovery from a log's printed radii, and the (n, alpha) the log was made with.

For each row of a :class:`~isskit.logs.cohen_format.CohenLog`, :func:`recover_counts` finds
the range of integer top-class counts ``k_A`` out of ``n`` whose certified radius prints as
the logged text; :func:`detect_alpha` finds the (n, alpha) pairs under which every row has
one, i.e. the failure probability the authors really used.

Names: ``n`` is Cohen's estimation sample size (the ``n`` of CERTIFY), ``k_A`` the
top-class count among those ``n`` samples, ``alpha`` the one-sided failure probability,
``sigma`` the noise level, ``p_lower`` the Clopper-Pearson lower bound
(:func:`isskit.stats.cp_lower`).

This module never prints and never imports torch or click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isskit._bisect import bisect
from isskit.logs.cohen_format import CohenLog, _fmt, sigma_from_name
from isskit.stats import certified_radius, cp_lower
from isskit.validate import (
    ArgumentError,
    check_alpha,
    check_sample_size,
    check_sigma,
)

__all__ = [
    "DEFAULT_ALPHAS",
    "AlphaFit",
    "CountRanges",
    "detect_alpha",
    "recover_counts",
]

#: One-sided alphas tried by :func:`detect_alpha` when none is given: the values that
#: randomized-smoothing code bases use (0.001 is Cohen et al.'s documented default).
DEFAULT_ALPHAS = (0.001, 0.01, 0.05, 0.1)


@dataclass(frozen=True)
class CountRanges:
    """Top-class counts consistent with each row of a log at given ``n``, ``alpha``, ``sigma``.

    Attributes
    ----------
    kA_min, kA_max : ndarray of int64
        Per row, the smallest and largest count ``k_A`` out of ``n`` whose certified
        radius prints as the logged text. For abstentions ``kA_min = 0`` and ``kA_max`` is
        the largest count with ``p_lower < 1/2``. Where no count fits (``fits`` False)
        ``kA_min > kA_max``.
    fits : ndarray of bool
        Whether at least one integer count reproduces the row.
    n : int
        Estimation sample size assumed.
    alpha : float
        One-sided failure probability assumed.
    sigma : float
        Noise level assumed.
    log : CohenLog
        The log the ranges belong to.
    """

    kA_min: np.ndarray
    kA_max: np.ndarray
    fits: np.ndarray
    n: int
    alpha: float
    sigma: float
    log: CohenLog = field(repr=False)

    @property
    def kA_mid(self) -> np.ndarray:
        """Midpoint ``(kA_min + kA_max) // 2`` of each range (also for abstentions)."""
        return (self.kA_min + self.kA_max) // 2

    @property
    def bad_lines(self) -> np.ndarray:
        """Line numbers of the rows no integer count reproduces."""
        return self.log.line[~self.fits]


@dataclass(frozen=True)
class AlphaFit:
    """Which (n, alpha) pairs reproduce every row of a log.

    Attributes
    ----------
    fits : tuple of (int, float)
        The ``(n, alpha)`` pairs under which every row has a non-empty count range.
    tried : tuple of (int, float)
        Every pair tried, in order.
    failures : dict
        ``(n, alpha) -> ndarray`` of the line numbers that pair does not reproduce.
    log : CohenLog
        The log.
    """

    fits: tuple[tuple[int, float], ...]
    tried: tuple[tuple[int, float], ...]
    failures: dict = field(repr=False)
    log: CohenLog = field(repr=False)

    @property
    def alphas(self) -> tuple[float, ...]:
        """The alphas that fit (at any n tried)."""
        return tuple(dict.fromkeys(a for _, a in self.fits))

    def describe(self) -> str:
        """One paragraph: what fits, and for each pair that does not, the first bad lines."""
        parts = []
        for pair in self.tried:
            bad = self.failures[pair]
            if len(bad) == 0:
                parts.append(f"n={pair[0]}, alpha={pair[1]:g}: every row fits")
            else:
                shown = ", ".join(str(int(b)) for b in bad[:5])
                more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                parts.append(
                    f"n={pair[0]}, alpha={pair[1]:g}: {len(bad)} rows fit no integer count "
                    f"(lines {shown}{more})"
                )
        return f"{self.log.path}: " + "; ".join(parts)


# --------------------------------------------------------------------------- recovery


def _resolve_sigma(log: CohenLog, sigma) -> float:
    if sigma is None:
        sigma = sigma_from_name(log.path)
        if sigma is None:
            raise ArgumentError(
                "sigma", "{path}: the file name holds no certification sigma (sigma_X); "
                "give {name}", path=log.path,
            )
    return check_sigma(sigma)


def _first_certifying_count(n: int, alpha: float) -> int:
    """Smallest k_A with cp_lower(k_A, n, alpha) >= 1/2 (n + 1 if none: tiny n, large alpha)."""
    _, hi = bisect(np.zeros(1, np.int64), np.full(1, n + 1, np.int64),
                   lambda mid, rows: cp_lower(mid, n, alpha) >= 0.5)
    return int(hi[0])


def _printed(k_A: np.ndarray, n: int, alpha: float, sigma: float, spec: str) -> np.ndarray:
    """The radius each count would print as, parsed back to a float (monotone in k_A)."""
    r = certified_radius(cp_lower(k_A, n, alpha), sigma)
    return np.array([float(_fmt(x, spec)) for x in np.atleast_1d(r)], dtype=np.float64)


def recover_counts(
    log: CohenLog, n: int = 100_000, alpha: float = 0.001, sigma=None
) -> CountRanges:
    """Recover each row's range of top-class counts from its printed radius.

    For a certified row the printed radius is ``format(sigma * Phi^-1(cp_lower(k_A, n,
    alpha)))`` for an unknown integer ``k_A`` in ``[k_cert, n]`` (``k_cert`` the smallest
    count that certifies). That printed value is non-decreasing in ``k_A``, so the counts
    that reproduce it form an interval, found by two bisections over all rows at once
    (about ``2 log2(n)`` vectorised SciPy calls, never a scan over counts). An
    abstention only says ``p_lower < 1/2``: its range is ``[0, k_cert - 1]``.

    Parameters
    ----------
    log : CohenLog
        From :func:`read_cohen_log`.
    n : int
        Estimation sample size of the certification (Cohen et al.: 100,000).
    alpha : float
        One-sided failure probability assumed.
    sigma : float, optional
        Noise level; by default from the file name (:func:`sigma_from_name`).

    Returns
    -------
    CountRanges
        Per row ``kA_min``, ``kA_max`` and whether any count fits; nothing raises when a
        row fits no count (see :func:`detect_alpha` and :meth:`CountRanges.bad_lines`).
    """
    n = check_sample_size(n, "n")
    alpha = check_alpha(alpha)
    sigma = _resolve_sigma(log, sigma)
    spec = log.radius_format
    k_cert = _first_certifying_count(n, alpha)
    rows = len(log)
    kA_min = np.zeros(rows, np.int64)
    kA_max = np.full(rows, k_cert - 1, np.int64)
    cert = ~log.abstained
    if k_cert > n:  # nothing can certify at this (n, alpha): every certified row fails
        kA_min[cert], kA_max[cert] = 1, 0
        return CountRanges(kA_min, kA_max, ~cert, n, alpha, sigma, log)

    target = log.radius[cert]
    texts = np.asarray(log.radius_text, dtype=object)[cert]
    m = len(target)

    def prints(k, rows):
        return _printed(k, n, alpha, sigma, spec), target[rows]

    # Lower end: the smallest k in [k_cert, n] that prints >= the target (n + 1 if none).
    _, low_end = bisect(
        np.full(m, k_cert - 1, np.int64),
        np.full(m, n + 1, np.int64),
        lambda k, rows: np.greater_equal(*prints(k, rows)),
    )
    # Upper end: the largest k in [k_cert, n] that prints <= the target (k_cert - 1 if none).
    high_end, _ = bisect(
        np.full(m, k_cert - 1, np.int64),
        np.full(m, n + 1, np.int64),
        lambda k, rows: np.greater(*prints(k, rows)),
    )
    ok = low_end <= high_end
    # The float comparison brackets the range; the text decides the fit (a printed "0.3"
    # must come out as "0.3" again, not merely as a number equal to 0.3).
    if np.any(ok):
        r = certified_radius(cp_lower(np.where(ok, low_end, k_cert), n, alpha), sigma)
        ok &= np.array([_fmt(x, spec) == t for x, t in zip(r, texts, strict=True)])
    kA_min[cert] = np.where(ok, low_end, 1)
    kA_max[cert] = np.where(ok, high_end, 0)
    fits = np.ones(rows, bool)
    fits[cert] = ok
    return CountRanges(kA_min, kA_max, fits, n, alpha, sigma, log)


def detect_alpha(
    log: CohenLog, n=100_000, sigma=None, candidates=DEFAULT_ALPHAS, alpha=None
) -> AlphaFit:
    """Find the (n, alpha) pairs under which an integer count reproduces every row.

    The alpha a paper documents is not always the one its logs were made with
    (``data/published/README.md``); a wrong alpha leaves rows whose printed radius no
    integer count reproduces. Several pairs may fit, especially for short logs.

    Parameters
    ----------
    log : CohenLog
        From :func:`read_cohen_log`.
    n : int or sequence of int
        Estimation sample size(s) to try.
    sigma : float, optional
        Noise level; by default from the file name.
    candidates : sequence of float
        One-sided alphas to try when ``alpha`` is not given.
    alpha : float, optional
        Check only this alpha (the result says whether it fits).

    Returns
    -------
    AlphaFit
        The pairs that fit, every pair tried, and per pair the lines it fails on.
    """
    ns = [n] if np.ndim(n) == 0 else list(n)
    ns = [check_sample_size(v, "n") for v in ns]
    alphas = [alpha] if alpha is not None else list(candidates)
    alphas = [check_alpha(a) for a in alphas]
    if not ns or not alphas:
        raise ValueError("detect_alpha needs at least one n and one alpha to try")
    sigma = _resolve_sigma(log, sigma)
    tried, fits, failures = [], [], {}
    for n_ in ns:
        for a in alphas:
            pair = (n_, a)
            ranges = recover_counts(log, n_, a, sigma)
            tried.append(pair)
            failures[pair] = ranges.bad_lines
            if ranges.fits.all():
                fits.append(pair)
    return AlphaFit(tuple(fits), tuple(tried), failures, log)
