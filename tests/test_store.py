"""The HDF5 stream store: round trip, schema validation, resume, locking, kill safety, merge."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from isskit.store import (
    RUN_PARAMS,
    SCHEMA_VERSION,
    StaleLockWarning,
    StoreError,
    StoreLockedError,
    StoreMismatchError,
    merge_stores,
    open_for_writing,
    open_store,
)

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}


def _attrs(**over):
    attrs = dict(
        sigma=0.25,
        num_classes=10,
        seed=7,
        dataset="cifar10-test",
        model="toy sha256=abc",
        noise="gaussian",
        device="cpu",
        torch_version="2.14.1",
        batch_size=400,
    )
    attrs.update(over)
    return attrs


def _expected(row: int, N: int, num_classes: int = 10) -> np.ndarray:
    # Labels for a row that any process can recompute: seeded by the row.
    rng = np.random.default_rng([12345, row])
    return rng.integers(0, num_classes, N).astype(np.uint16)


def _make(path, n=5, N=1000, rows=None, image_index=None, **over):
    image_index = np.arange(100, 100 + n) if image_index is None else np.asarray(image_index)
    true_label = image_index % 10
    with open_for_writing(
        path,
        image_index=image_index,
        true_label=true_label,
        samples_per_image=N,
        attrs=_attrs(**over),
    ) as w:
        for i in range(n) if rows is None else rows:
            w.write_row(i, _expected(int(image_index[i]), N), seconds=0.5 + i)
    return image_index, true_label


# ------------------------------------------------------------------ round trip


def test_round_trip_every_dataset_and_attr(tmp_path):
    path = tmp_path / "s.h5"
    n, N = 7, 3000
    index = np.array([40, 0, 20, 60, 80, 100, 120])
    truth = np.array([3, 1, 4, 1, 5, 9, 2])
    labels = np.stack([_expected(i, N) for i in index])
    seconds = np.linspace(0.1, 0.7, n)
    with open_for_writing(
        path, image_index=index, true_label=truth, samples_per_image=N, attrs=_attrs()
    ) as w:
        assert w.n_images == n and w.samples_per_image == N
        assert not w.complete.any() and list(w.pending()) == list(range(n))
        w.write_row(0, labels[0], seconds[0])
        w.write_rows(1, labels[1:5], seconds[1:5])
        w.write_row(5, labels[5].astype(np.int64), seconds[5])  # any integer dtype is fine
        assert list(w.pending()) == [6]
    with open_store(path) as s:
        assert (s.n_images, s.samples_per_image) == (n, N)
        np.testing.assert_array_equal(s.labels()[:6], labels[:6])
        np.testing.assert_array_equal(s.labels()[6], np.zeros(N))  # never written
        np.testing.assert_array_equal(s.image_index, index)
        np.testing.assert_array_equal(s.true_label, truth)
        np.testing.assert_array_equal(s.complete, [True] * 6 + [False])
        np.testing.assert_array_equal(s.seconds[:6], seconds[:6])
        assert s.seconds[6] == 0
        for key, value in _attrs().items():
            assert s.attrs[key] == value, key
        assert s.attrs["schema_version"] == SCHEMA_VERSION == 2
        np.testing.assert_array_equal(s.drawn[:6], [s.samples_per_image] * 6)
        assert s.attrs["samples_per_image"] == N
        assert s.attrs["isskit_version"] and s.attrs["created_at"]
        assert s.sigma == 0.25 and s.num_classes == 10
        assert s.seconds_per_sample() == pytest.approx(seconds[:6].sum() / (6 * N))
        assert s.sha256() == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    # The physical layout DESIGN.md promises.
    with h5py.File(path, "r") as f:
        lab = f["labels"]
        assert lab.dtype == np.uint16 and lab.chunks == (1, N) and lab.compression == "gzip"
        assert f["image_index"].dtype == np.int64 and f["true_label"].dtype == np.int64
        assert f["complete"].dtype == np.bool_ and f["seconds"].dtype == np.float64


def test_long_rows_are_chunked_along_samples(tmp_path):
    path = tmp_path / "s.h5"
    with open_for_writing(
        path, image_index=[0], true_label=[0], samples_per_image=300_000, attrs=_attrs()
    ):
        pass
    with h5py.File(path, "r") as f:
        assert f["labels"].chunks == (1, 131072)


def test_labels_slices_prefixes_and_fancy_rows(tmp_path):
    path = tmp_path / "s.h5"
    index, _ = _make(path, n=6, N=500)
    full = np.stack([_expected(i, 500) for i in index])
    with open_store(path) as s:
        np.testing.assert_array_equal(s.labels(), full)
        np.testing.assert_array_equal(s.labels(2), full[2])
        np.testing.assert_array_equal(s.labels(-1, 10), full[-1, :10])
        np.testing.assert_array_equal(s.labels(slice(1, 4), 37), full[1:4, :37])
        np.testing.assert_array_equal(s.labels(samples=slice(100, 200)), full[:, 100:200])
        rows = np.array([4, 0, 4, 2])
        np.testing.assert_array_equal(s.labels(rows, 50), full[rows, :50])
        assert s.labels(np.array([], dtype=int), 5).shape == (0, 5)
        with pytest.raises(StoreError, match="samples"):
            s.labels(0, 501)
        with pytest.raises(StoreError, match="outside"):
            s.labels(np.array([6]))


@pytest.mark.parametrize("threads", [0, 1, 3])
@pytest.mark.parametrize("max_bytes", [1, 2000, 4000, 10**9])
def test_iter_chunks_covers_every_row_in_bounded_blocks(tmp_path, max_bytes, threads):
    path = tmp_path / "s.h5"
    index, _ = _make(path, n=9, N=1000)
    full = np.stack([_expected(i, 1000) for i in index])
    with open_store(path) as s:
        blocks = list(s.iter_chunks(max_bytes, threads=threads))
        starts = [b[0] for b in blocks]
        assert starts == sorted(starts) and starts[0] == 0
        for _, block in blocks:
            assert block.dtype == np.uint16
            assert block.shape[0] == 1 or block.nbytes <= max_bytes
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), full)
        pre = np.concatenate([b for _, b in s.iter_chunks(max_bytes, samples=77, threads=threads)])
        np.testing.assert_array_equal(pre, full[:, :77])
        part = list(s.iter_chunks(max_bytes, rows=slice(3, 7), threads=threads))
        assert part[0][0] == 3
        np.testing.assert_array_equal(np.concatenate([b for _, b in part]), full[3:7])


def test_threaded_reads_equal_hdf5_reads_on_multi_chunk_rows(tmp_path):
    # 300,000 samples: three chunks per row, the last one partial; row 2 never written.
    path = tmp_path / "s.h5"
    N = 300_000
    index, _ = _make(path, n=4, N=N, rows=[0, 1, 3])
    with open_store(path) as s:
        for k in (N, 131_072, 200_001, 5):
            slow = np.concatenate([b for _, b in s.iter_chunks(N * 4, samples=k, threads=0)])
            for threads in (1, 4):
                fast = [b for _, b in s.iter_chunks(N * 4, samples=k, threads=threads)]
                np.testing.assert_array_equal(np.concatenate(fast), slow)
            np.testing.assert_array_equal(slow[0], _expected(int(index[0]), N)[:k])
            assert not slow[2].any()


def test_stores_with_other_filters_are_read_through_hdf5(tmp_path):
    path = tmp_path / "s.h5"
    index, _ = _make(path, n=3, N=100)
    full = np.stack([_expected(i, 100) for i in index])
    with h5py.File(path, "r+") as f:  # same data, shuffled and lzf-compressed
        del f["labels"]
        f.create_dataset("labels", data=full, chunks=(3, 50), shuffle=True, compression="lzf")
    with open_store(path) as s:
        assert not s._raw_chunks_readable()
        got = np.concatenate([b for _, b in s.iter_chunks(300, threads=4)])
        np.testing.assert_array_equal(got, full)


def test_top_class_frequency_matches_per_row_bincount(tmp_path):
    path = tmp_path / "s.h5"
    N = 2000
    rng = np.random.default_rng(3)
    rows = [
        rng.choice(10, N, p=np.r_[0.9, np.full(9, 0.1 / 9)]),
        rng.integers(0, 10, N),
        np.full(N, 7),
    ]
    with open_for_writing(
        path,
        image_index=[0, 1, 2, 3],
        true_label=[0, 0, 7, 1],
        samples_per_image=N,
        attrs=_attrs(),
    ) as w:
        for i, r in enumerate(rows):
            w.write_row(i, r, 1.0)
    with open_store(path) as s:
        freq = s.top_class_frequency(max_bytes=4000)
    expect = [np.bincount(r, minlength=10).max() / N for r in rows]
    np.testing.assert_allclose(freq[:3], expect)
    assert freq[2] == 1.0 and np.isnan(freq[3])


def test_columns_round_trip_unknown_seconds_and_resume_check(tmp_path):
    path = tmp_path / "s.h5"
    args = dict(image_index=[5, 6], true_label=[0, 1], samples_per_image=10, attrs=_attrs())
    p_A = np.array([0.9, 0.55])
    with open_for_writing(path, columns={"p_A": p_A, "kA": [9, 5]}, **args) as w:
        w.write_rows_at([1, 0], np.zeros((2, 10), dtype=np.uint16), [float("nan"), 1.0])
    with open_store(path) as s:
        np.testing.assert_array_equal(s.columns["p_A"], p_A)
        assert s.columns["kA"].dtype == np.int64 and list(s.columns["kA"]) == [9, 5]
        assert np.isnan(s.seconds[1]) and np.isnan(s.seconds_per_sample())
    with pytest.raises(StoreMismatchError, match=r"column p_A: stored 2 values \[0.9, 0.55\]"):
        open_for_writing(path, columns={"p_A": [0.9, 0.5], "kA": [9, 5]}, **args)
    with pytest.raises(StoreMismatchError, match=r"column kA: stored 2 values .*, given none"):
        open_for_writing(path, columns={"p_A": p_A}, **args)
    with pytest.raises(StoreError, match="column q must hold 2 numbers"):
        open_for_writing(tmp_path / "t.h5", columns={"q": [1.0]}, **args)


# ------------------------------------------------------------------ bad writes


def test_write_row_validates_labels(tmp_path):
    path = tmp_path / "s.h5"
    with open_for_writing(
        path, image_index=[0, 1], true_label=[0, 1], samples_per_image=10, attrs=_attrs()
    ) as w:
        with pytest.raises(StoreError, match="label 10 outside"):
            w.write_row(0, np.full(10, 10), 1.0)
        with pytest.raises(StoreError, match="label -1 outside"):
            w.write_row(0, np.full(10, -1), 1.0)
        with pytest.raises(StoreError, match="shape"):
            w.write_row(0, np.zeros(9, dtype=np.uint16), 1.0)
        with pytest.raises(StoreError, match="integers"):
            w.write_row(0, np.zeros(10), 1.0)
        with pytest.raises(StoreError, match="outside"):
            w.write_row(2, np.zeros(10, dtype=np.uint16), 1.0)
        with pytest.raises(StoreError, match="seconds"):
            w.write_row(0, np.zeros(10, dtype=np.uint16), -1.0)
        with pytest.raises(StoreError, match="seconds"):
            w.write_row(0, np.zeros(10, dtype=np.uint16), float("inf"))
        with pytest.raises(StoreError, match="repeat"):
            w.write_rows_at([1, 1], np.zeros((2, 10), dtype=np.uint16), [1.0, 1.0])
        assert not w.complete.any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(attrs=_attrs(sigma=-1)), "sigma"),
        (dict(attrs={"sigma": 0.5}), "num_classes"),
        (dict(attrs=_attrs(num_classes=70000)), "num_classes"),
        (dict(samples_per_image=0), "samples_per_image"),
        (dict(image_index=[1, 1]), "repeats"),
        (dict(true_label=[0, 10]), "true_label"),
        (dict(true_label=[0]), "true_label"),
        (dict(attrs=_attrs(model={"a": 1})), "model"),
    ],
)
def test_open_for_writing_rejects_bad_arguments(tmp_path, kwargs, match):
    args = dict(image_index=[0, 1], true_label=[0, 1], samples_per_image=10, attrs=_attrs())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        open_for_writing(tmp_path / "s.h5", **args)
    assert not (tmp_path / "s.h5").exists()


def test_unwritable_directory_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_for_writing(
            tmp_path / "nope" / "s.h5",
            image_index=[0],
            true_label=[0],
            samples_per_image=5,
            attrs=_attrs(),
        )


# ------------------------------------------------------------------ schema validation


def test_missing_file(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "absent.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("idx\tlabel\n0\t3\n")
    with pytest.raises(StoreError, match="not an HDF5 file") as err:
        open_store(path)
    assert str(path) in str(err.value)


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(StoreError, match="not an isskit stream store"):
        open_store(path)


@pytest.mark.parametrize("cut", [0.02, 0.5, 0.98])
def test_truncated_file(tmp_path, cut):
    path = tmp_path / "s.h5"
    _make(path, n=4, N=20_000)
    data = path.read_bytes()
    path.write_bytes(data[: max(8, int(len(data) * cut))])
    with pytest.raises(StoreError) as err:
        open_store(path)
    assert str(path) in str(err.value)


def test_newer_schema_version(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n=2, N=10)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 3
    with pytest.raises(StoreError, match="schema version 3, newer than the 2"):
        open_store(path)


def _as_schema_1(path):
    """Turn a store into what isskit wrote before /drawn (schema version 1)."""
    with h5py.File(path, "r+") as f:
        del f["drawn"]
        f.attrs["schema_version"] = 1


def test_schema_1_reads_as_full_rows_and_stays_schema_1(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n=3, N=10)
    _as_schema_1(path)
    with open_store(path) as s:
        assert s.schema_version == 1
        np.testing.assert_array_equal(s.drawn, [10, 10, 10])
    with open_for_writing(path, image_index=[100, 101, 102], true_label=[0, 1, 2],
                          samples_per_image=10, attrs=_attrs()) as w:
        with pytest.raises(StoreError, match="schema-1 store, which holds full rows"):
            w.write_rows_at([0], np.zeros((1, 10), int), [1.0], drawn=[4])
        w.write_rows_at([0], np.ones((1, 10), int), [1.0])
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == 1 and "drawn" not in f


def test_drawn_round_trip_and_bad_values(tmp_path):
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=[5, 6], true_label=[0, 1], samples_per_image=10,
                          attrs=_attrs()) as w:
        w.write_rows_at([1, 0], np.ones((2, 10), int), [1.0, 2.0], drawn=[3, 10])
        with pytest.raises(StoreError, match="drawn must be 1 counts in"):
            w.write_rows_at([0], np.ones((1, 10), int), [1.0], drawn=[11])
        np.testing.assert_array_equal(w.drawn, [10, 3])
        np.testing.assert_array_equal(w.read_row(1, 3), [1, 1, 1])
    with open_store(path) as s:
        np.testing.assert_array_equal(s.drawn, [10, 3])
    with h5py.File(path, "r+") as f:
        f["drawn"][0] = 12
    with pytest.raises(StoreError, match=r"/drawn of row 0 is 12, outside \[0, N=10\]"):
        open_store(path)
    with h5py.File(path, "r+") as f:
        del f["drawn"]
    with pytest.raises(StoreError, match=r"schema version 2.*lacks dataset drawn"):
        open_store(path)


def test_missing_dataset_and_attr(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n=2, N=10)
    with h5py.File(path, "r+") as f:
        del f["seconds"]
    with pytest.raises(StoreError, match=r"lacks dataset.*seconds"):
        open_store(path)
    _make(tmp_path / "t.h5", n=2, N=10)
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        del f.attrs["sigma"]
    with pytest.raises(StoreError, match=r"lacks root attr.*sigma"):
        open_store(tmp_path / "t.h5")


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("labels", np.zeros((2, 10), dtype=np.int32), "dtype int32, expected uint16"),
        ("labels", np.zeros(20, dtype=np.uint16), "expected 2 dimension"),
        ("complete", np.zeros(3, dtype=bool), r"expected \(2,\)"),
        ("image_index", np.zeros(2, dtype=np.float64), "dtype float64, expected int64"),
        ("labels", np.zeros((2, 11), dtype=np.uint16), "samples_per_image"),
    ],
)
def test_wrong_shapes_and_dtypes(tmp_path, name, data, match):
    path = tmp_path / "s.h5"
    _make(path, n=2, N=10)
    with h5py.File(path, "r+") as f:
        del f[name]
        f[name] = data
    with pytest.raises(StoreError, match=match):
        open_store(path)


# ------------------------------------------------------------------ resume and mismatch


def test_resume_skips_complete_rows(tmp_path):
    path = tmp_path / "s.h5"
    index, truth = _make(path, n=6, N=800, rows=[0, 2, 5])
    with open_for_writing(
        path, image_index=index, true_label=truth, samples_per_image=800, attrs=_attrs()
    ) as w:
        assert list(w.pending()) == [1, 3, 4]
        for i in w.pending():
            w.write_row(i, _expected(int(index[i]), 800), 2.0)
        assert len(w.pending()) == 0
    with open_store(path) as s:
        assert s.complete.all()
        np.testing.assert_array_equal(s.labels(), np.stack([_expected(i, 800) for i in index]))
        np.testing.assert_array_equal(s.seconds, [0.5, 2.0, 2.5, 2.0, 2.0, 5.5])


def test_resume_with_other_parameters_is_refused_naming_each(tmp_path):
    path = tmp_path / "s.h5"
    index, truth = _make(path, n=3, N=50, rows=[0])
    before = path.read_bytes()
    with pytest.raises(StoreMismatchError) as err:
        open_for_writing(
            path,
            image_index=[100, 101, 103],
            true_label=truth,
            samples_per_image=60,
            attrs=_attrs(sigma=0.5, seed=8, model="other"),
        )
    msg = str(err.value)
    for part in (
        "sigma: stored 0.25, given 0.5",
        "seed: stored 7, given 8",
        "samples_per_image: stored 50, given 60",
        "model: stored 'toy sha256=abc'",
        "image_index: stored 3 values [100, 101, 102]",
    ):
        assert part in msg
    assert "dataset" not in msg and "noise" not in msg
    assert path.read_bytes() == before  # untouched
    for key in RUN_PARAMS:  # each run parameter on its own is enough to refuse
        value = {"samples_per_image": None}.get(key, "changed")
        if key == "samples_per_image":
            kw = dict(samples_per_image=51, attrs=_attrs())
        elif key in ("sigma", "num_classes"):
            kw = dict(samples_per_image=50, attrs=_attrs(**{key: 20}))
        else:
            kw = dict(samples_per_image=50, attrs=_attrs(**{key: value}))
        with pytest.raises(StoreMismatchError, match=key):
            open_for_writing(path, image_index=index, true_label=truth, **kw)
    # The lock was released after each refusal: a matching resume works.
    with open_for_writing(
        path, image_index=index, true_label=truth, samples_per_image=50, attrs=_attrs()
    ) as w:
        assert list(w.pending()) == [1, 2]


def test_rewriting_a_complete_row_keeps_it_consistent(tmp_path):
    path = tmp_path / "s.h5"
    index, truth = _make(path, n=2, N=100)
    with open_for_writing(
        path, image_index=index, true_label=truth, samples_per_image=100, attrs=_attrs()
    ) as w:
        w.write_row(1, np.full(100, 3), 9.0)
    with open_store(path) as s:
        np.testing.assert_array_equal(s.labels(1), np.full(100, 3))
        assert s.complete.all() and s.seconds[1] == 9.0


# ------------------------------------------------------------------ locking and kills

_HOLDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from isskit.store import open_for_writing
    w = open_for_writing(sys.argv[1], image_index=[0, 1], true_label=[0, 1],
                         samples_per_image=10, attrs=dict(sigma=0.25, num_classes=10))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _start(code: str, *args) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        _, err = proc.communicate()
        raise AssertionError(f"helper process failed: {line} {err}")
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipes


def test_second_writer_in_another_process_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    proc = _start(_HOLDER, path)
    try:
        with pytest.raises(StoreLockedError) as err:
            open_for_writing(
                path,
                image_index=[0, 1],
                true_label=[0, 1],
                samples_per_image=10,
                attrs=dict(sigma=0.25, num_classes=10),
            )
        assert str(path) in str(err.value) and f"pid {proc.pid}" in str(err.value)
        # Readers are not refused while the writer works.
        with open_store(path) as s:
            assert s.n_images == 2
    finally:
        _kill(proc)


def test_second_writer_in_same_process_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    args = dict(image_index=[0], true_label=[0], samples_per_image=10, attrs=_attrs())
    with open_for_writing(path, **args):
        with pytest.raises(StoreLockedError, match="being written"):
            open_for_writing(path, **args)
    with open_for_writing(path, **args) as w:  # released on close
        assert w.n_images == 1
    assert not Path(str(path) + ".lock").exists()


def test_stale_lock_of_a_killed_writer_is_taken_over_with_a_note(tmp_path):
    path = tmp_path / "s.h5"
    lock = Path(str(path) + ".lock")
    proc = _start(_HOLDER, path)
    _kill(proc)  # reaped: its pid is gone
    assert lock.read_text() == f"pid {proc.pid} on {socket.gethostname()}\n"  # left behind
    note = rf"stale lock left by pid {proc.pid} on \S+ \(that process is gone\)"
    with pytest.warns(StaleLockWarning, match=note), open_for_writing(
        path,
        image_index=[0, 1],
        true_label=[0, 1],
        samples_per_image=10,
        attrs=dict(sigma=0.25, num_classes=10),
    ) as w:
        assert list(w.pending()) == [0, 1]
        assert lock.read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
    assert not lock.exists()


def test_lock_line_of_a_live_pid_that_holds_no_lock_is_taken_over(tmp_path):
    # A pid that was reused (here: our parent, alive, holding no flock): the file is stale
    # all the same, and the note does not claim the process is gone.
    path = tmp_path / "s.h5"
    Path(str(path) + ".lock").write_text(f"pid {os.getppid()} on {socket.gethostname()}\n")
    with pytest.warns(StaleLockWarning) as record, open_for_writing(
        path, image_index=[0], true_label=[0], samples_per_image=5, attrs=_attrs()
    ):
        pass
    assert [str(r.message).split(";")[0] for r in record] == [
        f"taking over stale lock left by pid {os.getppid()} on {socket.gethostname()}"
    ]


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from isskit.store import open_for_writing
    path, n, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = open_for_writing(path, image_index=np.arange(n), true_label=np.zeros(n, int),
                         samples_per_image=N, attrs=dict(sigma=0.5, num_classes=10, seed=1))
    print("ready", flush=True)
    for i in w.pending():
        labels = np.random.default_rng([12345, int(i)]).integers(0, 10, N).astype(np.uint16)
        w.write_row(int(i), labels, 0.25)
    w.close()
    print("done", flush=True)
    """
)


def test_sigkill_never_leaves_a_partial_row_marked_complete(tmp_path):
    path = tmp_path / "s.h5"
    n, N = 150, 100_000  # about a second of writing, so most kills land mid-run
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(8):
        proc = _start(_WRITER, path, n, N)
        time.sleep(rng.uniform(0.0, 0.3))
        _kill(proc)
        kills += proc.returncode == -signal.SIGKILL
        with open_store(path) as s:  # the file always opens
            done = np.flatnonzero(s.complete)
            for i in done:
                np.testing.assert_array_equal(s.labels(int(i)), _expected(int(i), N))
            assert np.all(s.seconds[done] == 0.25)
            if done.size == n:
                break
    assert kills >= 1
    out = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), str(n), str(N)],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "done" in out.stdout
    with open_store(path) as s:
        assert s.complete.all()
        np.testing.assert_array_equal(s.labels(), np.stack([_expected(i, N) for i in range(n)]))


# ------------------------------------------------------------------ merge


def _rank(path, indices, rank, world, rows=None, **over):
    indices = np.asarray(indices)
    return _make(
        path,
        n=indices.size,
        N=300,
        image_index=indices,
        rows=rows,
        rank=rank,
        world_size=world,
        device=f"cuda:{rank}",
        **over,
    )


def test_merge_sorts_rows_and_keeps_everything(tmp_path):
    all_index = np.arange(0, 50, 5)
    _rank(tmp_path / "r0.h5", all_index[0::2], 0, 2)
    _rank(tmp_path / "r1.h5", all_index[1::2], 1, 2)
    out = merge_stores(tmp_path / "m.h5", [tmp_path / "r1.h5", tmp_path / "r0.h5"])
    with open_store(out) as s:
        np.testing.assert_array_equal(s.image_index, all_index)
        np.testing.assert_array_equal(s.true_label, all_index % 10)
        assert s.complete.all()
        np.testing.assert_array_equal(s.labels(), np.stack([_expected(i, 300) for i in all_index]))
        # rows came in as 0.5 + position within their rank store
        np.testing.assert_array_equal(s.seconds, 0.5 + np.repeat(np.arange(5), 2))
        assert s.attrs["ranks"] == 2 and "rank" not in s.attrs
        assert s.attrs["device"] == '["cuda:1", "cuda:0"]'
        assert s.sigma == 0.25 and s.attrs["seed"] == 7
        assert "r0.h5" in s.attrs["merged_from"]


def test_merge_names_missing_images(tmp_path):
    _rank(tmp_path / "r0.h5", [0, 2, 4], 0, 2)
    _rank(tmp_path / "r1.h5", [1, 3, 5], 1, 2, rows=[0, 2])
    with pytest.raises(StoreError, match=r"incomplete: images 1 values \[3\] are missing"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "r0.h5", tmp_path / "r1.h5"])
    assert not (tmp_path / "m.h5").exists()


def test_merge_names_missing_rank(tmp_path):
    _rank(tmp_path / "r0.h5", [0, 3], 0, 3)
    _rank(tmp_path / "r2.h5", [2, 5], 2, 3)
    with pytest.raises(StoreError, match=r"rank\(s\) \[1\] of world_size 3 are missing"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "r0.h5", tmp_path / "r2.h5"])


def test_merge_names_doubled_images(tmp_path):
    _rank(tmp_path / "r0.h5", [0, 1, 2], 0, 2)
    _rank(tmp_path / "r1.h5", [2, 3, 1], 1, 2)
    with pytest.raises(StoreError, match=r"images 2 values \[1, 2\] are doubled"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "r0.h5", tmp_path / "r1.h5"])


def test_merge_refuses_different_runs_and_existing_output(tmp_path):
    _rank(tmp_path / "r0.h5", [0], 0, 2)
    _rank(tmp_path / "r1.h5", [1], 1, 2, sigma=0.5)
    with pytest.raises(StoreMismatchError, match="sigma"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "r0.h5", tmp_path / "r1.h5"])
    (tmp_path / "m.h5").write_text("")
    with pytest.raises(StoreError, match="already exists"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "r0.h5"])


# ------------------------------------------------------------------ widening (issue 12)


def _open(path, N, **over):
    image_index = np.arange(100, 104)
    return open_for_writing(path, image_index=image_index, true_label=image_index % 10,
                            samples_per_image=N, attrs=_attrs(**over), extend=True)


def test_widen_keeps_every_row_and_grows_N(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n=4, N=100, rows=[0, 2])
    with _open(path, 100) as w:  # a certify row: 40 of 100 drawn
        w.write_rows_at([1], np.r_[_expected(101, 40), np.zeros(60, int)][None], [0.25],
                        drawn=[40])
    with open_store(path) as s:
        before = {k: v for k, v in s.attrs.items() if k != "samples_per_image"}
    with _open(path, 250) as w:
        assert w.samples_per_image == 250
        np.testing.assert_array_equal(w.complete, [True, True, True, False])
        np.testing.assert_array_equal(w.drawn[:3], [100, 40, 100])
        np.testing.assert_array_equal(w.read_row(0, 100), _expected(100, 100))
        np.testing.assert_array_equal(w.read_row(1, 40), _expected(101, 40))
        # what a sampler does next: extend the complete rows from their drawn
        w.write_rows_at([0], np.r_[_expected(100, 100), np.ones(150, int)][None], [1.0])
    with open_store(path) as s:
        assert s.samples_per_image == 250 and s.schema_version == 2
        assert {k: v for k, v in s.attrs.items() if k != "samples_per_image"} == before
        np.testing.assert_array_equal(s.seconds[:3], [1.0, 0.25, 2.5])
        np.testing.assert_array_equal(s.labels(2), np.r_[_expected(102, 100),
                                                         np.zeros(150, np.uint16)])
        np.testing.assert_array_equal(s.labels(0)[100:], np.ones(150))
        assert s.drawn[0] == 250
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temporary left


def test_widen_refuses_what_it_cannot_grow(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n=4, N=100)
    before = path.read_bytes()
    with pytest.raises(StoreMismatchError, match="seed: stored 7, given 8"):
        _open(path, 250, seed=8)  # another run: refused before anything is rewritten
    with pytest.raises(StoreMismatchError, match="samples_per_image: stored 100, given 60"):
        _open(path, 60)  # narrower: a mismatch, as without extend
    with pytest.raises(StoreMismatchError, match="samples_per_image: stored 100, given 250"):
        open_for_writing(path, image_index=np.arange(100, 104), true_label=np.arange(4),
                         samples_per_image=250, attrs=_attrs())  # extend not asked
    _as_schema_1(path)
    before = path.read_bytes()
    with pytest.raises(StoreMismatchError, match="schema-1 store, which holds full rows of "
                                                 "N = 100 only: it cannot be extended"):
        _open(path, 250)
    assert path.read_bytes() == before


_WIDENER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from isskit.store import open_for_writing
    path, n, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    w = open_for_writing(path, image_index=np.arange(n), true_label=np.zeros(n, int),
                         samples_per_image=N, attrs=dict(sigma=0.5, num_classes=10, seed=1),
                         extend=True)
    w.close()
    print("done", flush=True)
    """
)


def test_sigkill_while_widening_leaves_the_old_store_or_the_wide_one(tmp_path):
    path = tmp_path / "s.h5"
    n, N, wide = 150, 100_000, 150_000
    subprocess.run([sys.executable, "-c", _WRITER, str(path), str(n), str(N)], env=ENV,
                   capture_output=True, text=True, check=True)
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(6):
        proc = _start(_WIDENER, path, n, wide)
        time.sleep(rng.uniform(0.05, 0.5))  # widening takes about a second here
        _kill(proc)
        with open_store(path) as s:  # the file always opens, whole, at one width or other
            assert s.complete.all()
            seen.add(s.samples_per_image)
            for i in rng.choice(n, 5, replace=False):
                got = s.labels(int(i))
                np.testing.assert_array_equal(got[:N], np.random.default_rng(
                    [12345, int(i)]).integers(0, 10, N).astype(np.uint16))
                assert not got[N:].any()
        if wide in seen:
            break
    assert N in seen and seen <= {N, wide}  # at least one kill landed mid-widening
    subprocess.run([sys.executable, "-c", _WIDENER, str(path), str(n), str(wide)], env=ENV,
                   capture_output=True, text=True, check=True)
    with open_store(path) as s:
        assert s.samples_per_image == wide and (s.drawn == N).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
