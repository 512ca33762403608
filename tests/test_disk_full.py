"""Full disks and failed writes: writers stop cleanly, keep every complete row, and resume.

Real filesystems, not mocked errors: ``small_fs`` (conftest) mounts a tiny tmpfs, a filler
file leaves an exact number of free pages, and every writer that is to fail runs in its
own process, so that a crash (issue 8: exit 139 after a failed write) is seen as one.

tmpfs allocates whole pages, and a store's rows go to disk one after another at the end
of the file (the chunk index is built when the store is made; isskit/store.py). So the
chunk offsets of a reference store, written where there is room, say how many pages hold
the empty store and each prefix of its rows: leaving exactly those pages free makes the
write of a chosen row fail, provided that row's chunk is larger than a page (checked).
The reference for the labels is the same write made with room to spare.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from isskit.store import open_for_writing, open_store

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "cli"),
                                                     str(REPO / "tests")])}
FS_BYTES = 1 << 20


def _page(where: Path) -> int:
    return os.statvfs(where).f_frsize


def _pages(nbytes: int, page: int) -> int:
    return -(-int(nbytes) // page)


def _leave_free(where: Path, pages: int) -> None:
    """Grow or shrink ``where/.filler`` until exactly ``pages`` pages are free."""
    page = _page(where)
    filler = where / ".filler"
    have = filler.stat().st_size if filler.exists() else 0
    want = have + os.statvfs(where).f_bavail * page - pages * page
    assert want >= 0, f"cannot leave {pages} pages free on a filesystem this small"
    if want > have:
        with filler.open("ab") as fh:
            fh.write(bytes(want - have))  # written, not truncated up: tmpfs would not allocate
    else:
        os.truncate(filler, want)
    assert os.statvfs(where).f_bavail == pages


def _chunk_extents(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each row's first chunk, as HDF5 reports them."""
    with h5py.File(path, "r") as f:
        ds = f["labels"]
        return [(info.byte_offset, info.size)
                for info in (ds.id.get_chunk_info_by_coord((i, 0)) for i in range(ds.shape[0]))]


def _no_crash(res: subprocess.CompletedProcess, rc: int = 0) -> str:
    """The process ended through Python (no signal), printed no traceback nor HDF5 trace."""
    assert res.returncode not in (139, -11), f"crashed (rc {res.returncode}):\n{res.stderr}"
    assert res.returncode == rc, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "HDF5-DIAG" not in res.stderr and "file write failed" not in res.stderr, res.stderr
    return res.stderr


def _left(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name != ".filler")


# ------------------------------------------------------------------ the library writer

N = 20_000
N_ROWS = 5


def _row(i: int) -> np.ndarray:
    # Ten uniformly drawn labels: about 0.6 compressed bytes per sample, three pages a row.
    return np.random.default_rng([12345, i]).integers(0, 10, N).astype(np.uint16)


_ARGS = dict(image_index=list(range(100, 100 + N_ROWS)), true_label=[0] * N_ROWS,
             samples_per_image=N, attrs=dict(sigma=0.25, num_classes=10, seed=3))

# Writes rows 0.. one at a time, then closes; prints what happened as one JSON line.
# "fill-before-close" fills the disk after the last row, so that only the close is left.
_WRITER = textwrap.dedent(
    f"""
    import json, os, sys
    import numpy as np
    from isskit.store import open_for_writing
    path, mode = sys.argv[1], sys.argv[2]
    N, ARGS = {N}, {_ARGS!r}
    out = dict(error=None)
    try:
        with open_for_writing(path, **ARGS) as w:
            for i in range(len(ARGS["image_index"])):
                w.write_row(i, np.random.default_rng([12345, i]).integers(0, 10, N), 0.5)
            if mode == "fill-before-close":
                with open(os.path.join(os.path.dirname(path), ".filler"), "ab", 0) as fh:
                    try:
                        while True:
                            fh.write(bytes(4096))
                    except OSError:
                        pass
                out["free_at_close"] = os.statvfs(os.path.dirname(path)).f_bavail
    except OSError as exc:
        out.update(error=type(exc).__name__, errno=exc.errno, filename=exc.filename,
                   message=str(exc))
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[tuple[int, int]]]:
    path = tmp_path_factory.mktemp("ref") / "s.h5"
    with open_for_writing(path, **_ARGS) as w:
        for i in range(N_ROWS):
            w.write_row(i, _row(i), 0.5)
    return path, _chunk_extents(path)


def _write_in_child(path: Path, mode: str = "rows") -> dict:
    res = subprocess.run([sys.executable, "-c", _WRITER, str(path), mode], env=ENV,
                         capture_output=True, text=True, timeout=300)
    _no_crash(res)
    return json.loads(res.stdout)


def _resume_and_compare(path: Path, reference: Path) -> None:
    with open_for_writing(path, **_ARGS) as w:
        for i in w.pending():
            w.write_row(int(i), _row(int(i)), 0.5)
    with open_store(path) as s, open_store(reference) as ref:
        assert s.complete.all()
        assert s.labels().tobytes() == ref.labels().tobytes()


# Free pages: the lock file takes one; "create" leaves one page too few for the empty store;
# "row k" leaves exactly the pages of the empty store and rows 0..k-1.
LEVELS = ["lock", "create", "row 0", "row 2", f"row {N_ROWS - 1}"]


@pytest.mark.parametrize("level", LEVELS)
def test_full_disk_stops_cleanly_keeps_complete_rows_and_resumes(small_fs, reference, level):
    ref_path, extents = reference
    where = small_fs(FS_BYTES)
    page = _page(where)
    path = where / "s.h5"
    if level == "lock":
        free = 0
    elif level == "create":
        free = 1 + _pages(extents[0][0], page) - 1
    else:
        k = int(level.split()[1])
        assert extents[k][1] > page, "the failing row must need a page of its own"
        free = 1 + _pages(extents[k][0], page)
    _leave_free(where, free)

    out = _write_in_child(path)

    assert out["error"] == "StoreWriteError" and out["errno"] == errno.ENOSPC, out
    msg = out["message"]
    assert _left(where) == ([] if level in ("lock", "create") else ["s.h5"])  # no lock, no tmp
    if level == "lock":
        assert out["filename"] == f"{path}.lock"
        assert msg == (f"cannot write the lock file {path}.lock: No space left on device;"
                       f" free space in {where} (0 B free now)")
    elif level == "create":
        # Nothing written yet: the estimate is the uncompressed size, 2 bytes a sample, less
        # what is free (all but the lock file's page once the temporary file is gone), plus
        # a margin of 1 MB.
        assert out["filename"] == str(path)
        now = (free - 1) * page
        more = 2 * N * N_ROWS - now + 1e6
        assert msg == (f"cannot write the new stream store {path}: No space left on device;"
                       f" free at least {np.ceil(more / 1e5) / 10:.1f} MB in {where}"
                       f" ({now / 1e3:.1f} kB free now; {N * N_ROWS:,} samples to write at up"
                       " to 2 bytes per sample)")
    else:
        k = int(level.split()[1])
        assert out["filename"] == str(path)
        assert msg.startswith(f"cannot write {path} row {k}: No space left on device; free"
                              f" at least ")
        assert f" MB in {where} (" in msg
        left = (N_ROWS - k) * N
        assert (f"{left:,} samples still to write at the " if k else
                f"{left:,} samples to write at up to 2 bytes per sample") in msg
        assert msg.endswith(f"; the {k} complete row(s) are kept; the other {N_ROWS - k} are"
                            " redone when the store is opened for writing again")
        with open_store(path) as s, open_store(ref_path) as ref:  # opens: not damaged
            assert s.complete.tolist() == [True] * k + [False] * (N_ROWS - k)
            assert s.labels(slice(0, k)).tobytes() == ref.labels(slice(0, k)).tobytes()

    (where / ".filler").unlink()
    _resume_and_compare(path, ref_path)


def test_close_on_a_full_disk_loses_nothing(small_fs, reference):
    ref_path, _ = reference
    where = small_fs(FS_BYTES)
    out = _write_in_child(where / "s.h5", "fill-before-close")
    assert out == {"error": None, "free_at_close": 0}
    assert _left(where) == ["s.h5"]
    with open_store(where / "s.h5") as s, open_store(ref_path) as ref:
        assert s.complete.all() and s.labels().tobytes() == ref.labels().tobytes()


_BAD_FD = textwrap.dedent(
    f"""
    import json, os, sys
    import numpy as np
    from isskit.store import open_for_writing
    path, N, ARGS = sys.argv[1], {N}, {_ARGS!r}
    w = open_for_writing(path, **ARGS)
    w.write_row(0, np.random.default_rng([12345, 0]).integers(0, 10, N), 0.5)
    # From now on HDF5 writes to a read-only descriptor of the store: every write fails
    # with EBADF, as any I/O error would, and the close has dirty metadata to write.
    ro = os.open(path, os.O_RDONLY)
    os.dup2(ro, w._f.id.get_vfd_handle())
    try:
        w.write_row(1, np.random.default_rng([12345, 1]).integers(0, 10, N), 0.5)
    except OSError as exc:
        print(json.dumps(dict(error=type(exc).__name__, errno=exc.errno, message=str(exc))))
    w.close()
    """
)


def test_any_write_failure_is_a_clean_error(tmp_path, reference):
    path = tmp_path / "s.h5"
    res = subprocess.run([sys.executable, "-c", _BAD_FD, str(path)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    _no_crash(res)
    out = json.loads(res.stdout)
    assert out["error"] == "StoreWriteError" and out["errno"] == errno.EBADF, out
    assert out["message"].startswith(f"cannot write {path} row 1: Bad file descriptor;")
    assert _left(tmp_path) == ["s.h5"]  # the lock went with the writer
    with open_store(path) as s, open_store(reference[0]) as ref:
        assert s.complete.tolist() == [True] + [False] * (N_ROWS - 1)
        assert s.labels(0).tobytes() == ref.labels(0).tobytes()
    _resume_and_compare(path, reference[0])


# ------------------------------------------------------------------ isskit sample

# The embedded default model, 30 ms slower per forward pass (tests/sampling_helpers.py),
# in 9 batches a row: every row takes over the 0.25 s after which isskit.sampling writes
# it on its own, so the rows reach the store one by one as they do in the library test.
# Images 18, 20 and 0 have the least compressible rows of the first 30 digits (the model
# is least sure of them): 20,000 labels take more than a page each (checked below).
SAMPLE = ["sample", "--model", "sampling_helpers:slow_default", "--sigma", "0.25", "--N",
          "20000", "--batch", "2223", "--indices", "18,20,0", "--no-progress"]


def _sample(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isskit_cli.main", *SAMPLE, "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.torch
def test_sample_on_a_full_disk_exits_1_and_resumes_to_the_same_store(small_fs, tmp_path):
    from isskit_cli.main import cli

    ref = tmp_path / "ref.h5"
    sys.path.insert(0, str(REPO / "tests"))
    try:
        res = CliRunner().invoke(cli, [*SAMPLE, "--out", str(ref)])
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert res.exit_code == 0, res.output
    extents = _chunk_extents(ref)

    where = small_fs(FS_BYTES)
    page = _page(where)
    out = where / "s.h5"
    assert extents[0][1] > page and extents[2][1] > page, "rows 0 and 2 must fail on their own"

    # Room for the lock file and the empty store only: the first row fails. (No room for
    # the lock file at all: test_merge_... and test_import_log_... below.)
    _leave_free(where, 1 + _pages(extents[0][0], page))
    err = _no_crash(_sample(out), rc=1)
    assert f"cannot write {out} row 0: No space left on device; free at least" in err
    assert "the 0 complete row(s) are kept" in err and "run the same command again" in err
    assert _left(where) == ["s.h5"]
    with open_store(out) as s:
        assert not s.complete.any()

    # Room for rows 0 and 1 (the store holds the failed row's partial chunk: count what
    # it takes now): the last row fails.
    used = os.stat(out).st_blocks * 512 // page
    _leave_free(where, 1 + _pages(extents[2][0], page) - used)
    err = _no_crash(_sample(out), rc=1)
    assert f"cannot write {out} row 2: No space left on device" in err
    assert "the 2 complete row(s) are kept" in err and _left(where) == ["s.h5"]
    with open_store(out) as s:
        assert s.complete.tolist() == [True, True, False]

    (where / ".filler").unlink()
    res = _sample(out)
    _no_crash(res)
    assert "1 images sampled, 2 already complete, of 3" in res.stdout
    with open_store(out) as s, open_store(ref) as r:
        assert s.complete.all()
        assert s.labels().tobytes() == r.labels().tobytes()
        assert s.attrs["model"] == r.attrs["model"]
    assert _left(where) == ["s.h5"]


# ------------------------------------------------------------------ merge and import-log


def _run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isskit_cli.main", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def rank_stores(tmp_path_factory) -> list[Path]:
    from isskit.studies.synthetic import write_synthetic_store

    folder = tmp_path_factory.mktemp("ranks")
    paths = []
    for rank in (0, 1):
        index = np.arange(rank, 12, 2)
        paths.append(
            write_synthetic_store(
                folder / f"r{rank}.h5",
                np.linspace(0.3, 0.9, index.size),
                predicted=index % 10,
                true_label=index % 10,
                samples_per_image=N,
                num_classes=10,
                sigma=0.5,
                seed=1,
                image_index=index,
                attrs={"rank": rank, "world_size": 2},
            )
        )
    return paths


@pytest.mark.parametrize("room", ["none", "empty store"])
def test_merge_on_a_full_disk_exits_1_and_leaves_nothing(small_fs, rank_stores, tmp_path, room):
    from isskit.store import merge_stores

    merge_stores(tmp_path / "ref.h5", rank_stores)
    where = small_fs(FS_BYTES)
    page = _page(where)
    _leave_free(where, 0 if room == "none" else 1 + _pages(_chunk_extents(tmp_path / "ref.h5")
                                                           [0][0], page))
    out = where / "m.h5"
    err = _no_crash(_run_cli("merge", out, *rank_stores, "--no-progress"), rc=1)
    assert "No space left on device" in err and str(where) in err
    # merge builds its output under a temporary name (published only when whole): the
    # message names OUT, then what failed inside it
    assert f"cannot write OUT {out}" in err
    assert ("the lock file" if room == "none" else " row ") in err
    assert _left(where) == []  # neither the half-merged store nor its lock


@pytest.mark.parametrize("room", ["none", "empty store"])
def test_import_log_on_a_full_disk_exits_1_with_no_lock_left(small_fs, published, tmp_path,
                                                             room):
    from isskit.logs import import_log

    log = published / "certify-logs" / "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.50"
    import_log(log, tmp_path / "ref.h5", samples_per_image=3000)
    where = small_fs(FS_BYTES)
    page = _page(where)
    _leave_free(where, 0 if room == "none" else 1 + _pages(_chunk_extents(tmp_path / "ref.h5")
                                                           [0][0], page))
    out = where / "c.h5"
    err = _no_crash(_run_cli("import-log", log, "--out", out, "--samples", 3000), rc=1)
    assert "No space left on device" in err and str(where) in err
    assert not (where / "c.h5.lock").exists()


# ------------------------------------------------------------------ stale lock through the CLI


@pytest.mark.torch
def test_sample_takes_over_a_stale_lock_with_a_note(tmp_path):
    import socket
    import warnings

    from isskit_cli.main import cli

    from isskit.store import StaleLockWarning

    out = tmp_path / "s.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that ran and is gone
    Path(f"{out}.lock").write_text(f"pid {pid} on {socket.gethostname()}\n")
    with warnings.catch_warnings():
        # As outside pytest (whose filter turns warnings into errors): shown, once.
        warnings.simplefilter("default", StaleLockWarning)
        res = CliRunner().invoke(cli, ["sample", "--N", "50", "--indices", "0",
                                       "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [
        f"note: taking over stale lock left by pid {pid} on {socket.gethostname()} (that"
        f" process is gone); lock file {out}.lock"
    ]
    assert "1 images sampled" in res.stdout and not Path(f"{out}.lock").exists()
