"""Pieces every command shares: turning library errors into usage errors, JSON output.

Exit status, for every command (docs/cli.md, "Exit status and messages"): 2 for anything
the user gave (a value, a file, an existing file in the way), with a message naming the
option as the user typed it; 1 for a failure of the machine while running (disk, memory,
device); 0 done. :func:`library_errors` and :func:`usage_error` are the one place where
library exceptions become those.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import numpy as np

from isskit._validate import ArgumentError

__all__ = [
    "SAMPLE_SIZE",
    "check_output_file",
    "echo_json",
    "library_errors",
    "option_name",
    "parse_floats",
    "usage_error",
    "writing",
]


def option_name(argument: str, options: Mapping[str, str] | None = None) -> str | None:
    """The CLI spelling of a library argument, in the command that is running.

    ``options`` maps argument names to options where they differ (audit's library
    ``policies`` is ``--policy``); otherwise the running command's own option whose
    parameter name is ``argument`` (``num_classes`` is ``--num-classes``), with every
    spelling it has (``--max/--max-index``). None when the command has no such option.
    """
    if options and argument in options:
        return options[argument]
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name == argument:
            return "/".join(param.opts)
    return None


def usage_error(exc: ValueError, options: Mapping[str, str] | None = None) -> click.UsageError:
    """The usage error (exit status 2) for a library ``ValueError``.

    The library's messages name the bad value; an :class:`isskit._validate.ArgumentError`
    is said again with the option the user typed in place of the library's argument.
    """
    if isinstance(exc, ArgumentError):
        option = option_name(exc.argument, options)
        if option is not None:
            return click.UsageError(exc.naming(option))
    return click.UsageError(str(exc))


@contextlib.contextmanager
def library_errors(options: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn library errors into click errors, without a traceback.

    A ``ValueError`` is bad input: a usage error, exit status 2 (:func:`usage_error`,
    naming the option; ``options`` as for :func:`option_name`). A ``MemoryError`` that
    the size checks did not foresee is the machine's: exit status 1.
    """
    try:
        yield
    except ValueError as exc:
        raise usage_error(exc, options) from None
    except MemoryError as exc:
        detail = f": {exc}" if str(exc) else ""
        raise click.ClickException(f"out of memory{detail}; free memory or ask for less "
                                   "work") from None


def parse_floats(text: str, name: str) -> list[float]:
    """A comma list of numbers; ValueError naming the bad entry (the library checks ranges)."""
    out = []
    for item in str(text).split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise ArgumentError(name, "{name} ({item!r}) must be a number",
                                item=item.strip()) from None
    return out


class _SampleSize(click.ParamType):
    """A count as every isskit sample size is written: ``100000`` or ``1e5`` (integral).

    Only the spelling is checked here; the range (>= 1, the library's caps, memory) is
    the library's, whose message then names the option (:func:`usage_error`).
    """

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{text!r} is not a number", param, ctx)
        if not number.is_integer():  # also inf and nan
            self.fail(f"{text!r} is not an integer", param, ctx)
        return int(number)


#: The click type of sample-size options (``--N``, ``--samples``, ``--trials``, ``--k0``).
SAMPLE_SIZE = _SampleSize()


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
