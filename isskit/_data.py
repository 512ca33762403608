"""Find the small files isskit ships: the embedded default model and its digits images.

They live in the repository's ``data/`` folder (see DESIGN.md, "Layout"), each next to
the script that made it and a README with its provenance. A wheel carries the two
folders the library reads inside the package as ``isskit/_data/`` (hatch
``force-include`` in pyproject.toml), so they are looked up in this order:

1. ``$ISSKIT_DATA_DIR`` (a folder laid out like ``data/``), when set;
2. ``isskit/_data/`` inside the installed package (wheel installs);
3. ``data/`` next to the ``isskit`` package (a checkout, or an editable install of one).

Never downloads, never writes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__: list[str] = []


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    out = []
    if os.environ.get("ISSKIT_DATA_DIR"):
        out.append(Path(os.environ["ISSKIT_DATA_DIR"]))
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
    tried = []
    for base in _candidates():
        path = base / relative
        if path.is_file():
            return path
        tried.append(str(path))
    raise FileNotFoundError(
        f"isskit's shipped data file {relative!r} was not found; looked at: {', '.join(tried)}. "
        "Set ISSKIT_DATA_DIR to a folder laid out like the repository's data/."
    )
