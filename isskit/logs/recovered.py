"""Recovered-count files: the published logs' counts, as ``data/published/recovered`` ships them.

Each TSV holds, per row of a published Cohen-format log, the range ``[kA_min, kA_max]`` of
integer top-class counts whose certified radius prints as the logged text
(:func:`isskit.logs.recover_counts`) and its midpoint; its first line is a ``#`` comment of
``key=value`` pairs (``alpha_one_sided``, ``n``, ``sigma``, ``source``). :func:`read_recovered`
reads one into a :class:`RecoveredLog`; :func:`isskit.studies.synthetic.realistic_p_A` draws
p_A from it.

Never writes, never prints.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isskit._data import data_dir

__all__ = [
    "DEFAULT_SOURCE",
    "RecoveredLog",
    "published_dir",
    "read_recovered",
]

#: The recovered log :func:`isskit.studies.synthetic.realistic_p_A` draws from by default:
#: Cohen et al.'s CIFAR-10 ResNet-110 trained and certified at sigma = 0.25 (500 test images).
DEFAULT_SOURCE = "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"

#: The integer columns of a recovered-count TSV, in :class:`RecoveredLog`'s order.
_COLUMNS = ("idx", "label", "predict", "kA_min", "kA_max", "kA_mid", "n")


@dataclass(frozen=True, eq=False)
class RecoveredLog:
    """The counts recovered from one published certification log (:func:`read_recovered`).

    Attributes
    ----------
    idx, label, predict : ndarray of int64, shape (n_rows,)
        Dataset index, true label and logged prediction (-1 = abstained) of each row.
    kA_min, kA_max : ndarray of int64, shape (n_rows,)
        The integer top-class counts whose radius prints as the logged text.
    kA_mid : ndarray of int64, shape (n_rows,)
        Their midpoint, -1 where the row abstained (the log gives only ``kA <= kA_max``).
    n : ndarray of int64, shape (n_rows,)
        The estimation sample size of each row.
    header : dict of str
        The ``#`` line's ``key=value`` pairs (alpha_one_sided, n, sigma, source), as text.
    path : Path
        The file read.
    """

    idx: np.ndarray
    label: np.ndarray
    predict: np.ndarray
    kA_min: np.ndarray
    kA_max: np.ndarray
    kA_mid: np.ndarray
    n: np.ndarray
    header: dict
    path: Path

    @property
    def certified(self) -> np.ndarray:
        """Rows that did not abstain (``kA_mid >= 0``)."""
        return self.kA_mid >= 0


def published_dir() -> Path:
    """The folder of published logs: ``published/`` of the data folder (:mod:`isskit._data`).

    ``$ISSKIT_DATA/published`` when ``ISSKIT_DATA`` is set, else the package's own data,
    else ``data/published`` of a checkout.

    Raises
    ------
    FileNotFoundError
        None exists (an installed wheel carries no published logs: set ``ISSKIT_DATA``).
    """
    return data_dir("published")


def _recovered_path(source) -> Path:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and os.sep in source):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"recovered log {path} does not exist")
        return path
    if not isinstance(source, str):
        raise ValueError(f"source ({source!r}) must be a recovered log's name or path")
    folder = published_dir() / "recovered"
    path = folder / (source if source.endswith(".tsv") else source + ".tsv")
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.tsv"))
        raise ValueError(f"no recovered log named {source!r}; available: {', '.join(names)}")
    return path


def read_recovered(source=DEFAULT_SOURCE) -> RecoveredLog:
    """Read a recovered-counts TSV (``data/published/recovered``) into arrays.

    Parameters
    ----------
    source : str or Path, default :data:`DEFAULT_SOURCE`
        A file name stem from ``data/published/recovered`` or a path to such a TSV.

    Returns
    -------
    RecoveredLog
        The integer columns as int64 arrays and the ``#`` line's ``key=value`` pairs.

    Raises
    ------
    ValueError
        No such log (naming the ones there are), a missing column or a row that is not
        integers (naming the file and line).

    Examples
    --------
    Cohen et al.'s CIFAR-10 ResNet-110 at sigma = 0.25: 500 test images, 43 abstained
    (``data/published/README.md``).

    >>> from isskit.logs import read_recovered
    >>> rec = read_recovered("cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25")
    >>> rec.header["sigma"], rec.header["n"], rec.idx.size, int((~rec.certified).sum())
    ('0.25', '100000', 500, 43)
    >>> int(rec.kA_min[0]), int(rec.kA_max[0]), int(rec.kA_mid[0])
    (93630, 93679, 93654)
    """
    path = _recovered_path(source)
    out: dict = {c: [] for c in _COLUMNS}
    with path.open(newline="") as fh:
        first = fh.readline()
        if not first.startswith("#"):
            raise ValueError(f"{path}: first line must be a '#' comment, got {first[:60]!r}")
        header = dict(kv.split("=", 1) for kv in first[1:].split() if "=" in kv)
        reader = csv.DictReader(fh, delimiter="\t")
        missing = set(_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=3):
            try:
                for c in _COLUMNS:
                    value = row[c]
                    out[c].append(-1 if c == "kA_mid" and value == "" else int(value))
            except (TypeError, ValueError):
                raise ValueError(f"{path} line {line}: bad row {row}") from None
    return RecoveredLog(**{c: np.asarray(v, dtype=np.int64) for c, v in out.items()},
                        header=header, path=path)
