"""Published certification logs in Cohen et al.'s format: read them, recover the counts.

A log of Cohen et al.'s ``certify.py`` (and of the papers that reuse it) has one row per
test image, ``idx label predict radius correct time``, with the radius printed to a few
digits. This module reads such a log strictly (:func:`read_cohen_log`), recovers for each
row the range of integer top-class counts ``k_A`` out of ``n`` whose certified radius
prints as the logged text (:func:`recover_counts`), finds the failure probability alpha
the authors really used (:func:`detect_alpha`), and turns a log into a synthetic stream
store that :mod:`isskit.replay` can replay (:func:`import_log`).

Names: ``n`` is Cohen's estimation sample size (the ``n`` of CERTIFY), ``k_A`` the
top-class count among those ``n`` samples, ``alpha`` the one-sided failure probability,
``sigma`` the noise level, ``p_lower`` the Clopper-Pearson lower bound
(:func:`isskit.stats.cp_lower`).

This module never prints and never imports torch or click; every bad input raises a
``ValueError`` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit._bisect import bisect
from isskit._provenance import file_sha256
from isskit._validate import (
    ArgumentError,
    check_alpha,
    check_positive_int,
    check_sample_size,
    check_sigma,
)
from isskit.stats import certified_radius, cp_lower

__all__ = [
    "ABSTAIN_RULES",
    "DEFAULT_ALPHAS",
    "AlphaFit",
    "CohenLog",
    "CountRanges",
    "ImportResult",
    "detect_alpha",
    "import_log",
    "num_classes_from_name",
    "read_cohen_log",
    "recover_counts",
    "sigma_from_name",
]

#: The header every log starts with, tab separated (Cohen et al.'s ``certify.py``).
HEADER = ("idx", "label", "predict", "radius", "correct", "time")

#: One-sided alphas tried by :func:`detect_alpha` when none is given: the values that
#: randomized-smoothing code bases use (0.001 is Cohen et al.'s documented default).
DEFAULT_ALPHAS = (0.001, 0.01, 0.05, 0.1)

# Formats a radius may have been printed with, in order of preference when several
# reproduce every text of a log: Cohen et al. print ``{:.3}`` (3 significant digits),
# Salman et al.'s ImageNet logs ``{:.4f}``; the rest cover other forks. ``"r"`` is
# Python's shortest round-trip repr (``str(float)``), i.e. an unrounded radius.
_FORMATS = (".3", ".4f", ".2", ".4", ".5", ".6", ".3f", ".5f", ".6f", ".2f", ".1f", "r")

#: What p_A an abstained row's stream gets (:func:`import_log`). An abstention only says
#: ``k_A <= kA_max`` (``p_lower < 1/2``).
ABSTAIN_RULES = ("auto", "mid", "uniform", "bound")

#: Selection samples of Cohen et al.'s CERTIFY (``n0``): an imported stream holds
#: ``n0 + n`` samples by default, so the log's own certification can be replayed on it.
_COHEN_N0 = 100

_TIME = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


def _fmt(value: float, spec: str) -> str:
    return repr(float(value)) if spec == "r" else format(float(value), spec)


@dataclass(frozen=True)
class CohenLog:
    """A certification log, one entry per row (per test image).

    Attributes
    ----------
    path : pathlib.Path
        The file it was read from.
    idx, label, predict : ndarray of int64
        Dataset index, true label, and predicted class (``-1`` = abstained).
    radius : ndarray of float64
        The logged certified radius (0 for abstentions).
    radius_text : tuple of str
        The radius exactly as printed; its rounding decides which counts fit.
    radius_format : str
        The format spec that reproduces every printed radius (``".3"`` = 3 significant
        digits as Cohen et al. print, ``".4f"`` = 4 decimals as Salman et al.'s ImageNet
        logs, ``"r"`` = unrounded).
    correct : ndarray of bool
        Whether ``predict == label``.
    time : ndarray of float64
        Wall seconds the row took to certify.
    line : ndarray of int64
        The 1-based line number of each row in the file, for error messages.
    """

    path: Path
    idx: np.ndarray
    label: np.ndarray
    predict: np.ndarray
    radius: np.ndarray
    radius_text: tuple[str, ...]
    radius_format: str
    correct: np.ndarray
    time: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def abstained(self) -> np.ndarray:
        """Rows where the certificate abstained (``predict == -1``)."""
        return self.predict == -1


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


# --------------------------------------------------------------------------- reading


def read_cohen_log(path) -> CohenLog:
    """Read a Cohen-format certification log strictly.

    Parameters
    ----------
    path : str or path-like
        A tab-separated file with header ``idx label predict radius correct time``.

    Returns
    -------
    CohenLog
        The rows, with the radius text and the format it was printed with.

    Raises
    ------
    ValueError
        Naming the file and the line: a missing or different header, a row with missing
        or extra columns, a non-numeric or out-of-range field, ``correct`` inconsistent
        with ``predict == label``, an abstention with a non-zero radius, no rows at all,
        or radii printed in no format :data:`_FORMATS` knows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the log ({exc})") from None
    lines = text.splitlines()
    # Trailing blank lines are an artefact of editors; a blank line among rows is not.
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: the log is empty (expected the header {' '.join(HEADER)})")
    header = tuple(lines[0].rstrip("\r").split("\t"))
    if header != HEADER:
        raise ValueError(
            f"{path}, line 1: header {lines[0]!r} is not the tab-separated "
            f"{' '.join(HEADER)!r} of a Cohen-format log"
        )
    if len(lines) == 1:
        raise ValueError(f"{path}: the log has a header but no rows")

    rows = len(lines) - 1
    idx = np.empty(rows, np.int64)
    label = np.empty(rows, np.int64)
    predict = np.empty(rows, np.int64)
    radius = np.empty(rows, np.float64)
    correct = np.empty(rows, bool)
    seconds = np.empty(rows, np.float64)
    texts: list[str] = []
    for i, raw in enumerate(lines[1:]):
        lineno = i + 2
        fields = raw.rstrip("\r").split("\t")
        if len(fields) != len(HEADER):
            raise ValueError(
                f"{path}, line {lineno}: {len(fields)} tab-separated columns, expected "
                f"{len(HEADER)} ({' '.join(HEADER)}): {raw!r}"
            )
        where = f"{path}, line {lineno}"
        idx[i] = _int(fields[0], "idx", where, minimum=0)
        label[i] = _int(fields[1], "label", where, minimum=0)
        predict[i] = _int(fields[2], "predict", where, minimum=-1)
        radius[i] = _float(fields[3], "radius", where)
        corr = _int(fields[4], "correct", where, minimum=0)
        if corr > 1:
            raise ValueError(f"{where}: correct ({fields[4]!r}) must be 0 or 1")
        if bool(corr) != (predict[i] == label[i]):
            raise ValueError(
                f"{where}: correct ({corr}) contradicts predict ({predict[i]}) and "
                f"label ({label[i]})"
            )
        correct[i] = bool(corr)
        if predict[i] == -1 and radius[i] != 0.0:
            raise ValueError(f"{where}: an abstention (predict -1) has radius {fields[3]!r}")
        seconds[i] = _seconds(fields[5], where)
        texts.append(fields[3])

    return CohenLog(
        path=path,
        idx=idx,
        label=label,
        predict=predict,
        radius=radius,
        radius_text=tuple(texts),
        radius_format=_detect_format(texts, radius, path),
        correct=correct,
        time=seconds,
        line=np.arange(2, rows + 2, dtype=np.int64),
    )


#: Largest value of an integer column: the columns are int64 arrays (and an idx seeds
#: its row's stream), so a longer number is an error of the file, not an OverflowError.
_INT_MAX = np.iinfo(np.int64).max


def _int(text: str, name: str, where: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{where}: {name} ({text!r}) is not an integer") from None
    if value < minimum:
        raise ValueError(f"{where}: {name} ({value}) must be >= {minimum}")
    if value > _INT_MAX:
        shown = text if len(text) <= 30 else f"{text[:12]}...{text[-6:]}, {len(text)} digits"
        raise ValueError(f"{where}: {name} ({shown}) must be <= {_INT_MAX:,}")
    return value


def _float(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} ({text!r}) is not a number") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{where}: {name} ({text!r}) must be a finite number >= 0")
    return value


def _seconds(text: str, where: str) -> float:
    # certify.py prints a datetime.timedelta ("0:00:13.736080"); some forks print seconds.
    m = _TIME.match(text)
    if m:
        days, h, mi, s = m.groups()
        return int(days or 0) * 86400.0 + int(h) * 3600.0 + int(mi) * 60.0 + float(s)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{where}: time ({text!r}) is neither H:MM:SS[.ffffff] nor a number of seconds"
        ) from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{where}: time ({text!r}) must be a finite number >= 0")
    return value


def _detect_format(texts: list[str], radius: np.ndarray, path: Path) -> str:
    """The first format in :data:`_FORMATS` that reprints every radius text identically."""
    best, best_bad = None, None
    for spec in _FORMATS:
        bad = [i for i, (r, t) in enumerate(zip(radius, texts, strict=True)) if _fmt(r, spec) != t]
        if not bad:
            return spec
        if best_bad is None or len(bad) < len(best_bad):
            best, best_bad = spec, bad
    i = best_bad[0]
    raise ValueError(
        f"{path}, line {i + 2}: radius {texts[i]!r} does not match the format the other rows "
        f"use (closest: {best!r}, which {len(best_bad)} rows break); tried "
        f"{', '.join(repr(s) for s in _FORMATS)}"
    )


# --------------------------------------------------------------------------- file names


def sigma_from_name(path) -> float | None:
    """The certification sigma in a log's file name (``..._sigma_0.50``), or None.

    Only ``sigma_X`` counts: ``noise_X`` is the training noise, which need not be the
    certification sigma (``noise_0.25_test_sigma_0.50``).
    """
    found = re.findall(r"sigma_(\d+(?:\.\d+)?)", Path(path).name)
    return float(found[-1]) if found else None


def num_classes_from_name(path) -> int | None:
    """The class count a log's file name implies: 10 for CIFAR-10, 1000 for ImageNet, or None."""
    name = Path(path).name.lower()
    if "cifar100" in name or "cifar-100" in name:
        return 100
    if "cifar10" in name or "cifar-10" in name:
        return 10
    if "imagenet" in name:
        return 1000
    return None


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


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_log` wrote, and what it recovered on the way.

    Attributes
    ----------
    path : pathlib.Path
        The stream store written.
    log : CohenLog
        The log read.
    fit : AlphaFit
        The (n, alpha) pairs tried and those that fit.
    ranges : CountRanges
        The recovered count ranges at the chosen (n, alpha).
    alpha : float
        The alpha the counts were recovered with (the first that fits, in the order tried).
    sigma : float
        The certification noise level.
    num_classes : int
        Classes of the streams' labels.
    N : int
        Samples per stream.
    p_A : ndarray of float64
        Each stream's top-class probability.
    predicted : ndarray of int64
        Each stream's top class.
    abstain : str
        The rule that gave abstained rows their p_A (after resolving ``"auto"``).
    """

    path: Path
    log: CohenLog = field(repr=False)
    fit: AlphaFit = field(repr=False)
    ranges: CountRanges = field(repr=False)
    alpha: float
    sigma: float
    num_classes: int
    N: int
    p_A: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    abstain: str

    def summary(self) -> dict:
        """A JSON-ready description: source, fit, counts of rows, p_A deciles."""
        log = self.log
        cert = ~log.abstained
        deciles = (
            np.quantile(self.p_A[cert], [0.1, 0.3, 0.5, 0.7, 0.9]).tolist() if cert.any() else []
        )
        width = self.ranges.kA_max[cert] - self.ranges.kA_min[cert]
        return {
            "store": str(self.path),
            "log": str(log.path),
            "rows": len(log),
            "abstained": int(log.abstained.sum()),
            "wrong": int((cert & ~log.correct).sum()),
            "radius_format": log.radius_format,
            "n": self.ranges.n,
            "alpha": self.alpha,
            "fits": [{"n": n_, "alpha": a} for n_, a in self.fit.fits],
            "tried": [{"n": n_, "alpha": a} for n_, a in self.fit.tried],
            "sigma": self.sigma,
            "num_classes": self.num_classes,
            "samples_per_image": self.N,
            "abstain_rule": self.abstain,
            "max_range_width": int(width.max()) if width.size else 0,
            "p_A_deciles": dict(zip(["10%", "30%", "50%", "70%", "90%"], deciles, strict=False)),
        }


def import_log(
    path,
    out,
    *,
    n=100_000,
    alpha: float | None = None,
    sigma: float | None = None,
    samples: int | None = None,
    seed: int = 0,
    other: str = "uniform",
    num_classes: int | None = None,
    abstain: str = "auto",
    progress: bool = False,
) -> ImportResult:
    """Turn a Cohen-format certification log into a synthetic stream store.

    Each row becomes an i.i.d. label stream (:func:`isskit.studies.synthetic.write_synthetic_store`,
    seeded per row by ``(seed, idx)``) whose top class is drawn with the p_A the log
    implies:

    * certified rows (right or wrong): the top class is the logged prediction and
      ``p_A = kA_mid / n``, the midpoint of the recovered count range (at most about
      0.0024 wide in p for 3-digit logs, 15 counts for 4-decimal ones; the midpoint is
      unbiased for a count uniform on the range, and matches ``kA_mid`` of
      ``data/published/recovered``). A wrong prediction keeps its true label in
      ``/true_label``, so the replay counts it as wrong.
    * abstained rows (``predict = -1``): the log only says ``k_A <= kA_max`` (the bound
      stayed below 1/2). The top class is the true label (which class the model favoured
      is not logged; this choice can only credit a later certificate of the row as
      correct, for every policy alike) and p_A follows ``abstain``: ``"mid"``
      ``(kA_max // 2) / n``, the range's midpoint like every other row (about 0.25);
      ``"uniform"`` a seeded draw uniform on ``[0, kA_max / n]``; ``"bound"``
      ``kA_max / n`` (about 0.505, the hardest case for every policy: it costs ISS its
      largest sample sizes). ``"auto"`` is ``"mid"`` with ``other="uniform"`` and
      ``"bound"`` with ``other="runner_up"``, where a p_A below 1/2 would make the
      runner-up the stream's top class and turn a logged abstention into a confident
      wrong prediction.
    * the remaining ``1 - p_A`` goes to the other classes by ``other``: ``"uniform"`` over
      all ``num_classes - 1`` of them, ``"runner_up"`` all to one class (two-class
      streams, the hardest case for class selection).

    Parameters
    ----------
    path : str or path-like
        The log.
    out : str or path-like
        The stream store to write. A new store is built under a temporary name in the
        same folder and renamed into place only when every row is written
        (:func:`isskit._atomic.atomic_path`), so a failed or killed import leaves no
        ``out``. An existing ``out`` is resumed if it is this import's store (the same run)
        and refused otherwise; nothing else is ever overwritten.
    n : int or sequence of int
        Estimation sample size of the logged certification (Cohen et al.: 100,000); a
        sequence is tried in order.
    alpha : float, optional
        One-sided failure probability of the logged certification; checked against the
        rows. By default detected from :data:`DEFAULT_ALPHAS` (the first that fits).
    sigma : float, optional
        Certification noise level; by default from the file name (``sigma_X``).
    samples : int, optional
        Samples per stream. Default ``n0 + n`` = ``100 + n``: enough to replay the log's
        own CERTIFY. ISS with ``k_bar`` needs ``k_bar + k0`` for its fresh variant.
    seed : int
        Base seed of the streams (and of the ``"uniform"`` abstention draws).
    other : {"uniform", "runner_up"}
        Where the non-top labels go.
    num_classes : int, optional
        Classes; by default from the file name (10 for CIFAR-10, 1000 for ImageNet).
    abstain : {"auto", "mid", "uniform", "bound"}
        p_A of abstained rows (see above).
    progress : bool
        Show a progress bar on stderr while writing.

    Returns
    -------
    ImportResult

    Raises
    ------
    ValueError
        Naming the file and line for a malformed log; for rows no integer count
        reproduces, the lines and every (n, alpha) pair tried; for a missing sigma or
        class count, what to pass.
    """
    from isskit.studies.synthetic import OTHER_RULES, _check_stream_memory, write_synthetic_store

    path = Path(path)
    log = read_cohen_log(path)
    _check_unique_idx(log)
    sigma = _resolve_sigma(log, sigma)
    if other not in OTHER_RULES:
        raise ValueError(f"other ({other!r}) must be one of {', '.join(OTHER_RULES)}")
    if abstain not in ABSTAIN_RULES:
        raise ValueError(f"abstain ({abstain!r}) must be one of {', '.join(ABSTAIN_RULES)}")
    if abstain == "auto":
        abstain = "bound" if other == "runner_up" else "mid"
    if num_classes is None:
        num_classes = num_classes_from_name(path)
        if num_classes is None:
            raise ArgumentError(
                "num_classes", "{path}: the file name names no dataset (cifar10, imagenet); "
                "give {name}", path=path,
            )
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    top = int(max(log.label.max(), log.predict.max()))
    if top >= num_classes:
        line = int(log.line[np.argmax(np.maximum(log.label, log.predict) >= num_classes)])
        raise ValueError(
            f"{path}, line {line}: class {top} is out of range for num_classes ({num_classes})"
        )
    seed = check_positive_int(seed, "seed", minimum=0)

    fit = detect_alpha(log, n=n, sigma=sigma, alpha=alpha)
    if not fit.fits:
        raise ValueError(
            "no (n, alpha) reproduces every logged radius with an integer count. "
            + fit.describe()
        )
    n_fit, alpha_fit = fit.fits[0]
    ranges = recover_counts(log, n=n_fit, alpha=alpha_fit, sigma=sigma)
    N = check_sample_size(n_fit + _COHEN_N0 if samples is None else samples, "samples")

    cert = ~log.abstained
    p_A = ranges.kA_mid / n_fit
    predicted = np.where(cert, log.predict, log.label)
    if abstain == "bound":
        p_A = np.where(cert, p_A, ranges.kA_max / n_fit)
    elif abstain == "uniform":
        rng = np.random.default_rng([seed, 0x1ABE1])  # its own stream, apart from the rows'
        p_A = np.where(cert, p_A, rng.uniform(0.0, 1.0, len(log)) * ranges.kA_max / n_fit)
    # The log's time column is the wall time of n0 + n samples (Cohen's CERTIFY).
    seconds_per_sample = log.time / (n_fit + _COHEN_N0)
    out = Path(out)
    # Here, not inside the writer only: its message would name N, and the user gave samples.
    _check_stream_memory(N, p_A, "samples")
    # A new store appears only when whole; an existing one is resumed in place (the
    # writer refuses another run's store, and any file that is not a store).
    resume = os.path.lexists(out)
    with contextlib.nullcontext(out) if resume else atomic_path(out, overwrite=False) as target:
        write_synthetic_store(
            target,
            p_A,
            predicted=predicted,
            true_label=log.label,
            N=N,
            num_classes=num_classes,
            sigma=sigma,
            seed=seed,
            other=other,
            image_index=log.idx,
            seconds_per_sample=seconds_per_sample,
            progress=progress,
            attrs={
                "dataset": _dataset_name(num_classes),
                "model": f"imported from the certification log {path.name} (i.i.d. streams)",
                "noise": "gaussian",
                "source_log": path.name,
                "source_sha256": file_sha256(path),
                "source_n": n_fit,
                "source_alpha": alpha_fit,
                "source_alphas_fitting": ",".join(f"{a:g}" for _, a in fit.fits),
                "source_radius_format": log.radius_format,
                "p_A_rule": "certified rows: kA_mid / n, the recovered range's midpoint",
                "abstain_rule": abstain,
            },
        )
    return ImportResult(
        path=out,
        log=log,
        fit=fit,
        ranges=ranges,
        alpha=alpha_fit,
        sigma=sigma,
        num_classes=num_classes,
        N=N,
        p_A=p_A,
        predicted=predicted,
        abstain=abstain,
    )


def _check_unique_idx(log: CohenLog) -> None:
    """A store holds one stream per image: a repeated idx names both of its lines."""
    order = np.argsort(log.idx, kind="stable")
    same = np.flatnonzero(np.diff(log.idx[order]) == 0)
    if same.size:
        first, again = order[same[0]], order[same[0] + 1]
        raise ValueError(
            f"{log.path}, line {int(log.line[again])}: idx {int(log.idx[again])} repeats line "
            f"{int(log.line[first])} (a store holds one stream per image; "
            f"{same.size} repeat(s) in all)"
        )


def _dataset_name(num_classes: int) -> str:
    return {10: "cifar10", 100: "cifar100", 1000: "imagenet"}.get(num_classes, "unknown")
