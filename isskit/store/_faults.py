"""Failed writes (a full disk, any I/O error): one clean error, and a file HDF5 cannot crash on.

A failed write must never damage complete rows, never crash the process at exit and
always say which file and how much space to free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

__all__ = [
    "StoreWriteError",
]

class StoreWriteError(OSError):
    """Writing a store or its lock file failed: a full disk, a quota, an I/O error.

    An ``OSError``, not a :class:`StoreError`: nothing was wrong with the input, and the
    same call succeeds once the cause is gone. Rows marked complete before the failure
    stay complete and whole; reopening the store resumes it. ``errno`` (``None`` where
    neither the system nor HDF5 named one) and ``filename`` are set; the message names
    the file and, on a full disk, the space to free.
    """

    def __init__(self, message: str, *, errno: int | None = None, filename=None):
        super().__init__(message)
        self.errno = errno
        self.filename = None if filename is None else str(filename)

    def __str__(self) -> str:
        # OSError would print "[Errno N] strerror: filename"; the message already says more.
        return self.args[0]


# --------------------------------------------------------------------------------------
# write failures


#: HDF5 reports a failed system call inside its message ("..., errno = 28, error message =
#: 'No space left on device', ..."), with no errno of its own on the Python exception.
_HDF5_ERRNO = re.compile(r"errno = (\d+)")
_RAW_BYTES_PER_SAMPLE = 2  # uint16 labels before compression: the most a sample can take
_SLACK_BYTES = 1_000_000  # asked for on top of an estimate: HDF5's metadata, estimation error


def _write_error(exc: BaseException, what: str, path: Path, *,
                 need: float | None = None, basis: str = "") -> StoreWriteError:
    """The :class:`StoreWriteError` for a failed write of ``what`` (in the file ``path``).

    The reason is the system's (errno) without HDF5's internal trace (addresses, buffer
    pointers, timestamps), which says nothing to a user. On a full disk or quota the
    message adds what to free: what ``need`` (the bytes still to write; ``basis`` says
    how they were estimated) exceeds the free space by, plus a margin.
    """
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None:
        m = _HDF5_ERRNO.search(str(exc))
        code = int(m[1]) if m else None
    if code:
        reason = os.strerror(code)
    else:
        # h5py's message is "what failed (HDF5's details)": keep the first part.
        reason = str(exc).split(" (", 1)[0] or type(exc).__name__
    msg = f"cannot write {what}: {reason}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        folder = path.absolute().parent
        try:
            free = shutil.disk_usage(folder).free
            now = f"{_size(free)} free now"
        except OSError:
            free, now = 0, "free space unknown"
        if need:
            more = max(need - free, 0) + _SLACK_BYTES
            msg += f"; free at least {_size(more, up=True)} in {folder} ({now}{basis})"
        else:
            msg += f"; free space in {folder} ({now})"
    return StoreWriteError(msg, errno=code, filename=path)


def _space_needed(samples: int, bytes_per_sample: float | None) -> tuple[float, str]:
    """Bytes to free for ``samples`` more samples, and how that was estimated.

    At the rate of the rows written so far when there are any, else at the uncompressed
    size (labels compress to well under that, so this asks for more than will be used).
    """
    if bytes_per_sample:
        return samples * bytes_per_sample, (
            f"; {samples:,} samples still to write at the {bytes_per_sample:.2g} bytes per"
            " sample of the rows written so far")
    return samples * _RAW_BYTES_PER_SAMPLE, (
        f"; {samples:,} samples to write at up to {_RAW_BYTES_PER_SAMPLE} bytes per sample")


def _size(nbytes: float, *, up: bool = False) -> str:
    """``nbytes`` in B, kB, MB, GB or TB (one decimal); ``up`` rounds up, for "at least"."""
    value, unit = max(float(nbytes), 0.0), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{np.ceil(value) if up else round(value):.0f} B"
    return f"{np.ceil(value * 10) / 10 if up else value:.1f} {unit}"


def _abandon(f: h5py.File) -> None:
    """Close ``f`` after a failed write without writing anything more into its file.

    HDF5 still holds what the failed write changed (dirty metadata, chunks in its cache)
    and flushes it when the file closes: onto a full disk that fails again, half of it
    may land on the good data, and a failed close leaves h5py's objects half closed (they
    crash the interpreter when garbage-collected). So the file descriptor under HDF5 is
    first pointed at a scratch file in memory; the close writes there and succeeds, and
    the file on disk keeps what its last successful flush left, in which every row marked
    complete is whole. (A reader of the same file in this process shares HDF5's
    descriptor and sees the scratch file from now on; isskit never holds one next to a
    writer.)
    """
    with contextlib.suppress(Exception):
        fd = f.id.get_vfd_handle()
        if hasattr(os, "memfd_create"):
            scratch = os.memfd_create("isskit-abandoned-write")
            os.dup2(scratch, fd)
            os.close(scratch)
        else:  # pragma: no cover - not Linux
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), fd)
    with contextlib.suppress(Exception):
        f.close()
