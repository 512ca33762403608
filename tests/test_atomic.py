"""isskit._atomic: whole files or none, stray temporaries of dead writers, full disks.

The reference for every check is the file system itself: file bytes, listings and errno.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from isskit._atomic import atomic_path, remove_stale, temporary_path
from isskit.store import is_stream_store, open_for_writing


def _dead_pid() -> int:
    # A process that has exited and been reaped: its pid is gone (until reused, which a
    # test lasting seconds will not see on a pid space of 2**22).
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _names(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_new_file_appears_whole_and_the_temporary_is_gone(tmp_path):
    out = tmp_path / "r.nc"
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".r.nc.tmp-{os.getpid()}-")
        assert tmp.suffix == ".nc"  # writers that go by the extension see the real one
        tmp.write_bytes(b"new")
        assert not out.exists()  # nothing under the final name until the block ends
    assert out.read_bytes() == b"new"
    assert _names(tmp_path) == {"r.nc"}


def test_an_exception_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "r.nc"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="mid-write"), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        tmp.with_name(tmp.name + ".lock").write_text("")  # what a store writer adds
        raise RuntimeError("mid-write")
    assert out.read_bytes() == b"old"
    assert _names(tmp_path) == {"r.nc"}


def test_no_overwrite_refuses_a_file_that_appears_meanwhile(tmp_path):
    out = tmp_path / "m.h5"
    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        with atomic_path(out, overwrite=False) as tmp:
            tmp.write_bytes(b"merged")
            out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's"
    assert _names(tmp_path) == {"m.h5"}
    out.unlink()
    with atomic_path(out, overwrite=False) as tmp:
        tmp.write_bytes(b"merged")
    assert out.read_bytes() == b"merged" and _names(tmp_path) == {"m.h5"}


def test_permissions_of_the_old_file_are_kept_and_links_followed(tmp_path):
    target = tmp_path / "data" / "r.csv"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "r.csv"
    link.symlink_to(target)
    with atomic_path(link) as tmp:
        assert tmp.parent == target.parent  # renamed within the target's file system
        tmp.write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    out = tmp_path / "r.nc"
    stale = [f".r.nc.tmp-{dead}-0123abcd.nc",  # a results file killed mid-write
             f".r.nc.tmp-{dead}-0123abcd.nc.lock",  # a store writer's lock beside it
             f"..r.nc.tmp-{dead}-0123abcd.nc.tmp-{dead}"]  # the store's own creation temp
    kept = [f".r.nc.tmp-{alive}-89abcdef.nc",  # a live writer's: not ours to remove
            f".x.r.nc.tmp-{dead}-0123abcd.nc",  # another output's (x.r.nc)
            f".r.nc.tmp-{dead}-xyz.nc",  # not the pattern
            "r.nc.bak", "r.nc"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_stale(out)) == sorted(stale)
    assert _names(tmp_path) == set(kept)
    # a new write of the same name cleans up the same way
    (tmp_path / stale[0]).write_text("x")
    with atomic_path(out) as tmp:
        tmp.write_text("new")
    assert _names(tmp_path) == set(kept)
    assert remove_stale(tmp_path / "no" / "such" / "dir.nc") == []


def test_temporary_names_are_unique_within_a_process(tmp_path):
    names = {temporary_path(tmp_path / "r.nc").name for _ in range(200)}
    assert len(names) == 200


def test_disk_full_raises_enospc_and_keeps_the_old_file(small_fs):
    fs = small_fs(1 << 20)
    out = fs / "r.bin"
    out.write_bytes(b"old" * 1000)
    with pytest.raises(OSError) as info, atomic_path(out) as tmp, tmp.open("wb") as f:
        f.write(os.urandom(2 << 20))  # twice the file system
    assert info.value.errno == errno.ENOSPC
    assert out.read_bytes() == b"old" * 1000
    assert _names(fs) == {"r.bin"}


def test_is_stream_store_tells_stores_from_other_files(tmp_path):
    store = tmp_path / "s.h5"
    with open_for_writing(store, image_index=[0, 1], true_label=[0, 1], samples_per_image=10,
                          attrs={"sigma": 0.5, "num_classes": 2}) as w:
        w.write_row(0, np.zeros(10, np.uint16), seconds=0.0)
    assert is_stream_store(store)
    cut = tmp_path / "cut.h5"  # an HDF5 signature that does not open: may be a store
    cut.write_bytes(store.read_bytes()[:3000])
    assert is_stream_store(cut)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:  # like a netCDF results file: no schema, no /labels
        f["image_index"] = np.arange(3)
        f.attrs["isskit_version"] = "0"
    text = tmp_path / "t.csv"
    text.write_text("p,k\n")
    for path in (foreign, text, tmp_path / "absent.h5", tmp_path):
        assert not is_stream_store(path), path
