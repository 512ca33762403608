"""``isskit certify``: online equals replay through the CLI, bad input, kill-and-resume, torchrun.

The reference of every certificate here is ``isskit replay`` on the store certify wrote
(the offline evaluation the policies were chosen with), and of every store an uninterrupted
or single-process run of :func:`isskit.sampling.certify.certify_to_store`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli
from test_cli_sample import _env, _through_torchrun

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[1]

# Small versions of every radius policy kind at sigma 0.5, where the embedded model's p_A
# spread over (0.5, 1]: Cohen's CERTIFY, one-stage IAS, ISS paper-faithful and fresh.
POLICIES = ["cohen n0=20 n=300", "ias n=200", "iss decline=ad k_bar=400 U=0.1 k0=40",
            "iss decline=ad k_bar=400 U=0.1 k0=40 fresh=true"]
NAMES = ["Cohen-0.03-n0=20", "IAS-0.02", "ISS-AD-0.04-0.1-k0=40", "ISS-AD-0.04-0.1-k0=40-fresh"]
BASE = ["--sigma", "0.5", "--seed", "3", "--indices", "0,7,19,44,101,250", "--batch", "128",
        "--no-progress"]
#: replay's default reference, IAS(k_bar), needs 400 samples of rows certify drew shorter:
#: an explicit one that every row holds (the reference does not enter the certificates).
REFERENCE = "ias n=10"


def _invoke(*args):
    return CliRunner().invoke(cli, ["certify", *map(str, args)])


def _policy_args(specs=POLICIES):
    return [a for s in specs for a in ("-p", s)]


def _rows(path, *, time_column=False):
    """A Cohen-format log's lines, without the time column unless asked."""
    lines = Path(path).read_text().splitlines()
    return lines if time_column else ["\t".join(ln.split("\t")[:5]) for ln in lines]


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    """One certify run with every radius policy kind, --json."""
    d = tmp_path_factory.mktemp("certify")
    res = _invoke(*BASE, *_policy_args(), "--json", "--out", d / "c.h5")
    assert res.exit_code == 0, res.output
    return d, json.loads(res.stdout)


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from isskit_cli.main import cli;"
            "r = CliRunner().invoke(cli, ['certify', '--help']); assert r.exit_code == 0;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_torch_says_which_extra(tmp_path):
    from test_extras import _run

    res = _run("certify", "-p", "ias n=10", "--out", tmp_path / "c.h5")
    assert res["code"] == 2 and "pip install 'isskit[torch]'" in res["out"], res
    assert "Traceback" not in res["out"] and not (tmp_path / "c.h5").exists()


def test_contract_options():
    # DESIGN.md: certify takes sample's model and data options, and these.
    command = cli.get_command(None, "certify")
    have = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    sample = cli.get_command(None, "sample")
    shared = {o for p in sample.params if isinstance(p, click.Option) for o in p.opts}
    assert {"--sigma", "--policy", "--max-samples", "--log-dir", "--seed", "--device", "--out",
            "--json", "--batch", "--bf16", "--channels-last", "--max-index"} <= have
    assert shared - {"--N"} <= have


def test_every_option_survives_torchrun(capsys):
    # As for sample: each option reaches the script unchanged through torchrun's parser,
    # through at least one spelling; --max is an abbreviation of torchrun's --max-restarts.
    from isskit_cli.certify import certify

    plain_only = {"--max"}
    for opt in [p for p in certify.params if isinstance(p, click.Option)]:
        survivors = []
        for spelling in [*opt.opts, *opt.secondary_opts]:
            args = ["certify", spelling] if opt.is_flag else ["certify", spelling, "7"]
            got = _through_torchrun(args)
            if spelling in plain_only:
                continue
            assert got == ["isskit_cli.main", *args], (spelling, got, capsys.readouterr().err)
            survivors.append(spelling)
        assert survivors, opt.name


def test_online_equals_replay(certified, tmp_path):
    d, payload = certified
    logs = d / "c_logs"  # the default: beside --out
    assert [p["name"] for p in payload["policies"]] == NAMES
    for spec, name, row in zip(POLICIES, NAMES, payload["policies"], strict=True):
        out = tmp_path / name
        res = CliRunner().invoke(cli, ["replay", str(d / "c.h5"), "-p", spec, "--reference",
                                       REFERENCE, "--export-cohen", str(out), "--json",
                                       "--no-progress"])
        assert res.exit_code == 0, res.output
        (replayed,) = json.loads(res.stdout)["policies"]
        # every certificate (idx label predict radius correct) byte for byte; time aside:
        # replay estimates it from the store's mean rate, certify measured each image's
        online, offline = _rows(logs / f"{name}.tsv"), _rows(out / f"{name}.tsv")
        assert online == offline and len(online) == 7, name
        assert row["logs"] == [str(logs / f"{name}.tsv")]
        for key in ("acr", "mean_samples", "total_samples", "validity"):
            assert row[key] == replayed[key], (name, key)
        assert row["saved_fraction"] == pytest.approx(1 - replayed["total_samples"] / (6 * 440))
    # the totals: what was drawn against drawing --max-samples for every image
    t = payload["totals"]
    from isskit.store import open_store

    with open_store(d / "c.h5") as s:
        assert s.complete.all() and s.schema_version == 2 and s.samples_per_image == 440
        assert t["samples_drawn"] == int(s.drawn.sum()) == t["samples_drawn_now"]
    # the most any policy may need: fresh ISS's k0 + k_bar = 40 + 400
    assert payload["max_samples"] == 440
    assert t["samples_full_n"] == 6 * 440
    assert t["saved_fraction"] == pytest.approx(1 - t["samples_drawn"] / (6 * 440))
    assert 0 < t["saved_fraction"] < 1
    # ISS drew less than its k_bar somewhere; Cohen always its n0 + n
    assert payload["policies"][2]["mean_samples"] < 400
    assert payload["policies"][0]["mean_samples"] == 320


def test_rerun_draws_nothing_and_keeps_the_certificates(certified):
    d, payload = certified
    before = {n: _rows(d / "c_logs" / f"{n}.tsv") for n in NAMES}
    res = _invoke(*BASE, *_policy_args(), "--json", "--out", d / "c.h5")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["totals"]["samples_drawn_now"] == 0
    assert again["totals"]["samples_drawn"] == payload["totals"]["samples_drawn"]
    for n in NAMES:
        assert _rows(d / "c_logs" / f"{n}.tsv") == before[n]


def test_store_is_a_cache_for_policies_that_need_less(tmp_path):
    # without --max-samples, a store whose N covers the new policies is reused (draws only
    # where they need more); one too short is widened, its first N labels kept.
    out = tmp_path / "c.h5"
    args = [*BASE, "--json", "--out", out]
    first = json.loads(_invoke(*args, "-p", "cohen n0=20 n=300").stdout)
    res = _invoke(*args, "-p", "ias n=200", "-p", "iss decline=ad k_bar=300 U=0.1 k0=40")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["max_samples"] == first["max_samples"] == 320
    assert again["totals"]["samples_drawn_now"] == 0
    from isskit.store import open_store

    with open_store(out) as s:
        before = s.labels()
    res = _invoke(*args, "-p", "ias n=400")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_samples"] == 400
    with open_store(out) as s:
        assert s.samples_per_image == 400
        np.testing.assert_array_equal(s.labels()[:, :320], before)


def test_decision_policy_alone_is_certified(tmp_path):
    # A decision policy alone is a run of its own: the store and its one log are written.
    out = tmp_path / "d.h5"
    res = _invoke(*BASE, "-p", "staged r=0.25 stages=100/200", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["policies"]
    assert row["name"].startswith("Staged") and out.exists()
    assert Path(row["logs"][0]).exists()


def test_decision_policies_online_equal_replay(tmp_path):
    specs = ["adaptive r=0.25 n0=10 stages=100/200/400", "staged r=0.25 stages=100/200/400",
             "cs r=0.25 n_max=500"]
    res = _invoke(*BASE, *_policy_args(specs), "-p", "ias n=50", "--json", "--out",
                  tmp_path / "d.h5")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    for spec, row in zip(specs, payload["policies"], strict=False):
        out = tmp_path / "replayed"
        rep = CliRunner().invoke(cli, ["replay", str(tmp_path / "d.h5"), "-p", spec,
                                       "--reference", REFERENCE, "--export-cohen", str(out),
                                       "--json", "--no-progress"])
        assert rep.exit_code == 0, rep.output
        (replayed,) = json.loads(rep.stdout)["policies"]
        from isskit.replay import cohen_log_paths

        (offline,) = cohen_log_paths([row["name"]], out)  # names with "/" made safe
        assert _rows(row["logs"][0]) == _rows(offline)
        assert row["certified_accuracy_at_r"] == replayed["certified_accuracy_at_r"]
        assert row["mean_samples"] == replayed["mean_samples"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name at least one policy"),
        (["-p", "iss k_bar=zz"], "--policy"),
        (["-p", "nosuchkind n=3"], "nosuchkind"),
        (["-p", "cohen n0=20 n=300", "--max-samples", "200"],
         "policy Cohen-0.03-n0=20 (--policy 'cohen n0=20 n=300') may need for an image (320)"),
        (["-p", "ias n=20", "--max-samples", "0"], "--max-samples"),
        (["-p", "ias n=20", "--sigma", "-1"], "sigma"),
        (["-p", "ias n=20", "--indices", "1,2", "--skip", "2"], "--indices excludes"),
        (["-p", "ias n=20", "--arch", "cifar_resnet110"], "--arch needs --checkpoint"),
    ],
)
def test_bad_input_exits_2(tmp_path, args, message):
    out = tmp_path / "c.h5"
    select = [] if "--indices" in args else ["--indices", "0"]
    res = _invoke(*args, *select, "--no-progress", "--out", out)
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "c_logs").exists()


def test_max_samples_message_names_both(tmp_path):
    res = _invoke("-p", "ISS-AD-1-0.05", "--max-samples", "5000", "--out", tmp_path / "c.h5")
    assert res.exit_code == 2
    assert "--max-samples" in res.output and "ISS-AD-1-0.05" in res.output


def test_out_that_is_an_input(tmp_path):
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not really weights")
    res = _invoke("--checkpoint", ckpt, "--sigma", "0.25", "-p", "ias n=20", "--out", ckpt)
    assert res.exit_code == 2 and "is the --checkpoint" in res.output, res.output
    assert ckpt.read_bytes() == b"not really weights"
    # a log that would be the store itself
    out = tmp_path / "IAS-0.002.tsv"
    res = _invoke("-p", "ias n=20", "--indices", "0", "--log-dir", tmp_path, "--out", out)
    assert res.exit_code == 2 and "is the --out" in res.output, res.output
    assert not out.exists()


def _set_noise(path, value):
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["noise"] = value


@pytest.mark.parametrize("change", [["--sigma", "0.25"], ["--seed", "4"],
                                    ["--model", "sampling_helpers:slow_default"], "noise"])
def test_existing_store_of_another_run(tmp_path, change):
    out = tmp_path / "c.h5"
    base = [*BASE[4:], "--sigma", "0.5", "--seed", "3", "-p", "ias n=30", "--out", out]
    assert _invoke(*base).exit_code == 0
    if change == "noise":  # a store of the batch-dependent scheme, resumed only with it
        from isskit.sampling import NOISE_SCHEME_V1, noise_description

        _set_noise(out, noise_description(128, "cpu", NOISE_SCHEME_V1))
        change = []
    log = tmp_path / "c_logs" / "IAS-0.003.tsv"
    # the store's bytes, and the log's bytes and mtime (the library opens the store r+ to
    # compare the runs, which can touch its mtime without writing a byte)
    before = (out.read_bytes(), log.read_bytes(), log.stat().st_mtime_ns)
    sys.path.insert(0, str(REPO / "tests"))
    try:
        res = _invoke(*base, *change)
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert res.exit_code == 2, res.output
    assert "different run parameters" in res.output and "Traceback" not in res.output
    assert (out.read_bytes(), log.read_bytes(), log.stat().st_mtime_ns) == before


def test_second_writer_is_refused_as_by_sample(tmp_path):
    # sample exits 1 for a store another process is writing (a runtime failure, not bad
    # input: the same command succeeds once the other writer is done); certify agrees.
    from isskit.store import open_for_writing

    out = tmp_path / "c.h5"
    with open_for_writing(out, image_index=[0], true_label=[0], samples_per_image=5,
                          attrs={"sigma": 0.25, "num_classes": 10}):
        res = _invoke("-p", "ias n=5", "--indices", "0", "--no-progress", "--out", out)
        sample = CliRunner().invoke(cli, ["sample", "--N", "5", "--indices", "0",
                                          "--no-progress", "--out", str(out)])
    assert res.exit_code == sample.exit_code == 1, res.output
    assert "another process" in res.output and "Traceback" not in res.output


def _library_run(out, log_dir, specs, indices, **kw):
    from isskit.sampling.certify import certify_to_store
    from isskit.sampling.datasets import load_dataset
    from isskit.sampling.models import default_model

    return certify_to_store(default_model().model, load_dataset("digits").dataset, out,
                            policies=specs, indices=indices, device="cpu", progress=False,
                            log_dir=log_dir, **kw)


def _same_store(a, b):
    from isskit.store import open_store

    with open_store(a) as x, open_store(b) as y:
        assert x.complete.all() and y.complete.all()
        np.testing.assert_array_equal(x.image_index, y.image_index)
        np.testing.assert_array_equal(x.true_label, y.true_label)
        np.testing.assert_array_equal(x.drawn, y.drawn)
        for r, d in enumerate(x.drawn):
            np.testing.assert_array_equal(x.labels(r)[:d], y.labels(r)[:d])


KILL_POLICIES = ["cohen n0=20 n=500", "iss decline=ad k_bar=1000 U=0.1 k0=20"]


def test_kill_and_resume(tmp_path):
    # 64 images: rows are committed a window (32) at a time, so the kill can fall after
    # the first window's rows and their log lines, and before the second's.
    out = tmp_path / "killed.h5"
    n_rows = 64
    cmd = [sys.executable, "-m", "isskit_cli.main", "certify", "--model",
           "sampling_helpers:slow_default", "--sigma", "0.25", *_policy_args(KILL_POLICIES),
           "--batch", "250", "--indices", f"0:{n_rows}", "--no-progress", "--out", str(out)]
    log = tmp_path / "killed_logs" / "Cohen-0.05-n0=20.tsv"
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    lines = 0
    deadline = time.monotonic() + 240  # a loaded CI machine starts torch slowly
    try:  # the log's lines are flushed once their rows are in the store
        while time.monotonic() < deadline and proc.poll() is None and lines < 2:
            lines = len(log.read_text().splitlines()) if log.exists() else 0
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()
    from isskit.store import open_store

    with open_store(out) as s:
        assert 0 < int(s.complete.sum()) < n_rows

    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ref = tmp_path / "reference.h5"
    run = _library_run(ref, tmp_path / "ref_logs", KILL_POLICIES, list(range(n_rows)),
                       sigma=0.25, batch=250)
    _same_store(out, ref)
    for path in run.logs:
        assert _rows(tmp_path / "killed_logs" / path.name) == _rows(path), path.name


def test_torchrun_two_processes_then_merge(tmp_path):
    from isskit.replay import replay
    from isskit.store import merge_stores

    common = ["certify", *BASE, *_policy_args(POLICIES[::2])]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc_per_node", "2", "-m", "isskit_cli.main", *common, "--json",
         "--log-dir", str(tmp_path / "logs"), "--out", str(tmp_path / "d.h5")],
        env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    payload = json.loads(run.stdout)
    assert [r["n_images"] for r in payload["ranks"]] == [3, 3]
    parts = [tmp_path / "d.rank0.h5", tmp_path / "d.rank1.h5"]
    assert payload["merge_command"] == f"isskit merge {tmp_path / 'd.h5'} {parts[0]} {parts[1]}"
    merge_stores(tmp_path / "d.h5", parts)

    indices = [0, 7, 19, 44, 101, 250]
    one = _library_run(tmp_path / "s.h5", None, POLICIES[::2], indices, sigma=0.5, seed=3,
                       batch=128)
    _same_store(tmp_path / "d.h5", tmp_path / "s.h5")
    ds = replay(tmp_path / "d.h5", POLICIES[::2], reference=REFERENCE)
    np.testing.assert_array_equal(ds.prediction.values, one.prediction)
    np.testing.assert_array_equal(ds.radius.values, one.radius)
    np.testing.assert_array_equal(ds.samples.values, one.samples)
    # the JSON summarises both ranks: the single run's ACR
    from isskit.replay.metrics import acr

    got = [p["acr"] for p in payload["policies"]]
    assert got == [float(acr(one.prediction[b], one.radius[b], one.true_label))
                   for b in range(2)]
    # each rank's logs in its own folder, the lines of its own images
    rank1 = _rows(tmp_path / "logs" / "rank1" / "Cohen-0.03-n0=20.tsv")
    assert [ln.split("\t")[0] for ln in rank1[1:]] == ["7", "44", "250"]


def test_policy_that_cannot_run_online_writes_nothing(tmp_path):
    # a budget's mean B needs every image's pilot first: refused before the store or a log
    # exists, and the message says what to give instead
    out = tmp_path / "b.h5"
    res = _invoke("-p", "budget B=1000 k0=100", "--indices", "0,1", "--no-progress",
                  "--out", out)
    assert res.exit_code == 2, res.output
    assert "price=" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_store_widened_when_policies_need_more_than_its_N(tmp_path):
    # a cache store of N = 100 serves a policy needing 300: widened, then drawn further, to
    # the same labels as sampling 300 at once
    from isskit.store import open_store

    out, full = tmp_path / "c.h5", tmp_path / "full.h5"
    assert _invoke(*BASE, "-p", "ias n=100", "--out", out).exit_code == 0
    res = _invoke(*BASE, "-p", "ias n=300", "--out", out)
    assert res.exit_code == 0, res.output
    sample = CliRunner().invoke(cli, ["sample", *BASE, "--N", "300", "--out", str(full)])
    assert sample.exit_code == 0, sample.output
    with open_store(out) as a, open_store(full) as b:
        assert a.samples_per_image == 300 and a.drawn.tolist() == [300] * 6
        np.testing.assert_array_equal(a.labels(), b.labels())


def test_refused_runs_leave_nothing(tmp_path):
    # --log-dir naming the store itself, and a store of another run: exit 2, no folder left
    res = _invoke(*BASE, "-p", "ias n=20", "--out", tmp_path / "o.h5", "--log-dir",
                  tmp_path / "o.h5")
    assert res.exit_code == 2 and "--log-dir" in res.output, res.output
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "s.h5"
    made = CliRunner().invoke(cli, ["sample", *BASE[2:], "--sigma", "0.25", "--N", "50",
                                    "--out", str(other)])
    assert made.exit_code == 0, made.output
    res = _invoke(*BASE, "-p", "ias n=20", "--out", other)
    assert res.exit_code == 2 and "sigma" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
