"""The writer lock: an exclusive ``flock`` on ``<store>.lock``, stale locks taken over."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import warnings
from pathlib import Path

from isskit.store._faults import _write_error
from isskit.store.schema import StoreError, StoreLockedError

__all__ = [
    "StaleLockWarning",
]

class StaleLockWarning(UserWarning):
    """The lock file of a writer that is gone (killed, crashed) was taken over."""


# --------------------------------------------------------------------------------------
# locking


class _WriterLock:
    """An exclusive ``flock`` on the sidecar file ``<store>.lock``, which names its holder.

    ``flock`` locks belong to the open file and die with the process, so a writer killed
    with SIGKILL leaves no lock behind, only the file with its ``pid N on HOST`` line. A
    later writer locks that file again and takes it over with a :class:`StaleLockWarning`
    naming the old pid; a live holder still refuses it (:class:`StoreLockedError`).
    """

    def __init__(self, store_path: Path):
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fd = None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot create the lock file {self.path}: {exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreLockedError(
                        f"{store_path} is being written by another process"
                        f" ({holder or 'holder unknown'}; lock file {self.path}); wait for it"
                        " to finish or stop it before writing this store"
                    ) from None
                raise StoreError(f"cannot lock {self.path}: {exc}") from None
            # A previous holder may have unlinked the file between our open and our flock:
            # then we hold a lock on a file nobody else will see. Start again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError as exc:
            # A full disk fails here first: writing the store could not succeed either.
            self.release()
            raise _write_error(exc, f"the lock file {self.path}", self.path) from None
        if previous:
            _warn_stale(self.path, previous)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so no one can lock the old file after us.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _warn_stale(path: Path, previous: str) -> None:
    """Note that the lock file ``path``, left with the line ``previous``, is taken over.

    Only a holder that died leaves its line behind (a writer that closes unlinks the
    file), so the lock is stale whatever the line says; the note says whether its pid is
    known to be gone (same host, no such process) so a user can tell a crash from a pid
    that was reused.
    """
    m = re.fullmatch(r"pid (\d+) on (\S+)", previous)
    if m is None:
        who, gone = repr(previous), False
    else:
        pid, host = int(m[1]), m[2]
        who, gone = f"pid {pid} on {host}", host == socket.gethostname() and not _alive(pid)
    warnings.warn(
        f"taking over stale lock left by {who}{' (that process is gone)' if gone else ''};"
        f" lock file {path}",
        StaleLockWarning,
        stacklevel=4,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True
