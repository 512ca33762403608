"""Issue 8, part D at the command line: huge values, exit statuses, option names, k0 <= k_bar.

Every huge value here was a traceback or an out-of-memory kill; each must now be a usage
error (exit status 2) naming the value and the option as typed, raised before anything
of that size is allocated and before any output file exists.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.store import open_for_writing
from isskit.studies.synthetic import write_synthetic_store
from isskit.validate import available_memory

HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
ROW = "\t3\t3\t0.5\t1\t0:00:01.0\n"


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _usage_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    for needle in needles:
        assert needle in res.output, (needle, res.output)


def _needs_more_than_this_machine(nbytes):
    if available_memory() >= nbytes:
        pytest.skip(f"this machine could hold {nbytes} bytes")


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sizes") / "s.h5"
    write_synthetic_store(path, np.full(6, 0.9), predicted=np.zeros(6, np.int64),
                          true_label=np.zeros(6, np.int64), samples_per_image=5000, num_classes=10,
                          sigma=0.5, seed=1)
    return path


# --------------------------------------------------------------- sizes, before allocating


def test_import_log_idx_beyond_int64(tmp_path):
    log = tmp_path / "big_cifar10_sigma_0.50"
    log.write_text(HEADER + "100000000000000000000000" + ROW)  # was an OverflowError
    res = _run("import-log", log, "--out", tmp_path / "o.h5")
    _usage_error(res, f"{log}, line 2: idx (100000000000000000000000) must be <= "
                      "9,223,372,036,854,775,807")
    assert list(tmp_path.iterdir()) == [log]


def test_import_log_samples_larger_than_memory_leaves_no_store(tmp_path, published):
    _needs_more_than_this_machine(2 * 10**11)
    log = tmp_path / "c_cifar10_sigma_0.25"
    src = published / "certify-logs" / "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"
    log.write_text("".join(src.read_text().splitlines(True)[:5]))
    res = _run("import-log", log, "--out", tmp_path / "o.h5", "--samples", "1e11")
    _usage_error(res, "--samples (100000000000) needs", "of memory", "available")
    assert list(tmp_path.iterdir()) == [log]  # no store, no lock file, no temporary
    res = _run("import-log", log, "--out", tmp_path / "o.h5", "--samples", "1e13")
    _usage_error(res, "--samples (10000000000000) must be an integer <= 1,000,000,000,000")


def test_info_on_a_store_of_1e11_samples_per_row(tmp_path):
    _needs_more_than_this_machine(2 * 10**11)
    path = tmp_path / "huge.h5"
    # A store from a machine far larger than this one, laid out by hand with h5py (isskit's
    # own writer builds the chunk index up front, half a GB at this N, and this machine's
    # sample --N refuses 1e11 anyway): no chunk is written, so the file is small.
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", shape=(2, 10**11), dtype=np.uint16, chunks=(1, 1 << 17),
                         compression="gzip", compression_opts=1)
        f["image_index"] = np.arange(2, dtype=np.int64)
        f["true_label"] = np.arange(2, dtype=np.int64)
        f["complete"] = np.zeros(2, dtype=bool)
        f["seconds"] = np.zeros(2)
        f.attrs.update(schema_version=1, samples_per_image=10**11, sigma=0.25, num_classes=10)
    assert path.stat().st_size < 1 << 20
    res = _run("info", path, "--no-progress")
    _usage_error(res, "samples_per_image (100000000000) needs", str(path), "available")


@pytest.mark.torch
def test_sample_N_is_checked_up_front(tmp_path, monkeypatch):
    _needs_more_than_this_machine(12 * 10**11)
    import isskit.sampling.models

    def no_model(*args, **kwargs):  # the refusal comes before the model is even loaded
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(isskit.sampling.models, "default_model", no_model)
    res = _run("sample", "--N", "1e11", "--no-progress", "--out", tmp_path / "s.h5")
    _usage_error(res, "--N (100000000000) needs", "12 bytes per sample")
    assert not list(tmp_path.iterdir())


@pytest.mark.torch
@pytest.mark.parametrize(("indices", "needle"), [
    ("0:1000000000000000", "--indices (0:1000000000000000) needs"),  # 10^15 indices
    ("5,99999999999999999999999", "an index must be below 2**63"),  # was an OverflowError
])
def test_sample_indices_are_sized_before_they_are_listed(tmp_path, indices, needle):
    _needs_more_than_this_machine(48 * 10**15)
    res = _run("sample", "--indices", indices, "--no-progress", "--out", tmp_path / "s.h5")
    _usage_error(res, needle)
    assert not list(tmp_path.iterdir())


def test_audit_trials_beyond_memory():
    _needs_more_than_this_machine(128 * 10**12)
    for trials in ("1e12", "1000000000000"):  # as a sample size is written, both spellings
        res = _run("audit", "--trials", trials, "--p-A", "0.9", "--no-progress")
        _usage_error(res, "--trials (1000000000000) needs", "128 bytes each")


def test_audit_ias_of_a_trillion_samples_is_computed_not_enumerated():
    res = _run("audit", "--policy", "ias n=1e12", "--trials", "0", "--p-A", "0.9", "--json",
               "--no-progress")
    assert res.exit_code == 0, res.output
    assert "IAS-100000000" in res.output


def test_audit_iss_with_a_huge_pilot_is_refused_before_any_work():
    res = _run("audit", "--policy", "iss decline=ad k_bar=1e12 U=0.05 k0=1e12", "--trials", "0",
               "--p-A", "0.5,0.9", "--no-progress")
    _usage_error(res, "--policy (ISS-AD-100000000-0.05-k0=1000000000000)",
                 "pilot counts of k0 = 1,000,000,000,000", "choose a smaller k0")


def test_verify_k0_beyond_memory():
    _needs_more_than_this_machine(10**14)
    res = _run("verify", "--k-bar", "1e12", "--U", "0.05", "--decline", "ad", "--sigma", "0.5",
               "--k0", "1e11")
    _usage_error(res, "--k0 (100000000000) needs", "pilot counts")


# --------------------------------------------------------------- exit statuses, messages


@pytest.mark.parametrize("command", ["sample", "import-log", "info"])
def test_an_existing_file_that_is_no_store_is_exit_2_everywhere(tmp_path, published, command):
    if command == "sample":
        pytest.importorskip("torch")
    junk = tmp_path / "junk.h5"
    junk.write_text("not a store")
    log = tmp_path / "c_cifar10_sigma_0.25"
    src = published / "certify-logs" / "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"
    log.write_text("".join(src.read_text().splitlines(True)[:5]))
    args = {"sample": ["sample", "--N", "10", "--indices", "0", "--no-progress", "--out", junk],
            "import-log": ["import-log", log, "--out", junk],
            "info": ["info", junk, "--no-progress"]}[command]
    res = _run(*args)
    _usage_error(res, str(junk), "not an HDF5 file")
    assert junk.read_text() == "not a store"


def test_memory_error_is_exit_1_without_traceback(small_store, monkeypatch):
    from isskit.store import StreamStore

    def exhausted(self, *args, **kwargs):
        raise MemoryError("Unable to allocate 186. GiB")

    monkeypatch.setattr(StreamStore, "top_class_frequency", exhausted)
    res = _run("info", small_store, "--no-progress")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "out of memory: Unable to allocate 186. GiB" in res.output
    assert "Traceback" not in res.output


def test_replay_messages_name_the_options(tmp_path, small_store):
    path = tmp_path / "incomplete.h5"
    with open_for_writing(path, image_index=[0, 1], true_label=[0, 1], samples_per_image=100,
                          attrs={"sigma": 0.5, "num_classes": 2}) as w:
        w.write_row(1, np.ones(100, np.uint16), seconds=0.1)
    res = _run("replay", path, "-p", "ias n=100", "--no-progress")
    _usage_error(res, "or set --allow-incomplete to replay the 1 complete rows")
    assert "allow_incomplete" not in res.output
    res = _run("replay", small_store, "-p", "IAS-0.1", "--reference", "IAS-1", "--no-progress")
    _usage_error(res, "choose one that fits with --reference")
    res = _run("replay", small_store, "-p", "IAS-0.1", "--radii", "-1", "--no-progress")
    _usage_error(res, "--radii ([-1.0]) must hold finite radii >= 0")


def test_merge_names_the_input_with_the_bad_label(tmp_path):
    import h5py

    parts = []
    for rank, idx in ((0, [0, 2]), (1, [1, 3])):
        part = tmp_path / f"r{rank}.h5"
        with open_for_writing(part, image_index=idx, true_label=[1, 2], samples_per_image=50,
                              attrs={"sigma": 0.25, "num_classes": 10, "rank": rank,
                                     "world_size": 2}) as w:
            w.write_rows(0, np.ones((2, 50), np.uint16), [1.0, 1.0])
        parts.append(part)
    with h5py.File(parts[1], "r+") as f:
        f["labels"][1, 7] = 12  # row 1 of rank 1's store (image 3): not a class of 10
    res = _run("merge", tmp_path / "m.h5", *parts, "--no-progress")
    # the input's own read check names it first (the writer's check, which would name the
    # merge input too, stays for arrays handed to it directly)
    _usage_error(res, f"{parts[1]} is damaged: /labels row 1 (image 3): label 12")
    assert not (tmp_path / "m.h5").exists()


def test_import_log_repeated_idx_names_file_and_lines(tmp_path):
    log = tmp_path / "dup_cifar10_sigma_0.50"
    log.write_text(HEADER + "0" + ROW + "20" + ROW + "40" + ROW + "20" + ROW)
    res = _run("import-log", log, "--out", tmp_path / "o.h5")
    _usage_error(res, f"{log}, line 5: idx 20 repeats line 3")
    assert not (tmp_path / "o.h5").exists()


# --------------------------------------------------------------- k0 <= k_bar, one rule


K0_OVER = "k0 (5000) must be <= k_bar (4000): the pilot is part of the budget k_bar"


def test_k0_above_k_bar_is_refused_alike_by_replay_audit_and_verify(small_store):
    spec = "iss decline=ad k_bar=4000 U=0.05 k0=5000"
    # replay took it and reported a 0.80x speed-up; audit took it; verify refused it
    _usage_error(_run("replay", small_store, "-p", spec, "--no-progress"), K0_OVER)
    _usage_error(_run("audit", "--policy", spec, "--trials", "10", "--no-progress"), K0_OVER)
    _usage_error(_run("verify", "--k-bar", "4000", "--U", "0.05", "--decline", "ad",
                      "--sigma", "0.5", "--k0", "5000"), "--" + K0_OVER)
    # k0 = k_bar is still a policy (its pilot is the whole budget)
    res = _run("replay", small_store, "-p", "iss decline=ad k_bar=4000 U=0.05 k0=4000",
               "--no-progress")
    assert res.exit_code == 0, res.output


def test_k0_above_k_bar_in_the_library():
    from isskit.policies import ISS
    from isskit.psi.verify import verify

    with pytest.raises(ValueError) as policy_error:
        ISS(k_bar=4000, U=0.05, decline="ad", k0=5000)
    with pytest.raises(ValueError) as verify_error:
        verify(4000, 0.05, "ad", 0.5, 0.001, 0.01, k0=5000)
    assert str(policy_error.value) == str(verify_error.value)
    assert str(policy_error.value).startswith(K0_OVER)
