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
    write_synthetic_store(
        path,
        realistic_p_A(n, rng),
        predicted=predicted,
        true_label=np.where(np.arange(n) % 4 == 0, (predicted + 1) % 10, predicted),
        samples_per_image=N,
        num_classes=10,
        sigma=0.25,
        seed=2,
        seconds_per_sample=SPS,
    )
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


def test_plot_samples_against_ca_of_decision_policies(store, tmp_path):
    from isskit.replay.plots import samples_ca_curves

    specs = ["cs r=0.1,0.25 n_max=2000 method=kt,union", "staged r=0.1,0.25 stages=100/400/1500",
             "staged r=0.1,0.25 stages=200/1800", "adaptive r=0.1 n0=20 stages=100/400/1000"]
    res = _run(store, *(x for s in specs for x in ("-p", s)), "--reference",
               "cohen n0=100 n=1800", "--no-progress", "--out", tmp_path / "d.nc",
               "--plot", tmp_path / "figs")
    assert res.exit_code == 0, res.output
    # decision policies only: no ACR or radius-grid figure, the samples-CA figure written
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["samples_vs_ca.png"]
    png = (tmp_path / "figs" / "samples_vs_ca.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    ds = load_results(tmp_path / "d.nc")
    curves = samples_ca_curves(ds)
    assert list(curves) == [0.1, 0.25]
    assert sorted(curves[0.1]) == ["Adaptive", "CS KT", "CS union", "Staged",
                                   "reference Cohen-0.18"]
    # every point is a policy's (mean samples, CA at r) from the Dataset, each policy once
    seen = []
    for r, fams in curves.items():
        for label, (x, y) in fams.items():
            assert np.all(np.diff(x) >= 0)
            if label.startswith("reference"):
                continue
            for xi, yi in zip(x, y, strict=True):
                hit = [str(p) for p in ds.policy.values
                       if float(ds.r.sel(policy=p)) == r
                       and float(ds.mean_samples.sel(policy=p)) == xi
                       and float(ds.certified_accuracy_at_r.sel(policy=p)) == yi]
                assert hit, (r, label, xi, yi)
                seen += hit[:1]
    assert sorted(seen) == sorted(map(str, ds.policy.values))
    assert curves[0.25]["Staged"][0].size == 2  # two schedules: one curve of two points
    # the reference point: Cohen's own mean samples (1,900) and its CA at r from the Dataset
    x, y = curves[0.25]["reference Cohen-0.18"]
    assert x[0] == pytest.approx(1900.0)
    at = ds.r.values == 0.25
    assert np.all(ds.reference_certified_accuracy_at_r.values[at] == y[0])
    assert 0 < y[0] < 1


def test_plot_mixed_policies_writes_both_kinds(store, tmp_path):
    res = _run(store, "-p", "ias n=500,2000", "-p", "cs r=0.25 n_max=2000", "--no-progress",
               "--reference", "cohen n0=100 n=1800", "--plot", tmp_path / "figs")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "acr_vs_time.png", "certified_accuracy.png", "samples_vs_ca.png"]

# ------------------------------------------------------------------ --oracle (issue 11)

ORACLE_ARGS = ["-p", "budget B=800 k0=50", "-p", "iss decline=ad k_bar=2000 U=0.05 k0=50 "
               "delta=0.01 fresh=true", "-p", "ias n=500", "-p", "staged r=0.1 stages=100/1000",
               "--reference", "ias n=2000", "--oracle", "--no-progress"]


def _oracle_json(path):
    res = _run(path, *ORACLE_ARGS, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _check_against_compare_to_oracles(out, p_A, correct):
    from isskit.studies.oracle import compare_to_oracles

    radius = [r for r in out["policies"] if r["params"]["kind"] != "staged"]
    assert len(radius) == 3
    for row in radius:
        want = compare_to_oracles(row["mean_samples"], row["acr"], p_A, correct,
                                  sigma=out["sigma"], alpha=row["params"]["alpha"]).to_dict()
        for key in ("ias_acr_same_samples", "oracle_blind_acr", "oracle_aware_acr",
                    "share_blind", "share_aware"):
            assert row[key] == pytest.approx(want[key], rel=1e-12), (row["name"], key)
    staged = next(r for r in out["policies"] if r["params"]["kind"] == "staged")
    assert all(staged[key] is None for key in ("ias_acr_same_samples", "share_blind"))
    budget = next(r for r in out["policies"] if r["params"]["kind"] == "budget")
    assert budget["price"] > 0 and budget["mean_samples"] <= 800  # the price B implied
    # the budget policy beats IAS at its own cost on these streams: a share above 0
    assert budget["share_blind"] > 0


def test_oracle_json_matches_compare_to_oracles_with_stored_p_A(store):
    out = _oracle_json(store)
    assert out["p_source"] == "stored"
    with h5py.File(store, "r") as f:
        p_A = f["extra/p_A"][...]
        correct = f["extra/predicted"][...] == f["true_label"][...]
    assert not correct.all()  # a quarter of the images are predicted wrong
    _check_against_compare_to_oracles(out, p_A, correct)
    table = _run(store, *ORACLE_ARGS)
    assert table.exit_code == 0, table.output
    for text in ("Share blind", "Share aware", "p_A: the true value stored per image"):
        assert text in table.stdout


def test_oracle_without_stored_p_A_uses_the_empirical_frequency_and_says_so(store, tmp_path):
    import shutil

    bare = tmp_path / "bare.h5"
    shutil.copy(store, bare)
    with h5py.File(bare, "r+") as f:
        del f["extra"]  # a sampled store: no true p_A
        labels = f["labels"][...].astype(np.int64)
        true_label = f["true_label"][...]
    counts = np.stack([np.bincount(r, minlength=10) for r in labels])
    out = _oracle_json(bare)
    assert out["p_source"] == "empirical"
    _check_against_compare_to_oracles(out, counts.max(axis=1) / N,
                                      counts.argmax(axis=1) == true_label)
    table = _run(bare, *ORACLE_ARGS)
    assert table.exit_code == 0, table.output
    assert ("p_A: not stored; the empirical frequency of the top class over the whole stream "
            "stands in for it.") in table.stdout


# ------------------------------------------------------------------ partly drawn rows (issue 12)

PARTIAL_POLICIES = ["budget price=0.0002 k0=50", "iss decline=ad k_bar=2000 U=0.1 k0=50 "
                    "delta=0.01 fresh=true"]


@pytest.fixture(scope="module")
def partial_store(store, tmp_path_factory):
    """The fixture store as ``isskit certify`` would have left it for PARTIAL_POLICIES:
    each row drawn only as far as the hungriest of them consumed (``/drawn``), the rest 0.
    """
    from isskit.store import open_for_writing, open_store

    full = replay(store, PARTIAL_POLICIES)
    drawn = full.samples.values.max(axis=0)
    path = tmp_path_factory.mktemp("partial") / "certified.h5"
    with open_store(store) as s:
        labels = np.asarray(s.labels(), dtype=np.int64)
        index, truth = np.asarray(s.image_index), np.asarray(s.true_label)
    labels = np.where(np.arange(N)[None, :] < drawn[:, None], labels, 0)
    with open_for_writing(path, image_index=index, true_label=truth, samples_per_image=N,
                          attrs={"sigma": 0.25, "num_classes": 10, "seed": 2}) as w:
        w.write_rows_at(np.arange(len(index)), labels, np.full(len(index), np.nan),
                        drawn=drawn)
    assert drawn.min() < 2000 <= N  # the default reference IAS(k_bar = 2000) does not fit
    return path, full, drawn


def test_partly_drawn_rows_replay_the_same_and_the_default_reference_gives_way(partial_store,
                                                                                store):
    from isskit.replay._reference import ReferenceWarning

    path, full, drawn = partial_store
    with pytest.warns(ReferenceWarning, match=r"MAD and speed-up of Budget-price=0.0002-k0=50, "
                                              r"ISS-AD-0.2-0.1-k0=50-delta=0.01-fresh are NaN: "
                                              r"the default reference IAS-0.2 needs 2000 "
                                              r"samples per image, but \d+ of the 30 rows"):
        ds = replay(path, PARTIAL_POLICIES)
    for v in ("prediction", "radius", "samples", "k_hat"):
        np.testing.assert_array_equal(ds[v].values, full[v].values)
    np.testing.assert_array_equal(ds.acr.values, full.acr.values)
    assert np.all(np.isnan(ds.mad.values)) and np.all(np.isnan(ds.speedup.values))
    # a reference that fits every row drawn: MAD and speed-up as on the full rows
    fits = f"ias n={int(drawn.min())}"
    a, b = replay(path, PARTIAL_POLICIES, reference=fits), replay(store, PARTIAL_POLICIES,
                                                                 reference=fits)
    np.testing.assert_array_equal(a.mad.values, b.mad.values)
    want = (int(drawn.min()) * len(drawn)) / full.total_samples.values
    np.testing.assert_allclose(a.speedup.values, want, rtol=1e-15)
    # one given explicitly that does not fit stays an error, naming the image and numbers
    with pytest.raises(ValueError, match=r"policy IAS-0.2 needs 2000 samples for image \d+ "
                                         r"\(and \d+ more images\), but its stream holds \d+ "
                                         r"drawn samples \(of N = 2000\)"):
        replay(path, PARTIAL_POLICIES, reference="ias n=2000")
    # the CLI: exit 0, the note on stderr, "-" in the table
    import warnings

    with warnings.catch_warnings():
        # as outside pytest (whose filter turns warnings into errors): shown as a note
        warnings.simplefilter("default", ReferenceWarning)
        res = _run(path, "-p", PARTIAL_POLICIES[0], "-p", PARTIAL_POLICIES[1],
                   "--no-progress")
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("note: MAD and speed-up of Budget-price=0.0002-k0=50")
    row = next(line for line in res.stdout.splitlines() if line.startswith("Budget-"))
    assert " -x " in row  # speed-up unknown
    # --oracle needs a p_A this store cannot give: said, with the option, exit 2
    res = _run(path, "-p", PARTIAL_POLICIES[0], "--oracle", "--no-progress")
    assert res.exit_code == 2
    assert ("--oracle needs each image's p_A: the store holds no /extra/p_A column"
            in res.output) and "drawn only in part" in res.output
