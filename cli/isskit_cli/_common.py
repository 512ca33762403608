"""Pieces every command shares: turning library errors into usage errors, JSON output."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

__all__ = ["check_output_file", "echo_json", "library_errors", "parse_floats", "writing"]


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """Turn a library ``ValueError`` into a click usage error: exit status 2, no traceback.

    The library's messages already name the bad value, so they are passed on as they are.
    A missing optional dependency (:class:`isskit.MissingExtraError`) is a usage error too:
    its message is the ``pip install`` line.
    """
    from isskit import MissingExtraError

    try:
        yield
    except (ValueError, MissingExtraError) as exc:
        raise click.UsageError(str(exc)) from None


def parse_floats(text: str, name: str) -> list[float]:
    """A comma list of numbers; ValueError naming the bad entry (the library checks ranges)."""
    out = []
    for item in str(text).split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise ValueError(f"{name} ({item.strip()!r}) must be a number") from None
    return out


def check_output_file(path, option: str) -> None:
    """Refuse an output file whose folder is missing or not writable, before any work.

    Hours of computing should not end in a traceback because ``--out`` named a folder that
    is not there; click's own ``writable=True`` only checks files that already exist.
    """
    if path is None:
        return
    parent = Path(path).absolute().parent
    if not parent.exists():
        raise click.BadParameter(f"{path}: directory {parent} does not exist",
                                 param_hint=option)
    if not parent.is_dir():
        raise click.BadParameter(f"{path}: {parent} is not a directory", param_hint=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{path}: directory {parent} is not writable",
                                 param_hint=option)


@contextlib.contextmanager
def writing(option: str, path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a usage error naming the option."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.UsageError(f"cannot write {option} {path}: {reason}") from None


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
