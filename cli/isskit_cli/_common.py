"""Pieces every command shares: turning library errors into usage errors, JSON output."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator

import click
import numpy as np

__all__ = ["echo_json", "library_errors"]


@contextlib.contextmanager
def library_errors(param_hint: str | None = None) -> Iterator[None]:
    """Turn a library ``ValueError`` into a click usage error: exit status 2, no traceback.

    The library's messages already name the bad value, so they are passed on as they are.
    """
    try:
        yield
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no inf/nan; null is what every parser accepts
    return obj


def echo_json(obj) -> None:
    """Print ``obj`` as one JSON object on stdout (numpy values converted, inf/nan as null)."""
    click.echo(json.dumps(_jsonable(obj), indent=2, sort_keys=False))
