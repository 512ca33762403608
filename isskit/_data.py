"""Find the small files isskit ships: the default model, its digits, the published logs.

They live in the repository's ``data/`` folder (see DESIGN.md, "Layout"), each next to
the script that made it and a README with its provenance. A wheel carries the two
folders the sampler reads inside the package as ``isskit/_data/`` (hatch
``force-include`` in pyproject.toml), so they are looked up in this order:

1. ``$ISSKIT_DATA`` (a folder laid out like ``data/``), when set;
2. ``isskit/_data/`` inside the installed package (wheel installs);
3. ``data/`` next to the ``isskit`` package (a checkout, or an editable install of one).

Never downloads, never writes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__: list[str] = []

#: The one environment variable naming a data folder (laid out like the repository's data/).
ENV = "ISSKIT_DATA"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    out = []
    if os.environ.get(ENV):
        out.append(Path(os.environ[ENV]))
    out.append(here / "_data")
    out.append(here.parent / "data")
    return out


def data_file(relative: str) -> Path:
    """Return the path of a shipped data file, e.g. ``"digits/digits.npz"``.

    Raises
    ------
    FileNotFoundError
        When no candidate folder holds the file; the message lists every place looked.
    """
    return _find(relative, Path.is_file, "data file")


def data_dir(relative: str) -> Path:
    """Return the path of a shipped data folder, e.g. ``"published"``.

    Raises
    ------
    FileNotFoundError
        When no candidate folder holds it (an installed wheel carries no published logs).
    """
    return _find(relative, Path.is_dir, "data folder")


def _find(relative: str, exists, what: str) -> Path:
    tried = []
    for base in _candidates():
        path = base / relative
        if exists(path):
            return path
        tried.append(str(path))
    raise FileNotFoundError(
        f"isskit's shipped {what} {relative!r} was not found; looked at: {', '.join(tried)}. "
        f"Set {ENV} to a folder laid out like the repository's data/."
    )
