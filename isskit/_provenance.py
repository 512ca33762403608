"""One place that stamps provenance attributes on everything isskit writes.

Stores (HDF5 root attrs) and results (netCDF attrs) both call :func:`make_attrs`, so a
file always says which isskit made it, when, and with what. Never imports torch: the
sampling stage adds ``torch_version`` and ``device`` itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from pathlib import Path

import numpy as np

from isskit._version import __version__

__all__ = ["file_sha256", "make_attrs"]


def make_attrs(**extra) -> dict:
    """Return the provenance attrs: isskit version, UTC creation time, Python and NumPy.

    Parameters
    ----------
    **extra
        Further attrs (sigma, dataset, ...). ``None`` values are dropped, since neither
        HDF5 nor netCDF attributes can hold them.

    Returns
    -------
    dict
        Attribute name to a str, int, float or bool.
    """
    attrs = {
        "isskit_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
    }
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def file_sha256(path, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks so large stores need little memory."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
