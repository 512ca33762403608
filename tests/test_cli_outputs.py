"""Outputs of every command: atomic under kill -9 and full disks, never over an input or a store.

Real processes on real files: ``isskit replay --out`` and ``isskit merge`` are SIGKILLed at
each step of the atomic write (a wrapper kills the process from inside ``os.fsync``,
``os.replace`` or ``os.link``, the calls that make the steps) and at the moment their
temporary appears; full disks are real tmpfs mounts (the ``small_fs`` fixture). The
references are the files' bytes (SHA-256), a replay run in this process, and the input
stores' rows.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.psi import PsiTable, psi_table
from isskit.replay import load_results, replay, save_results
from isskit.store import open_store
from isskit.studies.synthetic import realistic_p_A, write_synthetic_store

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}
POLICIES = ["ias n=500,1000,2000", "iss decline=ad k_bar=2000 U=0.05,0.1 k0=50 delta=0.01"]
REPLAY = ["-p", POLICIES[0], "-p", POLICIES[1], "--no-progress"]

# Runs the CLI, SIGKILLing itself at one step of the atomic write: "fsync" (the temporary
# is written, not yet fsynced), "replace" / "link" (fsynced, not renamed: os.replace
# publishes results, os.link stores, which must not replace anything), "replaced"
# (renamed, the folder not yet fsynced).
_KILL_AT = textwrap.dedent("""
    import os, signal, sys
    point, args = sys.argv[1], sys.argv[2:]
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    replace = os.replace
    def replace_then_die(a, b):
        replace(a, b)
        die()
    if point == "fsync":
        os.fsync = die
    elif point == "replace":
        os.replace = die
    elif point == "link":
        os.link = die
    elif point == "replaced":
        os.replace = replace_then_die
    from isskit_cli.main import cli
    cli(args, prog_name="isskit")
""")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _names(folder) -> set[str]:
    return {p.name for p in Path(folder).iterdir()}


def _isskit(*args, kill_at=None):
    code = ["-c", _KILL_AT, kill_at] if kill_at else ["-m", "isskit_cli.main"]
    return subprocess.run([sys.executable, *code, *map(str, args)], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _clean_failure(res, *needles):
    """Exit status 1, each needle in stderr, no traceback and no raw HDF5 error stack."""
    assert res.returncode == 1, (res.returncode, res.stderr)
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)
    assert "Traceback" not in res.stderr and "HDF5-DIAG" not in res.stderr, res.stderr


def _leave_free(folder: Path, free: int) -> None:
    # tops up the file system so that about `free` bytes stay (tmpfs counts whole pages)
    st = os.statvfs(folder)
    fill = st.f_bavail * st.f_frsize - free
    if fill > 0:
        (folder / ".filler2").write_bytes(b"\0" * fill)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """A small store, and its replay's results computed in this process (the reference)."""
    path = tmp_path_factory.mktemp("outputs") / "streams.h5"
    rng = np.random.default_rng(11)
    n = 40
    predicted = rng.integers(0, 10, n)
    write_synthetic_store(
        path,
        realistic_p_A(n, rng),
        predicted=predicted,
        true_label=predicted,
        samples_per_image=2000,
        num_classes=10,
        sigma=0.25,
        seed=4,
        seconds_per_sample=0.002,
    )
    return path, replay(path, POLICIES)


def _assert_results(path, ref) -> None:
    got = load_results(path)
    assert list(got.policy.values) == list(ref.policy.values)
    for name in ("prediction", "radius", "samples", "acr"):
        np.testing.assert_array_equal(got[name].values, ref[name].values)
    assert got.attrs["store_sha256"] == ref.attrs["store_sha256"]


# ------------------------------------------------------------------ kill -9


def test_replay_out_killed_at_every_step_leaves_the_old_or_the_new_file(streams, tmp_path):
    store, ref = streams
    out = tmp_path / "results.nc"
    save_results(replay(store, ["ias n=100"]), out)  # a previous, different, good result
    old = _sha(out)

    # Mid-write: as soon as a poll of the folder sees the temporary (while it is written
    # and fsynced; on ext4 the poll catches it every time, but a race won by the write
    # must leave the whole new file).
    proc = subprocess.Popen([sys.executable, "-m", "isskit_cli.main", "replay", str(store),
                             *REPLAY, "--out", str(out)], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = ".results.nc.tmp-"
    mine = f"{prefix}{proc.pid}-"
    while proc.poll() is None and not any(n.startswith(mine) for n in os.listdir(tmp_path)):
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    if _sha(out) != old:
        _assert_results(out, ref)
        save_results(replay(store, ["ias n=100"]), out)
        old = _sha(out)
    strays = sorted(_names(tmp_path) - {"results.nc"})

    # Fsynced, not renamed: the old file byte for byte, the killed writer's temporary
    # whole beside it, and the earlier writer's temporary removed.
    res = _isskit("replay", store, *REPLAY, "--out", out, kill_at="replace")
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert _sha(out) == old
    temps = sorted(_names(tmp_path) - {"results.nc"})
    assert len(temps) == 1 and temps[0].startswith(prefix) and temps[0] not in strays
    _assert_results(tmp_path / temps[0], ref)

    res = _isskit("replay", store, *REPLAY, "--out", out, kill_at="replaced")
    assert res.returncode == -signal.SIGKILL, res.stderr
    _assert_results(out, ref)  # renamed: the new file, whole
    assert _names(tmp_path) == {"results.nc"}

    res = _isskit("replay", store, *REPLAY, "--out", out)
    assert res.returncode == 0, res.stderr
    _assert_results(out, ref)
    assert _names(tmp_path) == {"results.nc"}


def _ranks(folder: Path, n=120, N=20_000):
    """Two per-rank stores of one run, and the labels the merged store must hold, sorted."""
    rng = np.random.default_rng(3)
    index = rng.permutation(n)
    p = rng.uniform(0.5, 1.0, n)
    paths = []
    for rank, rows in enumerate((index[: n // 2], index[n // 2 :])):
        path = folder / f"run.rank{rank}.h5"
        write_synthetic_store(
            path,
            p[rows],
            predicted=rows % 10,
            true_label=rows % 10,
            samples_per_image=N,
            num_classes=10,
            sigma=0.5,
            seed=9,
            image_index=rows,
            attrs={"rank": rank, "world_size": 2},
        )
        paths.append(path)
    labels = {}
    for path in paths:
        with open_store(path) as s:
            labels.update(zip(s.image_index.tolist(), s.labels(), strict=True))
    return paths, np.stack([labels[i] for i in range(n)])


def _assert_merged(path, expected) -> None:
    with open_store(path) as s:
        assert s.complete.all()
        np.testing.assert_array_equal(s.image_index, np.arange(expected.shape[0]))
        np.testing.assert_array_equal(s.labels(), expected)


def test_merge_killed_at_any_moment_leaves_no_output_and_a_rerun_works(tmp_path):
    inputs, expected = _ranks(tmp_path)
    out = tmp_path / "run.h5"
    before = {p: _sha(p) for p in inputs}
    base = {p.name for p in inputs}
    prefix = ".run.h5.tmp-"
    landed = 0
    for delay in (0.0, 0.05, 0.2):
        proc = subprocess.Popen([sys.executable, "-m", "isskit_cli.main", "merge", str(out),
                                 *map(str, inputs), "--no-progress"], env=ENV, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mine = f"{prefix}{proc.pid}-"  # this run's temporary store, made and being filled
        while proc.poll() is None and not any(n.startswith(mine) for n in os.listdir(tmp_path)):
            time.sleep(0.0005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        if out.exists():
            # published before the kill (on a loaded machine the whole merge can fit in the
            # delay, the kill landing on the exit): then the output is whole
            _assert_merged(out, expected)
            out.unlink()
            continue
        # never a half-merged store under the final name (one --allow-incomplete would
        # replay, and one a rerun would refuse as "already exists")
        assert proc.returncode == -signal.SIGKILL
        landed += 1
    assert landed, "no kill landed before the merge finished"

    # Killed with the temporary store complete, before its fsync and before it is
    # published: still no output; the killed run's temporary is whole, and the earlier
    # runs' temporaries (and their lock files) were removed by it.
    strays: set[str] = set()
    for point in ("fsync", "link"):
        res = _isskit("merge", out, *inputs, "--no-progress", kill_at=point)
        assert res.returncode == -signal.SIGKILL, res.stderr
        assert not out.exists()
        left = _names(tmp_path) - base
        temps = [n for n in left if n.startswith(prefix) and n.endswith(".h5")]
        assert len(temps) == 1 and not left & strays, (left, strays)
        _assert_merged(tmp_path / temps[0], expected)
        strays = left

    res = _isskit("merge", out, *inputs, "--no-progress")
    assert res.returncode == 0, res.stderr
    _assert_merged(out, expected)
    assert _names(tmp_path) == base | {"run.h5"}  # no temporary, no lock file left
    assert {p: _sha(p) for p in inputs} == before


# ------------------------------------------------------------------ full disks


def test_replay_out_on_a_full_disk_exits_1_and_keeps_the_old_file(streams, small_fs):
    store, _ = streams
    fs = small_fs(1 << 20)
    out = fs / "results.nc"
    out.write_bytes(b"previous results\n" * 50)
    _leave_free(fs, 4096)
    res = _isskit("replay", store, *REPLAY, "--out", out)
    _clean_failure(res, f"cannot write --out {out}", "No space left on device",
                   f"kB free in {fs}", "--out on another disk")
    assert out.read_bytes() == b"previous results\n" * 50
    assert _names(fs) == {"results.nc", ".filler2"}


def test_psi_out_on_a_full_disk_exits_1_and_keeps_table_and_sidecar(small_fs):
    fs = small_fs(1 << 20)
    out = fs / "t.csv"
    old = psi_table(1000, 0.05, "ad", 0.5, 0.001, 0.01)
    old.save(out)
    before = {p: _sha(p) for p in (out, fs / "t.csv.json")}
    _leave_free(fs, 4096)
    # 10,001 grid rows: about 150 kB of CSV
    res = _isskit("psi", "--k-bar", 1000, "--U", 0.05, "--decline", "ad", "--sigma", 0.5,
                  "--delta", 0.0001, "--out", out)
    _clean_failure(res, f"cannot write --out {out}", "No space left on device")
    assert {p: _sha(p) for p in before} == before
    assert _names(fs) == {"t.csv", "t.csv.json", ".filler2"}
    np.testing.assert_array_equal(PsiTable.load(out).k, old.k)


def _merge_on_full_disk(tmp_path, small_fs):
    inputs, expected = _ranks(tmp_path, n=60, N=20_000)
    fs = small_fs(1 << 20, free_bytes=64 << 10)  # the merged store needs about 1.1 MB
    out = fs / "run.h5"
    before = {p: _sha(p) for p in inputs}
    res = _isskit("merge", out, *inputs, "--no-progress")
    return inputs, expected, fs, out, before, res


def test_merge_on_a_full_disk_leaves_nothing_and_reruns_once_space_is_free(tmp_path, small_fs):
    inputs, expected, fs, out, before, res = _merge_on_full_disk(tmp_path, small_fs)
    assert res.returncode != 0
    assert _names(fs) == {".filler"}  # no output, no temporary store, no lock file
    assert {p: _sha(p) for p in inputs} == before
    (fs / ".filler").unlink()
    res = _isskit("merge", out, *inputs, "--no-progress")
    assert res.returncode == 0, res.stderr
    _assert_merged(out, expected)
    assert _names(fs) == {"run.h5"}


def test_merge_on_a_full_disk_is_a_clean_exit_1(tmp_path, small_fs):
    *_, out, _, res = _merge_on_full_disk(tmp_path, small_fs)
    _clean_failure(res, "cannot write OUT", str(out.name), "No space left on device")


# ------------------------------------------------------------------ outputs that are inputs


def _same_as(target):
    def make(tmp_path, name):
        p = tmp_path / name
        if p != target:
            p.symlink_to(target) if name.startswith("link") else os.link(target, p)
        return p
    return make


def _refused(res, option, *needles):
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert option in res.output and "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)


@pytest.fixture
def store_copy(streams, tmp_path):
    """A fresh copy of the store in this test's folder (tests may try to destroy it)."""
    path = tmp_path / "streams.h5"
    path.write_bytes(streams[0].read_bytes())
    return path


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_replay_out_that_is_the_store_is_refused(store_copy, how):
    out = {"same": store_copy, "symlink": store_copy.with_name("link.h5"),
           "hardlink": store_copy.with_name("hard.h5")}[how]
    if how == "symlink":
        out.symlink_to(store_copy)
    elif how == "hardlink":
        os.link(store_copy, out)
    before = _sha(store_copy)
    res = CliRunner().invoke(cli, ["replay", str(store_copy), *REPLAY, "--out", str(out)])
    _refused(res, "--out", "is the input STORE")
    assert _sha(store_copy) == before and _names(store_copy.parent) == {
        "streams.h5", out.name}


def test_outputs_never_replace_a_stream_store(store_copy, tmp_path):
    other = tmp_path / "other.h5"  # another run's store, not an input
    other.write_bytes(store_copy.read_bytes())
    figs, logs = tmp_path / "figs", tmp_path / "logs"
    figs.mkdir()
    logs.mkdir()
    os.link(store_copy, figs / "acr_vs_time.png")  # the store under a figure's name
    os.link(store_copy, logs / "IAS-0.05.tsv")  # ... and under a Cohen log's name
    (tmp_path / "sweep.toml").write_text(f'policies = ["{POLICIES[0]}"]\n')
    psi = ["psi", "--k-bar", "1000", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"]
    cases = [
        (["replay", store_copy, *REPLAY, "--out", other], "--out", "is a stream store"),
        (["replay", store_copy, *REPLAY, "--plot", figs], "--plot", "is the input STORE"),
        (["replay", store_copy, "-p", "ias n=500", "--no-progress", "--export-cohen", logs],
         "--export-cohen", "is the input STORE"),
        (["replay", store_copy, "--policies-file", tmp_path / "sweep.toml", "--no-progress",
          "--out", tmp_path / "sweep.toml"], "--out", "is the --policies-file"),
        (["replay", store_copy, *REPLAY, "--plot", tmp_path, "--out",
          tmp_path / "certified_accuracy.png"], "--plot", "would also be written by --out"),
        ([*psi, "--out", other], "--out", "is a stream store"),
        ([*psi, "--plot", figs / "acr_vs_time.png"], "--plot", "is a stream store"),
    ]
    before = _sha(store_copy)
    for args, option, needle in cases:
        res = CliRunner().invoke(cli, [str(a) for a in args])
        _refused(res, option, needle)
    assert _sha(store_copy) == before and _sha(other) == before
    assert _names(tmp_path) == {"streams.h5", "other.h5", "figs", "logs", "sweep.toml"}
    assert _names(figs) == {"acr_vs_time.png"} and _names(logs) == {"IAS-0.05.tsv"}


def test_merge_output_that_is_an_input_or_exists_is_refused(tmp_path):
    inputs, _ = _ranks(tmp_path, n=8, N=100)
    before = {p: _sha(p) for p in inputs}
    for out, needle in ((inputs[1], "is one of the INPUTS"),
                        (tmp_path / "link.h5", "is one of the INPUTS")):
        if out.name == "link.h5":
            out.symlink_to(inputs[0])
        res = CliRunner().invoke(cli, ["merge", str(out), *map(str, inputs), "--no-progress"])
        _refused(res, "OUT", needle)
    (tmp_path / "link.h5").unlink()
    other = tmp_path / "other.h5"
    other.write_bytes(inputs[0].read_bytes())
    res = CliRunner().invoke(cli, ["merge", str(other), *map(str, inputs), "--no-progress"])
    _refused(res, "", "already exists; refusing to overwrite it")
    assert {p: _sha(p) for p in inputs} == before and _sha(other) == before[inputs[0]]


def _small_log(published, tmp_path):
    # the first 50 rows of a published CIFAR-10 log (its name gives sigma and the classes)
    name = "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"
    text = (published / "certify-logs" / name).read_text().splitlines(True)[:51]
    path = tmp_path / name
    path.write_text("".join(text))
    return path


def test_import_log_refuses_its_log_and_other_files_and_resumes_its_own_store(
        published, tmp_path, store_copy):
    log = _small_log(published, tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    files = {p: _sha(p) for p in (log, notes, store_copy)}
    for out, option, needle in ((log, "--out", "is the input LOG"),
                                (notes, "", "not an HDF5 file"),
                                (store_copy, "", "different run parameters")):
        res = CliRunner().invoke(cli, ["import-log", str(log), "--out", str(out),
                                       "--samples", "10"])
        _refused(res, option, needle)
    assert {p: _sha(p) for p in files} == files
    out = tmp_path / "log.h5"
    for _ in range(2):  # the second run resumes the first's (complete) store: the same run
        res = CliRunner().invoke(cli, ["import-log", str(log), "--out", str(out),
                                       "--samples", "10"])
        assert res.exit_code == 0, res.output
    with open_store(out) as s:
        assert s.complete.all() and s.n_images == 50


def test_import_log_that_fails_midway_leaves_no_store(published, tmp_path, monkeypatch):
    import isskit.studies.synthetic
    from isskit.logs import import_log

    log = _small_log(published, tmp_path)
    real = isskit.studies.synthetic.write_synthetic_store

    def fails_after_writing(path, *args, **kwargs):
        real(path, *args, **kwargs)  # every row written to the temporary store ...
        assert Path(path).name.startswith(".log.h5.tmp-")
        raise KeyboardInterrupt  # ... then the user presses Ctrl-C

    monkeypatch.setattr(isskit.studies.synthetic, "write_synthetic_store", fails_after_writing)
    with pytest.raises(KeyboardInterrupt):
        import_log(log, tmp_path / "log.h5", samples_per_image=10)
    assert _names(tmp_path) == {log.name}
    monkeypatch.undo()
    import_log(log, tmp_path / "log.h5", samples_per_image=10)
    assert _names(tmp_path) == {log.name, "log.h5"}


def test_psi_sidecar_of_another_table_is_refused(tmp_path):
    # A save killed between its two renames leaves a new CSV beside the old sidecar.
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    psi_table(1000, 0.05, "ad", 0.5, 0.001, 0.01).save(a)
    psi_table(2000, 0.05, "ad", 0.5, 0.001, 0.01).save(b)
    a.write_bytes(b.read_bytes())
    with pytest.raises(ValueError, match=r"does not match its sidecar a\.csv\.json"):
        PsiTable.load(a)
    assert PsiTable.load(b).k_bar == 2000
