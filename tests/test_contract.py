"""DESIGN.md's public contract, checked in one place: option names, file columns, JSON keys,
and the Python entry points ``psi_table`` and ``replay`` that scripts rely on.

Everything else is free to change; these may not change without changing DESIGN.md.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.policies import IAS, ISS
from isskit.psi import psi_table
from isskit.replay import replay
from isskit.studies.synthetic import write_synthetic_store

#: command -> (arguments, options) exactly as DESIGN.md's "The public contract" names them
CONTRACT = {
    "psi": ([], ["--k-bar", "--U", "--decline", "--sigma", "--alpha", "--delta", "--out",
                 "--plot", "--json"]),
    "verify": ([], ["--k-bar", "--U", "--decline", "--sigma", "--alpha", "--delta", "--json"]),
    "sample": ([], ["--model", "--arch", "--checkpoint", "--dataset", "--data-root", "--sigma",
                    "--N", "--batch", "--skip", "--max", "--seed", "--device", "--out"]),
    "info": (["store"], ["--json"]),
    "merge": (["out", "inputs"], []),
    "replay": (["store"], ["--policy", "--reference", "--out", "--seconds-per-sample",
                           "--export-cohen", "--plot", "--json"]),
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_command_options(name):
    command = cli.get_command(None, name)
    arguments, options = CONTRACT[name]
    have_args = [p.name for p in command.params if p.param_type_name == "argument"]
    have_opts = {o for p in command.params if p.param_type_name == "option" for o in p.opts}
    assert have_args == arguments
    assert set(options) <= have_opts, set(options) - have_opts


def test_merge_takes_several_inputs():
    (inputs,) = [p for p in cli.get_command(None, "merge").params if p.name == "inputs"]
    assert inputs.nargs == -1 and inputs.required


def test_psi_table_has_p_and_k_on_the_grid():
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.01)
    np.testing.assert_allclose(t.p, np.arange(101) / 100, rtol=0, atol=1e-15)
    assert t.k.shape == (101,) and t.k.dtype.kind == "i"
    # golden: tests/test_cli_psi.py (psi at p = 1 for the paper's AD setting at sigma 0.5)
    assert t.k[-1] == 67040


def test_psi_out_csv_columns_p_k_for_every_grid_point(tmp_path):
    out = tmp_path / "table.csv"
    res = CliRunner().invoke(cli, ["psi", "--k-bar", "1e5", "--U", "0.05", "--decline", "ad",
                                   "--sigma", "0.5", "--delta", "0.01", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        rows = list(csv.DictReader(f))  # plain CSV: no comment lines to skip
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.01)
    assert list(rows[0]) == ["p", "k"] and len(rows) == t.p.size
    np.testing.assert_array_equal([float(r["p"]) for r in rows], t.p)
    np.testing.assert_array_equal([int(r["k"]) for r in rows], t.k)


def test_verify_exit_status_holds_0_violated_1():
    base = ["verify", "--U", "0.01", "--decline", "rd", "--sigma", "0.5", "--delta", "0.01"]
    # paper RD breaks Prop. 1 next to p_A = 1/2; the sup mapping repairs it (docs/mapping.md)
    assert CliRunner().invoke(cli, [*base, "--k-bar", "100000"]).exit_code == 1
    assert CliRunner().invoke(cli, [*base, "--k-bar", "100000", "--mapping", "sup"]
                              ).exit_code == 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "streams.h5"
    rng = np.random.default_rng(7)
    n = 10
    write_synthetic_store(
        path,
        rng.uniform(0.5, 1.0, n),
        predicted=np.zeros(n, int),
        true_label=np.zeros(n, int),
        samples_per_image=2500,
        num_classes=10,
        sigma=0.25,
        seed=1,
        seconds_per_sample=0.001,
    )
    return path


def test_replay_json_per_policy_keys(store):
    res = CliRunner().invoke(cli, ["replay", str(store), "--policy", "ISS-AD-0.2-0.05",
                                   "--policy", "ias n=500", "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert [p["name"] for p in obj["policies"]] == ["ISS-AD-0.2-0.05", "IAS-0.05"]
    for p in obj["policies"]:
        assert {"name", "params", "acr", "mad", "mean_samples", "est_minutes"} <= set(p)
    assert obj["policies"][0]["params"]["k_bar"] == 2000
    assert obj["policies"][1]["params"] == {"kind": "ias", "n": 500, "alpha": 0.001}


@pytest.mark.parametrize(
    "policies",
    [
        ["ISS-AD-0.2-0.05", "ias n=500"],  # spec strings
        "ISS-AD-0.2-0.05",  # one spec
        [ISS(k_bar=2000, U=0.05, decline="ad"), IAS(n=500)],  # policy objects
        ["ISS-AD-0.2-0.05", IAS(n=500)],  # mixed
    ],
)
def test_replay_returns_the_results_dataset(store, policies):
    ds = replay(store, policies)
    assert isinstance(ds, xr.Dataset)
    assert ds.policy.values[0] == "ISS-AD-0.2-0.05"
    assert set(ds.dims) == {"policy", "image", "radius_grid"}
    for var in ("prediction", "radius", "p_lower", "samples"):
        assert ds[var].dims == ("policy", "image"), var
    for var in ("true_label", "image_index"):
        assert ds[var].dims == ("image",), var
    for var in ("acr", "mad", "mean_samples", "est_minutes"):
        assert ds[var].dims == ("policy",), var
    assert ds.certified_accuracy.dims == ("policy", "radius_grid")
    for coord in ("kind", "k_bar", "U", "decline", "k0", "n0", "n", "alpha", "fresh"):
        assert ds[coord].dims == ("policy",), coord
    for attr in ("isskit_version", "store_path", "store_sha256", "created_at"):
        assert attr in ds.attrs, attr
    # the same numbers whichever form named the policy
    same = replay(store, ["ISS-AD-0.2-0.05"])
    np.testing.assert_array_equal(ds.radius.values[0], same.radius.values[0])
