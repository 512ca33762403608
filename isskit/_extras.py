"""Optional dependencies: imported on demand, with the ``pip install`` line when missing.

``pip install isskit`` replays, imports logs, computes psi, verifies, audits and describes
stores; sampling needs the ``torch`` extra and figures the ``plot`` extra (DESIGN.md,
"Layout"). A module that needs one imports it through :func:`require_extra`, so a user
without it gets one sentence naming the install line, never a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["MissingExtraError", "require_extra"]


class MissingExtraError(ImportError):
    """An optional dependency of isskit is not installed; the message names the pip line."""


def require_extra(module: str, extra: str, purpose: str) -> types.ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``isskit[extra]``.

    Parameters
    ----------
    module : str
        The module to import (``"torch"``, ``"matplotlib"``).
    extra : str
        The isskit extra that installs it (``"torch"``, ``"plot"``).
    purpose : str
        What needs it, for the message (``"isskit sample"``).

    Returns
    -------
    module

    Examples
    --------
    >>> require_extra("json", "none", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed here: "
            f"pip install 'isskit[{extra}]'"
        ) from exc
