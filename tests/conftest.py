"""Shared fixtures and Hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "data" / "published"

# deadline=None: the first call of a property may compile numba kernels or fill a cache.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200,
    derandomize=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def published() -> Path:
    """The published certification logs and recovered counts shipped in ``data/published``."""
    return PUBLISHED


@pytest.fixture
def small_fs(tmp_path):
    """A factory of real, tiny filesystems (tmpfs) for disk-full tests.

    ``small_fs(size_bytes, free_bytes=None)`` mounts a tmpfs of ``size_bytes`` and returns
    its folder; with ``free_bytes`` a filler file ``.filler`` leaves only about that much
    space (tmpfs counts whole pages). Everything is unmounted at teardown. Needs root and a
    kernel that lets this process mount (skipped with the reason otherwise): a loop device
    or FUSE would need the same privilege, and an ``ENOSPC`` faked in Python would not test
    what HDF5 and the kernel actually do on a full disk.
    """
    import shutil
    import subprocess

    mounts = []

    def make(size_bytes: int, free_bytes: int | None = None) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("disk-full tests mount a tmpfs: needs root and mount(8)")
        where = tmp_path / f"fs{len(mounts)}"
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_bytes)}", "tmpfs",
                              str(where)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounts.append(where)
        if free_bytes is not None:
            st = os.statvfs(where)
            fill = st.f_bavail * st.f_frsize - int(free_bytes)
            if fill > 0:
                with open(where / ".filler", "wb") as fh:
                    fh.write(b"\0" * fill)
        return where

    yield make
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
