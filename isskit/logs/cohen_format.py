"""Cohen et al.'s certification-log format: its one header, the strict reader, the writer.

A log of Cohen et al.'s ``certify.py`` (and of the papers that reuse it) has one row per
test image, tab separated under :data:`HEADER` (``idx label predict radius correct time``),
with the radius printed to a few digits. :func:`read_cohen_log` reads such a log strictly
and finds the format its radii were printed with; :func:`write_cohen_log` writes one (what
:func:`isskit.replay.export_cohen` writes through). :func:`sigma_from_name` and
:func:`num_classes_from_name` read what the published logs' file names say.

This module never prints and never imports torch or click; every bad input raises a
``ValueError`` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path

__all__ = [
    "HEADER",
    "HEADER_LINE",
    "CohenLog",
    "format_row",
    "num_classes_from_name",
    "read_cohen_log",
    "sigma_from_name",
    "write_cohen_log",
]

#: The header every log starts with, tab separated (Cohen et al.'s ``certify.py``).
HEADER = ("idx", "label", "predict", "radius", "correct", "time")
#: The header as the first line of a log file.
HEADER_LINE = "\t".join(HEADER) + "\n"

# Formats a radius may have been printed with, in order of preference when several
# reproduce every text of a log: Cohen et al. print ``{:.3}`` (3 significant digits),
# Salman et al.'s ImageNet logs ``{:.4f}``; the rest cover other forks. ``"r"`` is
# Python's shortest round-trip repr (``str(float)``), i.e. an unrounded radius.
_FORMATS = (".3", ".4f", ".2", ".4", ".5", ".6", ".3f", ".5f", ".6f", ".2f", ".1f", "r")

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


# --------------------------------------------------------------------------- writing


def write_cohen_log(path, idx, label, predict, radius, seconds, *,
                    radius_format: str = ".6f") -> Path:
    """Write a certification log in Cohen et al.'s format, atomically.

    One row per image under :data:`HEADER`: ``correct`` is 1 where ``predict == label``
    (never for an abstention, ``predict = -1``); ``time`` as ``certify.py`` writes it,
    ``str(datetime.timedelta(seconds=...))`` (``0:00:13.736080``), or ``nan`` where the
    time is unknown; the radius printed with ``radius_format``.

    Parameters
    ----------
    path : str or path-like
        The file, written atomically (:func:`isskit._atomic.atomic_path`): a failed or
        killed write leaves the previous file as it was.
    idx, label, predict : array_like of int, shape (n,)
        Dataset index, true label and predicted class (``-1`` = abstained) of each row.
    radius : array_like of float, shape (n,)
        Certified radius (0 for abstentions).
    seconds : array_like of float, shape (n,)
        Wall seconds of each row; NaN where unknown (such a log's ``nan`` times are not
        durations, so :func:`read_cohen_log` refuses them).
    radius_format : str
        One of the formats :func:`read_cohen_log` recognises (``".6f"``: 6 decimals;
        ``certify.py`` prints ``".3"``, 3 significant digits).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        A ``radius_format`` the reader does not know, or columns of different lengths.
    OSError
        The file could not be written (disk full, ...); ``path`` is unchanged.
    """
    path = Path(path)
    if radius_format not in _FORMATS:
        raise ValueError(
            f"radius_format ({radius_format!r}) must be one of "
            f"{', '.join(repr(s) for s in _FORMATS)} (the formats read_cohen_log reads)"
        )
    columns = {"idx": idx, "label": label, "predict": predict, "radius": radius,
               "seconds": seconds}
    columns = {name: np.asarray(c) for name, c in columns.items()}
    shapes = {name: c.shape for name, c in columns.items()}
    if len(set(shapes.values())) != 1 or columns["idx"].ndim != 1:
        raise ValueError(f"the columns of a log must be 1-D of one length: shapes {shapes}")
    idx, label, predict, radius, seconds = columns.values()
    with atomic_path(path) as tmp, tmp.open("w") as f:
        f.write(HEADER_LINE)
        for j in range(idx.size):
            f.write(format_row(idx[j], label[j], predict[j], radius[j], seconds[j],
                               radius_format=radius_format))
    return path


def format_row(idx, label, predict, radius, seconds, *, radius_format: str = ".6f") -> str:
    """One row of a Cohen-format log, with its newline (the rule of :func:`write_cohen_log`).

    ``isskit certify`` writes its logs a row at a time through this, flushed after every
    image as Cohen's ``certify.py`` does.

    Examples
    --------
    >>> format_row(7, 3, 3, 0.5, 13.73608).split()
    ['7', '3', '3', '0.500000', '1', '0:00:13.736080']
    """
    s = float(seconds)
    t = "nan" if math.isnan(s) else str(datetime.timedelta(seconds=s))
    correct = int(predict == label and predict >= 0)
    return (f"{int(idx)}\t{int(label)}\t{int(predict)}\t{_fmt(radius, radius_format)}\t"
            f"{correct}\t{t}\n")


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
