"""``isskit sample``: options, errors and exit codes, kill-and-resume, torchrun + merge."""

from __future__ import annotations

import json
import os
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

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[1]


def _env(**extra):
    # The venv holds an editable install of another checkout: point subprocesses at this one.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "cli"), str(REPO / "tests")])
    env.update(extra)
    return env


def _invoke(*args):
    return CliRunner().invoke(cli, ["sample", *map(str, args)])


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from isskit_cli.main import cli;"
            "r = CliRunner().invoke(cli, ['sample', '--help']); assert r.exit_code == 0;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_model_json(tmp_path):
    from isskit.store import open_store

    out = tmp_path / "s.h5"
    res = _invoke("--N", 300, "--indices", "0:3,10", "--json", "--no-progress", "--out", out)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["sigma"] == 0.25 and payload["N"] == 300
    assert payload["ranks"][0]["rows_sampled"] == 4
    with open_store(out) as s:
        assert s.image_index.tolist() == [0, 1, 2, 10] and s.complete.all()
        assert s.samples_per_image == 300 and s.attrs["dataset"].startswith("digits test")
        assert "isskit embedded default" in s.attrs["model"]
    # The same command again resumes: nothing left to do.
    res = _invoke("--N", 300, "--indices", "0:3,10", "--no-progress", "--out", out)
    assert res.exit_code == 0 and "0 images sampled, 4 already complete" in res.output


def test_skip_and_max(tmp_path):
    from isskit.store import open_store

    res = _invoke("--N", "5e1", "--skip", 40, "--max", 100, "--no-progress", "--out",
                  tmp_path / "s.h5")
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "s.h5") as s:
        assert s.image_index.tolist() == [0, 40, 80] and s.samples_per_image == 50


@pytest.fixture(scope="module")
def mismatched_checkpoint(tmp_path_factory):
    import torch

    from isskit.sampling.models import build_model

    path = tmp_path_factory.mktemp("ck") / "r20.pt"
    torch.save(build_model("cifar_resnet20")[1].state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sigma", "0"], "sigma (0.0) must be"),
        (["--sigma", "-1"], "sigma (-1.0) must be"),
        (["--N", "0"], "N (0) must be"),
        (["--N", "1.5"], "'1.5' is not an integer"),
        (["--N", "many"], "'many' is not a number"),
        (["--batch", "0"], "batch (0)"),
        (["--checkpoint", "/nonexistent/ck.pth", "--sigma", "0.25", "--N", "10"],
         "checkpoint /nonexistent/ck.pth does not exist"),
        (["--arch", "cifar_resnet110", "--checkpoint", "MISMATCHED", "--sigma", "0.25",
          "--N", "10"], "does not fit arch 'cifar_resnet110'"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"],
         "folder /nonexistent/cifar does not exist"),
        (["--dataset", "cifar10"], "needs a data root"),
        (["--arch", "cifar_resnet110"], "--arch needs --checkpoint"),
        (["--model", "x:y", "--checkpoint", "c.pt"], "either --model or"),
        (["--checkpoint", "MISMATCHED", "--N", "10"], "--sigma is required"),
        (["--indices", "1,2", "--skip", "2"], "--indices excludes"),
        (["--indices", "a"], "'a' is not an index"),
        (["--model", "nomodule_xyz:f", "--sigma", "1", "--N", "5"], "cannot import"),
        (["--device", "cuda:7"], "device"),
    ],
)
def test_bad_input_exits_2(tmp_path, mismatched_checkpoint, args, message):
    args = [str(mismatched_checkpoint) if a == "MISMATCHED" else a for a in args]
    out = tmp_path / "s.h5"
    res = _invoke(*args, "--no-progress", "--out", out)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    res = _invoke("--out", tmp_path / "file" / "s.h5")
    assert res.exit_code == 2 and "is not a directory" in res.output
    res = _invoke("--out", tmp_path / "absent" / "s.h5")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = _invoke("--out", tmp_path)
    assert res.exit_code == 2 and "is a folder" in res.output
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        res = _invoke("--out", ro / "s.h5")
        assert res.exit_code == 2 and "not writable" in res.output


# --batch is not among them: the noise (isskit-noise-v2) does not depend on it; a larger
# --N extends the store (test_larger_N_extends_the_store).
@pytest.mark.parametrize("change", [["--sigma", "0.5"], ["--N", "40"], ["--seed", "3"],
                                    ["--indices", "0:3"]])
def test_existing_store_with_other_parameters(tmp_path, change):
    out = tmp_path / "s.h5"
    base = ["--N", "50", "--indices", "0:2", "--no-progress", "--out", out]
    assert _invoke(*base).exit_code == 0
    before = out.read_bytes()
    res = _invoke(*base, *change)
    assert res.exit_code == 2, res.output
    assert "different run parameters" in res.output and "Traceback" not in res.output
    assert out.read_bytes() == before


def test_larger_N_extends_the_store(tmp_path):
    from isskit.store import open_store

    out, fresh = tmp_path / "s.h5", tmp_path / "fresh.h5"
    base = ["--indices", "0:3", "--seed", "2", "--no-progress"]
    assert _invoke("--N", 50, *base, "--out", out).exit_code == 0
    res = _invoke("--N", 300, *base, "--out", out)
    assert res.exit_code == 0, res.output
    assert "3 images sampled, 0 already complete, of 3; N = 300" in res.output
    assert _invoke("--N", 300, *base, "--out", fresh).exit_code == 0
    with open_store(out) as s, open_store(fresh) as f:
        assert s.samples_per_image == 300 and (s.drawn == 300).all()
        np.testing.assert_array_equal(s.labels(), f.labels())


def test_store_being_written_exits_1(tmp_path):
    from isskit.store import open_for_writing

    out = tmp_path / "s.h5"
    with open_for_writing(out, image_index=[0], true_label=[0], samples_per_image=5,
                          attrs={"sigma": 0.25, "num_classes": 10}):
        res = _invoke("--N", 5, "--indices", "0", "--no-progress", "--out", out)
    assert res.exit_code == 1, res.output
    assert "another process" in res.output and "Traceback" not in res.output


def test_model_factory(tmp_path):
    from isskit.store import open_store

    out = tmp_path / "s.h5"
    sys.path.insert(0, str(REPO / "tests"))
    try:
        res = _invoke("--model", "sampling_helpers:slow_default", "--sigma", 0.5, "--N", 20,
                      "--indices", "4", "--no-progress", "--out", out)
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert res.exit_code == 0, res.output
    with open_store(out) as s:
        assert s.attrs["model"].startswith("factory sampling_helpers:slow_default, 10 classes")


def _uninterrupted(out, **kw):
    from isskit.sampling import sample_to_store
    from isskit.sampling.datasets import load_dataset
    from isskit.sampling.models import default_model

    sample_to_store(default_model().model, load_dataset("digits").dataset, out, device="cpu",
                    progress=False, **kw)


def test_kill_and_resume(tmp_path):
    from isskit.store import StoreError, open_store

    out = tmp_path / "killed.h5"
    n_rows = 12
    cmd = [sys.executable, "-m", "isskit_cli.main", "sample", "--model",
           "sampling_helpers:slow_default", "--sigma", "0.25", "--N", "1000", "--batch", "250",
           "--indices", f"0:{n_rows}", "--no-progress", "--out", str(out)]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    done = 0
    deadline = time.monotonic() + 240  # a loaded CI machine starts torch slowly
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                try:
                    with open_store(out) as s:
                        done = int(s.complete.sum())
                except StoreError:
                    done = 0  # being created
            if done >= 3:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    assert 3 <= done < n_rows

    ref = tmp_path / "reference.h5"
    _uninterrupted(ref, sigma=0.25, samples_per_image=1000, batch=250, indices=list(range(n_rows)))
    with open_store(out) as killed, open_store(ref) as full:
        complete = killed.complete
        assert 3 <= complete.sum() < n_rows
        # Every row marked complete at the kill is whole and right.
        np.testing.assert_array_equal(killed.labels(np.flatnonzero(complete)),
                                      full.labels(np.flatnonzero(complete)))

    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{int(complete.sum())} already complete" in res.stdout
    with open_store(out) as resumed, open_store(ref) as full:
        assert resumed.complete.all()
        np.testing.assert_array_equal(resumed.image_index, full.image_index)
        np.testing.assert_array_equal(resumed.labels(), full.labels())


def test_torchrun_two_processes_then_merge(tmp_path):
    from isskit.store import merge_stores, open_store

    common = ["sample", "--N", "400", "--indices", "0:9", "--no-progress"]
    env = _env(OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc_per_node", "2", "-m", "isskit_cli.main", *common, "--json",
         "--out", str(tmp_path / "d.h5")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    payload = json.loads(run.stdout)
    assert [r["rank"] for r in payload["ranks"]] == [0, 1]
    assert [r["n_images"] for r in payload["ranks"]] == [5, 4]
    parts = [tmp_path / "d.rank0.h5", tmp_path / "d.rank1.h5"]
    assert payload["merge_command"] == f"isskit merge {tmp_path / 'd.h5'} {parts[0]} {parts[1]}"
    with open_store(parts[1]) as s:
        assert s.image_index.tolist() == [1, 3, 5, 7]
    merge_stores(tmp_path / "d.h5", parts)

    single = subprocess.run(
        [sys.executable, "-m", "isskit_cli.main", *common, "--out", str(tmp_path / "s.h5")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr
    with open_store(tmp_path / "d.h5") as merged, open_store(tmp_path / "s.h5") as one:
        assert merged.complete.all()
        np.testing.assert_array_equal(merged.image_index, one.image_index)
        np.testing.assert_array_equal(merged.true_label, one.true_label)
        np.testing.assert_array_equal(merged.labels(), one.labels())
        for key in ("sigma", "seed", "model", "noise", "num_classes", "dataset"):
            assert merged.attrs[key] == one.attrs[key]


def _through_torchrun(args):
    """The script arguments torchrun's own parser hands to ``-m isskit_cli.main``."""
    from torch.distributed.run import get_args_parser

    line = ["--nproc-per-node", "2", "-m", "isskit_cli.main", *args]
    try:
        parsed = get_args_parser().parse_args(line)
    except SystemExit:  # argparse printed why (an ambiguous abbreviation of its options)
        return None
    return [parsed.training_script, *parsed.training_script_args]


#: Spellings kept for plain use only: torchrun's argparse reads "--max" as an ambiguous
#: abbreviation of its --max-restarts / --max_restarts and stops; --max-index is the
#: launcher-safe spelling of the same option.
_PLAIN_ONLY = {"--max"}


def test_every_sample_option_survives_torchrun(capsys):
    # Every option of `sample`, found by introspecting the click command (so a new option
    # is covered the day it is added), through torchrun's parser exactly as the README line
    # passes it: each must reach the script unchanged, value included.
    from isskit_cli.sample import sample

    options = [p for p in sample.params if isinstance(p, click.Option)]
    every = {s for p in options for s in [*p.opts, *p.secondary_opts]}
    assert {"--N", "--max", "--max-index", "--indices", "--out", "--no-progress"} <= every
    for opt in options:
        spellings = [*opt.opts, *opt.secondary_opts]
        survivors = []
        for spelling in spellings:
            args = ["sample", spelling] if opt.is_flag else ["sample", spelling, "7"]
            got = _through_torchrun(args)
            if spelling in _PLAIN_ONLY:
                continue
            assert got == ["isskit_cli.main", *args], (spelling, got, capsys.readouterr().err)
            survivors.append(spelling)
        assert survivors, f"{opt.name}: no spelling survives torchrun ({spellings})"
    # the `=` form too, and the exemption is exactly what torchrun refuses today
    assert _through_torchrun(["sample", "--max-index=40"]) == [
        "isskit_cli.main", "sample", "--max-index=40"]
    assert _through_torchrun(["sample", "--max", "40"]) is None
    assert "ambiguous option: --max" in capsys.readouterr().err


def test_readme_torchrun_line_with_max(tmp_path):
    # The README's multi-GPU line as a user of Cohen's certify.py fills it in (--N, --max),
    # with the launcher-safe --max-index, on two gloo processes; merged, it equals the plain
    # single-process run with --max byte for byte.
    from isskit.store import open_store

    env = _env(OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--standalone", "-m", "isskit_cli.main", "sample", "--N", "2000", "--max-index", "40",
         "--no-progress", "--out", str(tmp_path / "streams.h5")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    parts = [tmp_path / "streams.rank0.h5", tmp_path / "streams.rank1.h5"]
    merge = subprocess.run(
        [sys.executable, "-m", "isskit_cli.main", "merge", str(tmp_path / "streams.h5"),
         *map(str, parts), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert merge.returncode == 0, merge.stderr
    single = subprocess.run(
        [sys.executable, "-m", "isskit_cli.main", "sample", "--N", "2000", "--max", "40",
         "--no-progress", "--out", str(tmp_path / "single.h5")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr
    with open_store(tmp_path / "streams.h5") as merged, open_store(tmp_path / "single.h5") as one:
        assert merged.image_index.tolist() == list(range(40)) and merged.complete.all()
        assert merged.labels().tobytes() == one.labels().tobytes()
        assert merged.true_label.tobytes() == one.true_label.tobytes()
        for key in ("sigma", "seed", "model", "noise", "num_classes", "dataset",
                    "samples_per_image"):
            assert merged.attrs[key] == one.attrs[key]
