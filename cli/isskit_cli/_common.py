"""Pieces every command shares: turning library errors into usage errors, notes, JSON output."""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

__all__ = ["check_output_file", "echo_json", "library_errors", "notes", "parse_floats", "writing"]


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """Turn library errors into click errors, with no traceback.

    A ``ValueError`` (bad input) is a usage error, exit status 2; a failed write of a
    store (:class:`isskit.store.StoreWriteError`: a full disk) exits with status 1. The
    library's messages already name the bad value or the file, so they are passed on as
    they are. Warnings of the library show as notes on stderr (:func:`notes`).
    """
    try:
        with notes():
            yield
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        from isskit.store import StoreWriteError  # h5py is imported only where it is used

        if isinstance(exc, StoreWriteError):
            raise click.ClickException(str(exc)) from None
        raise


@contextlib.contextmanager
def notes() -> Iterator[None]:
    """Show the library's warnings (``isskit.*`` categories) as ``note: ...`` lines on stderr.

    They tell a user something they should know (a stale lock taken over), not where in
    the code it was found, so the message goes out without Python's file and line.
    The warning filters are left as they are; other warnings keep Python's display.
    """
    show = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("isskit."):
            click.echo(f"note: {message}", err=True)
        else:
            show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores showwarning after the command
        warnings.showwarning = note
        yield


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
