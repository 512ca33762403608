"""Atomic outputs: a file isskit writes appears whole under its name, or not at all.

Every output (results netCDF, Cohen-format logs, figures, psi tables and their sidecars,
merged and imported stores) is written through :func:`atomic_path`: the writer gets a
temporary path in the output's own folder (a rename is atomic only within one file
system), writes it, and only then is the file fsynced, renamed over the final name and
the folder fsynced. On any exception the temporary is removed and the final name is left
as it was. A process killed at any moment (SIGKILL, power loss after the fsyncs) leaves
the old file or the new one, never a broken one.

A killed writer cannot remove its temporary, so temporaries carry the final name and
the writer's pid, ``.<name>.tmp-<pid>-<tag><suffix>``: the next :func:`atomic_path` for
the same name removes those whose process is gone (and the files a store writer made
beside them, such as ``<temporary>.lock``). The suffix is repeated at the end so that
writers which go by the extension (matplotlib, ``numpy.savez``) treat the temporary as
they would the final file. A pid is only meaningful on one host: the folder is assumed not
to be written by two hosts at once under the same output name.

This module never prints, never imports click, and knows nothing of file formats.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "remove_stale", "temporary_path"]

# Hard links are how a rename that must not replace an existing file is done atomically;
# file systems without them (some FUSE, network and FAT mounts) answer with these.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS,
             errno.EXDEV}
# A folder fsync some file systems do not support; the rename is done either way.
_NO_DIR_FSYNC = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EISDIR}


def temporary_path(path) -> Path:
    """A fresh temporary name for ``path``, in its folder: ``.<name>.tmp-<pid>-<tag><suffix>``.

    ``tag`` is 8 random hex digits, so two writers of one name in one process never meet.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _family(name: str) -> re.Pattern:
    # The temporaries of ``name`` and whatever a writer derived from one (a store's
    # "<temporary>.lock", its own creation temporary ".<temporary>.tmp-<pid>").
    return re.compile(rf"\.+{re.escape(name)}\.tmp-(?P<pid>\d+)-(?P<tag>[0-9a-f]{{8}})(\..*)?")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes that are gone.

    Parameters
    ----------
    path : str or Path
        The final output name.

    Returns
    -------
    list of Path
        The files removed (none when the folder does not exist).
    """
    path = Path(path)
    pattern = _family(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _remove_own(tmp: Path) -> None:
    """Remove a temporary and the files derived from it (this process's, whatever state)."""
    own = re.compile(rf"\.*{re.escape(tmp.name)}(\..*)?")
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmp.parent):
            if own.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _fsync(path: Path, *, folder: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (folder and exc.errno in _NO_DIR_FSYNC):
            raise
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; with ``overwrite=False`` fail if ``path`` exists."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails with EEXIST, atomically, where rename would replace
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{path} appeared while it was being written"
                              " (another process?); it was left as it is", str(path)) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, f"{path} appeared while it was being written"
                                  " (another process?); it was left as it is",
                                  str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``path``; publish it when the block ends.

    Write the whole file at the yielded path (and close it) inside the ``with`` block.
    When the block ends normally the temporary is fsynced, renamed to ``path`` (keeping
    an existing file's permission bits) and the folder fsynced. When it raises, the
    temporary (and anything a writer derived from its name) is removed, ``path`` is
    untouched, and the exception propagates. A symbolic link at ``path`` is followed: its
    target is replaced, in the target's folder.

    Parameters
    ----------
    path : str or Path
        The final name.
    overwrite : bool, default True
        With False, an existing ``path`` is never replaced, not even one that appears
        while the temporary is being written: publishing raises ``FileExistsError``.

    Yields
    ------
    Path
        The temporary, ``.<name>.tmp-<pid>-<tag><suffix>`` in ``path``'s folder.

    Raises
    ------
    OSError
        Whatever writing, fsync or rename raised (disk full, quota, I/O error), with the
        temporary already removed.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    remove_stale(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        _fsync(tmp)
        _publish(tmp, path, overwrite)
    except BaseException:
        _remove_own(tmp)
        raise
    _fsync(path.parent, folder=True)
