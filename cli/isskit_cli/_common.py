"""Pieces every command shares: turning library errors into usage errors, notes, JSON output.

Exit status, for every command (docs/cli.md, "Exit status and messages"): 2 for anything
the user gave (a value, a file, an existing file in the way), with a message naming the
option as the user typed it; 1 for a failure of the machine while running (disk, memory,
device); 0 done. :func:`library_errors` and :func:`usage_error` are the one place where
library exceptions become those.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import numpy as np

from isskit.validate import ArgumentError

__all__ = [
    "SAMPLE_SIZE",
    "check_output_dir",
    "check_output_file",
    "check_overwrites",
    "echo_json",
    "library_errors",
    "notes",
    "option_name",
    "parse_numbers",
    "parse_policy_specs",
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

    The library's messages name the bad value; an :class:`isskit.validate.ArgumentError`
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
    naming the option; ``options`` as for :func:`option_name`). A failed write of a store
    (:class:`isskit.store.StoreWriteError`: a full disk) and a ``MemoryError`` that the
    size checks did not foresee are the machine's: exit status 1. Warnings of the library
    show as notes on stderr (:func:`notes`). A missing optional dependency
    (:class:`isskit.MissingExtraError`) is a usage error too: its message is the
    ``pip install`` line.
    """
    from isskit import MissingExtraError

    try:
        with notes():
            yield
    except ValueError as exc:
        raise usage_error(exc, options) from None
    except MissingExtraError as exc:
        raise click.UsageError(str(exc)) from None
    except MemoryError as exc:
        detail = f": {exc}" if str(exc) else ""
        raise click.ClickException(f"out of memory{detail}; free memory or ask for less "
                                   "work") from None
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


def parse_numbers(text: str, name: str, *, integral_as_int: bool = False) -> list:
    """A comma list of numbers: the one list parser of every command.

    A bad entry is an :class:`~isskit.validate.ArgumentError` naming it (said with the
    option the user typed, by :func:`library_errors`); the library checks the ranges.
    With ``integral_as_int``, ``1e5`` and ``100000`` give the int 100000 (sample sizes).
    """
    out = []
    for item in str(text).split(","):
        try:
            value = float(item)
        except ValueError:
            raise ArgumentError(name, "{name} ({item!r}) must be a number",
                                item=item.strip()) from None
        out.append(int(value) if integral_as_int and value.is_integer() else value)
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


def check_output_dir(path, option: str) -> None:
    """Refuse an output folder that exists as a file or cannot be made, before any work.

    The folder may be missing (it is created); its nearest existing ancestor must then be
    a writable folder.
    """
    if path is None:
        return
    if Path(path).exists() and not Path(path).is_dir():
        raise click.BadParameter(f"{path} exists and is not a directory", param_hint=option)
    ancestor = Path(path).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise click.BadParameter(f"{path}: {ancestor} is not a directory", param_hint=option)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{path}: directory {ancestor} is not writable",
                                 param_hint=option)


def _identity(path: Path):
    """What makes two paths one file: device and inode, else (not there) the resolved path.

    Device and inode match hard links, symlinks and bind mounts, as ``os.path.samefile``.
    """
    try:
        st = os.stat(path)
    except OSError:  # not there (yet)
        return ("path", str(path.resolve()))
    return ("inode", st.st_dev, st.st_ino)


def check_overwrites(outputs, inputs=(), *, stores: bool = False) -> None:
    """Refuse, before any work, outputs that would destroy an input, a store or each other.

    Parameters
    ----------
    outputs : iterable of (str, path)
        Every file the command would write, each with the option that names it as the
        user typed it (``"--out"``, ``"OUT"``); ``None`` paths are skipped.
    inputs : iterable of (str, path)
        Every file the command reads, each with how to name it (``"the input STORE"``);
        ``None`` paths are skipped.
    stores : bool, default False
        True where the outputs are themselves stream stores (merge, import-log): the
        library resumes the same run or refuses, so an existing store is left to it.
        Otherwise an existing stream store (:func:`isskit.store.is_stream_store`) is
        refused: a results file, table or figure must never replace days of sampling.

    Raises
    ------
    click.BadParameter
        Exit status 2, naming the file and the option.
    """
    from isskit.store import is_stream_store  # h5py: not at import, --help stays light

    read = {_identity(Path(p)): what for what, p in inputs if p is not None}
    written: dict = {}
    for option, out in outputs:
        if out is None:
            continue
        out = Path(out)
        key = _identity(out)
        if key in read:
            raise click.BadParameter(
                f"{out} is {read[key]}; writing it would destroy what this command reads:"
                " name another file", param_hint=option)
        if key in written:
            raise click.BadParameter(f"{out} would also be written by {written[key]}",
                                     param_hint=option)
        written[key] = option
        if not stores and is_stream_store(out):
            raise click.BadParameter(
                f"{out} is a stream store (or an HDF5 file too damaged to tell);"
                " refusing to overwrite it: name another file", param_hint=option)


@contextlib.contextmanager
def writing(option: str, path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into an error naming the option: exit 1.

    A failed write (disk full, quota, I/O error) is a runtime failure, not bad input
    (exit 2, :func:`library_errors`); on a full disk the message says how much is free
    where. Outputs are written through :func:`isskit._atomic.atomic_path`, so the file
    being written when it failed is left as it was. Put it inside
    :func:`library_errors`, so an error that is both a ``ValueError`` and an ``OSError``
    counts as a failed write.
    """
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        msg = f"cannot write {option} {path}: {reason}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            folder = Path(path).absolute().parent
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(folder).free
                size = f"{free / 1e6:.1f} MB" if free >= 1e6 else f"{free / 1e3:.0f} kB"
                msg += f" ({size} free in {folder})"
            msg += f"; free space there or give {option} on another disk, then run again"
        raise click.ClickException(msg) from None


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


def parse_policy_specs(specs, option: str = "--policy"):
    """The policies of every SPEC given to ``option``, and the spec each came from.

    A spec that does not parse, or whose parameters a policy refuses (``ias n=0``), is a
    usage error naming ``option`` and the spec as typed (exit status 2). Policies named
    twice are kept once, in the order given.

    Returns
    -------
    (list of Policy, dict of policy name -> spec)
    """
    from isskit.policies import parse_policies

    policies, spec_of = [], {}
    with library_errors({"policies": option}):
        for spec in specs:
            try:
                got = parse_policies([spec])
            except ValueError as exc:
                raise click.BadParameter(f"{spec!r}: {exc}", param_hint=option) from None
            for p in got:
                if p.name not in spec_of:
                    spec_of[p.name] = spec
                    policies.append(p)
    return policies, spec_of
