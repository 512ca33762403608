"""``isskit replay``: table, JSON, netCDF, Cohen logs, plots, and bad input as usage errors."""

from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.replay import load_results, replay
from isskit.studies.synthetic import realistic_p_A, write_synthetic_store

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}
N = 2000
SPS = 0.002


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "streams.h5"
    rng = np.random.default_rng(5)
    n = 30
    predicted = rng.integers(0, 10, n)
    write_synthetic_store(path, realistic_p_A(n, rng), predicted=predicted,
                          true_label=np.where(np.arange(n) % 4 == 0, (predicted + 1) % 10,
                                              predicted),
                          N=N, num_classes=10, sigma=0.25, seed=2, seconds_per_sample=SPS)
    return path


ARGS = ["-p", "iss decline=ad k_bar=2000 U=0.05,0.1 k0=50 delta=0.01", "-p", "ias n=500,2000",
        "--no-progress"]


def _run(*args):
    return CliRunner().invoke(cli, ["replay", *map(str, args)])


def test_table(store):
    res = _run(store, *ARGS)
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in ("Avg samples", "Time (min)", "Speed-up", "MAD", "ACR",
                 "ISS-AD-0.2-0.05-k0=50-delta=0.01", "IAS-0.05", "IAS-0.2",
                 "MAD and speed-up against IAS-0.2"):
        assert text in out, text
    ds = replay(store, ["iss decline=ad k_bar=2000 U=0.05,0.1 k0=50 delta=0.01",
                        "ias n=500,2000"])
    # the IAS-0.2 row: 2000 samples, 30 x 2000 x 0.002 s = 2 min, speed-up 1, MAD 0
    row = next(line for line in out.splitlines() if line.startswith("IAS-0.2 "))
    cells = row.split()
    assert cells[1] == "selection-biased"  # the validity class beside every policy
    assert cells[2:6] == ["2000", "2.0", "1.00x", "0.000"]
    assert cells[6] == f"{float(ds.acr.sel(policy='IAS-0.2')):.3f}"


def test_json_is_one_object_with_every_policy(store):
    res = _run(store, *ARGS, "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    names = [p["name"] for p in obj["policies"]]
    assert names == ["ISS-AD-0.2-0.05-k0=50-delta=0.01", "ISS-AD-0.2-0.1-k0=50-delta=0.01",
                     "IAS-0.05", "IAS-0.2"]
    ds = replay(store, names)
    for p in obj["policies"]:
        for key in ("acr", "mad", "mean_samples", "est_minutes"):
            assert p[key] == pytest.approx(float(ds[key].sel(policy=p["name"])), rel=1e-12)
    assert obj["policies"][0]["params"] == {
        "kind": "iss", "k_bar": 2000, "U": 0.05, "decline": "ad", "k0": 50, "delta": 0.01,
        "alpha": 0.001, "fresh": False, "mapping": "paper"}
    assert obj["n_images"] == 30 and obj["seconds_per_sample"] == pytest.approx(SPS)


def test_outputs(store, tmp_path):
    res = _run(store, *ARGS, "--out", tmp_path / "r.nc", "--export-cohen", tmp_path / "logs",
               "--plot", tmp_path / "figs", "--seconds-per-sample", "0.01", "--radii", "0,0.5")
    assert res.exit_code == 0, res.output
    ds = load_results(tmp_path / "r.nc")
    assert ds.radius_grid.values.tolist() == [0.0, 0.5]
    assert ds.attrs["seconds_per_sample"] == 0.01
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "acr_vs_time.png", "certified_accuracy.png", "k_hat_vs_p_A.png"]
    for p in (tmp_path / "figs").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = tmp_path / "logs" / "IAS-0.05.tsv"
    with log.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == ["idx", "label", "predict", "radius", "correct", "time"]
    i = ds.sel(policy="IAS-0.05")
    assert [int(r["predict"]) for r in rows] == i.prediction.values.tolist()
    assert [int(r["label"]) for r in rows] == ds.true_label.values.tolist()
    np.testing.assert_allclose([float(r["radius"]) for r in rows], i.radius.values, atol=5e-7)
    assert [int(r["correct"]) for r in rows] == (
        (i.prediction.values == ds.true_label.values).astype(int).tolist())
    # time: 500 samples x 0.01 s, as certify.py writes it
    assert rows[0]["time"] == str(datetime.timedelta(seconds=5.0)) == "0:00:05"
    assert len(list((tmp_path / "logs").iterdir())) == 4


def test_policies_file_and_reference(store, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('policies = ["IAS-0.1"]\n[[policy]]\nkind = "ias"\nn = [500, 2000]\n')
    res = _run(store, "--policies-file", f, "--reference", "IAS-0.1", "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert [p["name"] for p in obj["policies"]] == ["IAS-0.1", "IAS-0.05", "IAS-0.2"]
    assert {p["reference"] for p in obj["policies"]} == {"IAS-0.1"}
    assert obj["policies"][0]["mad"] == 0.0


def _incomplete(tmp_path):
    from isskit.store import open_for_writing

    path = tmp_path / "inc.h5"
    with open_for_writing(path, image_index=[0, 1, 2], true_label=[0, 1, 1],
                          samples_per_image=100, attrs={"sigma": 0.5, "num_classes": 2}) as w:
        w.write_row(1, np.ones(100, np.uint16), seconds=0.1)
    return path


def test_allow_incomplete(tmp_path):
    path = _incomplete(tmp_path)
    res = _run(path, "-p", "ias n=100", "--no-progress")
    assert res.exit_code == 2
    assert "2 of 3 rows of the store are incomplete" in res.output
    assert "Traceback" not in res.output
    res = _run(path, "-p", "ias n=100", "--allow-incomplete", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "2 incomplete rows left out" in res.stdout
    res = _run(path, "-p", "ias n=100", "--allow-incomplete", "--json", "--no-progress")
    assert json.loads(res.stdout)["n_images_left_out"] == 2


def _truncated(tmp_path, store):
    p = tmp_path / "cut.h5"
    p.write_bytes(store.read_bytes()[:5000])
    return p


def _foreign(tmp_path, store):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    return p


def _newer(tmp_path, store):
    p = tmp_path / "newer.h5"
    p.write_bytes(store.read_bytes())
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = 99
    return p


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda t, s: t / "absent.h5", ["-p", "IAS-0.1"], "does not exist"),
        (_truncated, ["-p", "IAS-0.1"], "cut.h5"),
        (_foreign, ["-p", "IAS-0.1"], "not an isskit stream store"),
        (_newer, ["-p", "IAS-0.1"], "schema version 99"),
        (lambda t, s: s, [], "name at least one policy"),
        (lambda t, s: s, ["-p", "bogus n=3"],
         "valid kinds: adaptive, budget, cohen, cs, ias, iss, staged"),
        (lambda t, s: s, ["-p", "ias size=3"], "valid: n, alpha"),
        (lambda t, s: s, ["-p", "ias n=0"], r"n (0) must be an integer >= 1"),
        (lambda t, s: s, ["-p", "iss decline=rd k_bar=100 U=2"], "U (2.0) must be < 1"),
        (lambda t, s: s, ["-p", "IAS-1"], "needs 10000 samples for image 0"),
        (lambda t, s: s, ["-p", "IAS-0.1", "--reference", "ias n=1,2"], "exactly one policy"),
        (lambda t, s: s, ["-p", "IAS-0.1", "--seconds-per-sample", "-1"], "finite number >= 0"),
        (lambda t, s: s, ["-p", "IAS-0.1", "--radii", "a,b"], "--radii ('a') must be a number"),
        (lambda t, s: s, ["-p", "IAS-0.1", "--out", "/no/such/dir/r.nc"], "does not exist"),
        (lambda t, s: s, ["--policies-file", "/no/such.toml"], "does not exist"),
    ],
)
def test_bad_input_is_exit_2_without_traceback(tmp_path, store, make, args, message):
    res = _run(make(tmp_path, store), *args, "--no-progress")
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_help_imports_no_torch_numba_or_matplotlib():
    code = (
        "import sys\n"
        "from isskit_cli.main import cli\n"
        "try:\n    cli(['replay', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'numba', 'xarray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "ISS-AD-10-0.05" in res.stdout and "--export-cohen" in res.stdout


def test_output_write_failure_names_the_option(store, tmp_path):
    # A file where --plot's folder should be: the error names --plot and exits 2.
    blocker = tmp_path / "figs"
    blocker.write_text("not a folder")
    res = _run(str(store), "-p", "IAS-0.1", "--no-progress", "--plot", str(blocker / "sub"))
    assert res.exit_code == 2, res.output
    assert "--plot" in res.output and "Traceback" not in res.output
