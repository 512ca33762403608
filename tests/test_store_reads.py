"""Stores are checked as they are read, not trusted (issue 8): damaged input is an error.

Every case here damages a real store file behind the writer's back (a bit flipped inside
a compressed chunk, found through HDF5's own chunk index; a label, true label, image index,
time or attr rewritten through h5py) and checks that every reader (``open_store``, the
label reads, ``replay``, ``info``, ``merge``) refuses it with a message naming the file and
the row, never a result. The reference for "is this chunk damaged" is HDF5's own deflate
filter (h5py reading the row), which inflates whole chunks and checks zlib's adler32.
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.replay import replay
from isskit.store import StoreError, merge_stores, open_store
from isskit.studies.synthetic import write_synthetic_store

# Three chunks per row: two of 131,072 samples and an edge chunk (HDF5 stores it whole).
N = 300_000
C = 131_072
P_A = np.array([0.62, 0.9, 0.99])  # a mix like the published logs': chunks of 4-60 KiB
IMAGES = np.array([10, 11, 12])


def _write(path: Path, image_index=IMAGES) -> Path:
    write_synthetic_store(path, P_A, predicted=[3, 1, 4], true_label=[3, 1, 4], samples_per_image=N,
                          num_classes=10, sigma=0.25, seed=5, image_index=image_index,
                          seconds_per_sample=1e-4)
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("reads") / "clean.h5")


@pytest.fixture(scope="module")
def clean_labels(clean) -> np.ndarray:
    with h5py.File(clean, "r") as f:  # HDF5's own reader, not isskit's
        return f["labels"][...]


def _chunk(path: Path, row: int, c0: int) -> tuple[int, int]:
    """Byte offset and size of one compressed chunk in the file, from HDF5's chunk index."""
    with h5py.File(path, "r") as f:
        info = f["labels"].id.get_chunk_info_by_coord((row, c0))
    return int(info.byte_offset), int(info.size)


def _flip(src: Path, dst: Path, offset: int, bit: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 1 << bit
    dst.write_bytes(bytes(data))
    return dst


def _hdf5_row(path: Path, row: int):
    """The row as HDF5 reads it, or None where HDF5's deflate filter refuses it."""
    try:
        with h5py.File(path, "r") as f:
            return f["labels"][row]
    except OSError:
        return None


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _usage_error(res, *needles):
    """Exit status 2, no traceback, each needle in the message."""
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)


def _names_row(row: int) -> str:
    return rf"is damaged: /labels row {row} \(image {IMAGES[row]}\)"


# ------------------------------------------------------------------ flipped bits


# (row, first sample of the chunk): a first, a middle and an edge chunk, one per row.
CHUNKS = [(0, 0), (1, C), (2, 2 * C)]
# Byte positions inside the chunk: the zlib header, the middle of the deflate data, late in
# it, the last byte before the checksum (its high bits may be padding that inflate never
# reads), and the adler32 checksum itself.
POSITIONS = {"header": 0, "middle": 0.5, "late": -6, "last": -5, "adler32": -2}


@pytest.mark.parametrize(("row", "c0"), CHUNKS)
@pytest.mark.parametrize("where", POSITIONS)
def test_a_flipped_bit_in_a_chunk_is_refused_wherever_hdf5_refuses_it(
    clean, clean_labels, tmp_path, row, c0, where
):
    offset, size = _chunk(clean, row, c0)
    pos = POSITIONS[where]
    byte = int(pos * size) if isinstance(pos, float) else (pos if pos >= 0 else size + pos)
    refused = 0
    for bit in range(8):
        path = _flip(clean, tmp_path / f"bit{bit}.h5", offset + byte, bit)
        expect = _hdf5_row(path, row)
        with open_store(path) as s:
            reads = [
                lambda s=s, t=t: np.concatenate([b for _, b in s.iter_chunks(threads=t)])[row]
                for t in (None, 1, 0)  # threads inflating, the caller inflating, HDF5 only
            ]
            reads.append(lambda s=s: s.labels(row))
            reads.append(lambda s=s: s.labels([row, 0])[0])
            for read in reads:
                if expect is None:
                    with pytest.raises(StoreError, match=_names_row(row)) as err:
                        read()
                    assert str(path) in str(err.value)
                else:  # a bit no decoder reads: the labels are the clean ones, as HDF5 says
                    np.testing.assert_array_equal(read(), expect)
                    np.testing.assert_array_equal(expect, clean_labels[row])
        refused += expect is None
    if where in ("header", "middle", "adler32"):
        # The premise: every one of these flips is damage HDF5 sees. Late in a chunk some
        # flips change nothing inflate reads (padding bits, or the distance of a match
        # inside a run of equal labels): the labels are then intact, and read as such.
        assert refused == 8


def test_a_flip_late_in_a_chunk_is_refused_by_a_prefix_read(clean, clean_labels, tmp_path):
    """The case the old reader missed: it inflated only the prefix it needed."""
    row, k = 1, 1000
    offset, size = _chunk(clean, row, 0)
    path = _flip(clean, tmp_path / "late.h5", offset + size - 6, 3)
    with h5py.File(path, "r") as f:
        raw = f["labels"].id.read_direct_chunk((row, 0))[1]
    # Inflating only the 2 * k bytes of the prefix sees nothing wrong...
    head = zlib.decompressobj().decompress(raw, 2 * k)
    np.testing.assert_array_equal(np.frombuffer(head, "<u2"), clean_labels[row, :k])
    assert _hdf5_row(path, row) is None  # ...but the chunk is damaged
    with open_store(path) as s:
        for threads in (None, 1, 0):
            with pytest.raises(StoreError, match=_names_row(row) + ".*samples 0..131072"
                               if threads else _names_row(row)):
                list(s.iter_chunks(samples=k, threads=threads))
        with pytest.raises(StoreError, match=_names_row(row)):
            s.labels(slice(None), k)
        # A prefix that stays out of the damaged row's chunk is still read, and right.
        np.testing.assert_array_equal(s.labels(0, k), clean_labels[0, :k])


@pytest.fixture(scope="module")
def flipped(clean, tmp_path_factory) -> Path:
    """The clean store with one bit flipped in the middle of row 1's second chunk."""
    offset, size = _chunk(clean, 1, C)
    return _flip(clean, tmp_path_factory.mktemp("flipped") / "flipped.h5",
                 offset + size // 2, 4)


def test_replay_info_and_merge_refuse_a_flipped_bit(flipped, tmp_path):
    with pytest.raises(StoreError, match=_names_row(1)):
        replay(flipped, ["ias n=300000"])
    for args in (["replay", flipped, "--policy", "ias n=300000", "--no-progress"],
                 ["info", flipped, "--no-progress"],
                 ["info", flipped, "--json", "--no-progress"]):
        _usage_error(_run(*args), str(flipped), "is damaged: /labels row 1 (image 11)")
    other = _write(tmp_path / "other.h5", image_index=IMAGES + 100)
    out = tmp_path / "merged.h5"
    with pytest.raises(StoreError, match=_names_row(1)):
        merge_stores(out, [other, flipped])
    assert not out.exists()
    _usage_error(_run("merge", out, other, flipped, "--no-progress"), str(flipped),
                 "row 1 (image 11)")
    assert not out.exists()


# ------------------------------------------------------------------ labels in range


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize("label", [10, 65535])
def test_a_label_not_below_num_classes_is_refused_by_every_reader(
    clean, clean_labels, tmp_path, label
):
    path = _copy(clean, tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f["labels"][1, 200_000] = label  # HDF5 recompresses the chunk: its checksum is fine
    needle = rf"{_names_row(1)}: label {label} at sample 200000 is not below num_classes \(10\)"
    with open_store(path) as s:
        for threads in (None, 1, 0):
            with pytest.raises(StoreError, match=needle):
                list(s.iter_chunks(threads=threads))
        for read in (lambda: s.labels(), lambda: s.labels(1), lambda: s.labels([2, 1]),
                     lambda: s.labels(slice(1, 2), slice(150_000, 250_000)),
                     lambda: s.top_class_frequency()):
            with pytest.raises(StoreError, match=needle):
                read()
        # What is not read is not judged: a prefix short of the bad label reads as stored.
        prefix = np.concatenate([b for _, b in s.iter_chunks(samples=150_000)])
        np.testing.assert_array_equal(prefix, clean_labels[:, :150_000])
        np.testing.assert_array_equal(s.labels([0, 2]), clean_labels[[0, 2]])
    for args in (["info", path, "--no-progress"],
                 ["replay", path, "--policy", "ias n=300000", "--no-progress"]):
        _usage_error(_run(*args), str(path), f"row 1 (image 11): label {label} at sample 200000")


# ------------------------------------------------------------------ per-image datasets


def _damaged(clean: Path, tmp_path: Path, dataset: str, row: int, value) -> Path:
    path = _copy(clean, tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f[dataset][row] = value
    return path


@pytest.mark.parametrize("value", [99, 10, -1])
def test_a_true_label_out_of_range_is_refused(clean, tmp_path, value):
    path = _damaged(clean, tmp_path, "true_label", 2, value)
    with pytest.raises(StoreError, match=rf"/true_label of row 2 \(image 12\) is {value};"
                       r" true labels must be in \[0, num_classes=10\)") as err:
        open_store(path)
    assert str(path) in str(err.value)
    cohen = tmp_path / "cohen"
    _usage_error(_run("replay", path, "--policy", "ias n=1000", "--export-cohen", cohen,
                      "--no-progress"), str(path), "/true_label of row 2 (image 12)")
    assert not cohen.exists()  # no log with label 99 was written


def test_a_doubled_image_index_is_refused(clean, tmp_path):
    path = _damaged(clean, tmp_path, "image_index", 2, IMAGES[0])
    with pytest.raises(StoreError, match=r"/image_index repeats image 10 \(rows 0 and 2\)"):
        open_store(path)
    _usage_error(_run("info", path, "--no-progress"), str(path), "repeats image 10")
    with pytest.raises(StoreError, match="repeats image 10"):
        merge_stores(tmp_path / "m.h5", [path])
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("value", [-3.0, np.inf, -np.inf])
def test_negative_or_infinite_seconds_are_refused_naming_the_dataset(clean, tmp_path, value):
    path = _damaged(clean, tmp_path, "seconds", 1, value)
    with pytest.raises(StoreError, match=rf"/seconds of row 1 \(image 11\) is {value}"):
        open_store(path)
    res = _run("replay", path, "--policy", "ias n=1000", "--no-progress")
    _usage_error(res, str(path), "/seconds of row 1")
    assert "seconds_per_sample" not in res.output


def test_an_unknown_time_stays_unknown(clean, tmp_path):
    path = _damaged(clean, tmp_path, "seconds", 1, np.nan)
    with open_store(path) as s:
        assert np.isnan(s.seconds_per_sample())


# ------------------------------------------------------------------ root attrs


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sigma", "abc"), ("sigma", np.nan), ("sigma", -0.25), ("sigma", 0.0),
        ("sigma", np.inf), ("sigma", True),
        ("num_classes", 0), ("num_classes", 70_000), ("num_classes", "ten"),
        ("num_classes", 10.0), ("num_classes", True),
        ("samples_per_image", -1), ("samples_per_image", "many"), ("samples_per_image", 3e5),
        ("seed", "seven"), ("seed", 1.5),
    ],
)
def test_a_bad_numeric_attr_is_named_with_its_value_and_file(clean, tmp_path, name, value):
    path = _copy(clean, tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f.attrs[name] = value
    with pytest.raises(StoreError) as err:
        open_store(path)
    msg = str(err.value)
    assert str(path) in msg and f"root attr {name} (" in msg, msg
    assert repr(value if not isinstance(value, np.floating) else float(value)) in msg, msg


def test_attr_sigma_abc_through_the_cli(clean, tmp_path):
    path = _copy(clean, tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["sigma"] = "abc"
    for command in ("info", "replay"):
        args = [command, path, "--no-progress"]
        if command == "replay":
            args += ["--policy", "ias n=1000"]
        _usage_error(_run(*args), str(path), "root attr sigma ('abc') must be a finite number")


# ------------------------------------------------------------------ empty stores


def _empty_rows(clean: Path, tmp_path: Path) -> Path:
    """A store of two complete images with N = 0 samples each (no writer refuses it here)."""
    path = _copy(clean, tmp_path / "n0.h5")
    with h5py.File(path, "r+") as f:
        del f["labels"]
        f["labels"] = np.zeros((3, 0), np.uint16)
        f["drawn"][...] = 0
        f.attrs["samples_per_image"] = 0
    return path


def test_info_on_a_store_of_zero_samples_per_image_warns_nothing(clean, tmp_path):
    path = _empty_rows(clean, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as pytest's config does; said here for the reader
        with open_store(path) as s:
            np.testing.assert_array_equal(s.top_class_frequency(), [np.nan] * 3)
        res = _run("info", path, "--json", "--no-progress")
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["samples_per_image"] == 0 and out["complete"] == 3
        assert out["top_class_frequency"]["counts"] == [0] * 10
        assert out["top_class_frequency"]["mean"] is None  # NaN: no frequency to average
        res = _run("info", path, "--no-progress")
        assert res.exit_code == 0, res.output
        assert "mean unknown, median unknown" in res.stdout


def test_info_on_a_store_of_zero_images_warns_nothing(tmp_path):
    path = tmp_path / "empty.h5"
    write_synthetic_store(
        path,
        np.zeros(0),
        predicted=np.zeros(0, int),
        true_label=np.zeros(0, int),
        samples_per_image=100,
        num_classes=10,
        sigma=0.25,
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _run("info", path, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "0 (0 complete, 0 incomplete)" in res.stdout
