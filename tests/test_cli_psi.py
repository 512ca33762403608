"""``isskit psi`` and ``isskit verify`` through click's CliRunner."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli
from reference import clipped_decline_ref, psi_bisect_ref, psi_grid_ref

from isskit.psi import PsiTable, psi_table

REPO = Path(__file__).resolve().parents[1]
AD = ["--k-bar", "100000", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"]
RD = ["--k-bar", "100000", "--U", "0.01", "--decline", "rd", "--sigma", "0.5"]


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_psi_prints_k_at_a_few_p():
    res = _run("psi", *AD)
    assert res.exit_code == 0, res.output
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.001)
    lines = {line.split()[0]: line.split()[1:] for line in res.output.splitlines()[2:]}
    for p in ("0.5", "0.9", "0.99", "1"):
        assert lines[p] == [str(t.psi_iss(float(p)))]
    # scipy: the first k in 1..100000 with R(1e5, p) - R(k, p) <= 0.05, R(k, p) = 0.5 *
    # norm.ppf(beta.ppf(0.001, p k, k - p k + 1)): 2051 at p = 0.9, 67040 at p = 1 (the full
    # scan is tests/test_psi.py::test_psi_at_paper_scale_against_scipy_scan)
    assert lines["0.9"] == ["2051"] and lines["1"] == ["67040"]


def test_psi_out_writes_p_k_for_every_grid_point(tmp_path):
    out = tmp_path / "table.csv"
    res = _run("psi", *AD, "--delta", "0.01", "--out", str(out))
    assert res.exit_code == 0, res.output
    with out.open() as f:
        rows = list(csv.DictReader(f))  # plain CSV: no comment lines to skip
    t = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.01)
    assert len(rows) == 101 and list(rows[0]) == ["p", "k"]
    np.testing.assert_array_equal([int(r["k"]) for r in rows], t.k)
    assert PsiTable.load(out).params() == t.params()


def test_psi_json_is_one_object():
    res = CliRunner().invoke(cli, ["psi", *RD, "--mapping", "sup", "--json"])
    assert res.exit_code == 0
    obj = json.loads(res.stdout)
    (table,) = obj["tables"]
    assert table["mapping"] == "sup" and table["decline"] == "rd"
    t = psi_table(100_000, 0.01, "rd", 0.5, 0.001, 0.001)
    # scipy: the first k with (R(1e5, 0.9) - R(k, 0.9)) / R(1e5, 0.9) <= 0.01 is 32396
    # (tests/reference.py's bisection on scipy.stats' radius computes it here)
    want = int(psi_bisect_ref(0.9, 100_000, 0.01, "rd", 0.5, 0.001)[0])
    assert table["k_at"]["0.9"] == int(t.psi_iss(0.9)) == want == 32396


def _paper_rd_worst_violation():
    """The worst Prop. 1 violation of RD U = 0.01, k_bar = 100000, sigma = 0.5, from scipy.

    psi on the grid without isskit (tests/reference.py): it is 0 up to p = 0.504 (R(k_bar,
    p) <= 0) and at least 31243 after, the bottom of its U at p = 0.943. The interval
    [0.504, 0.943] gets max(psi(0.504), psi(0.943)) = 31243; at p_A = 0.505, the first grid
    point past the sign change, R(31243, 0.505) < 0: the certificate abstains, RD = 1, and
    RD - U = 0.99. Every p_A up to near 0.943 loses as much; the first one is reported.
    """
    p, k = psi_grid_ref(100_000, 0.01, "rd", 0.5, 0.001, 0.001)
    first = int(np.argmax(k > 0))
    bottom = first + int(np.argmin(k[first:]))
    k_hat = int(k[bottom])
    excess = clipped_decline_ref(k_hat, p[first], 100_000, "rd", 0.5, 0.001) - 0.01
    return float(p[first - 1]), float(p[bottom]), float(p[first]), k_hat, excess


def test_psi_plot_several_U_and_k_bar(tmp_path):
    png = tmp_path / "fig.png"
    res = _run("psi", "--k-bar", "10000,50000", "--U", "0.05,0.1", "--decline", "ad",
               "--sigma", "0.5", "--delta", "0.01", "--plot", str(png))
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = res.output.splitlines()[1]
    assert header.count("k_bar=") == 4 and "k_bar=50000 U=0.1" in header


def test_verify_exit_status_and_output():
    res = _run("verify", *AD)
    assert res.exit_code == 0 and res.output.strip().endswith("holds")
    res = _run("verify", *RD)
    assert res.exit_code == 1
    p_low, p_up, p_A, k_hat, _ = _paper_rd_worst_violation()
    assert (p_low, p_up, p_A, k_hat) == (0.504, 0.943, 0.505, 31243)  # docs/mapping.md
    assert (f"worst violation of Prop. 1: p_low={p_low:g} p_up={p_up:g} p_A={p_A:g} "
            f"k_hat={k_hat}") in res.output
    assert res.output.strip().endswith("violated")
    res = _run("verify", *RD, "--mapping", "sup", "--k0", "1000")
    assert res.exit_code == 0, res.output


def test_verify_json():
    res = CliRunner().invoke(cli, ["verify", *RD, "--json"])
    assert res.exit_code == 1
    obj = json.loads(res.stdout)
    p_low, p_up, p_A, k_hat, excess = _paper_rd_worst_violation()
    assert obj["holds"] is False and obj["worst"]["k_hat"] == k_hat == 31243
    assert (obj["worst"]["p_low"], obj["worst"]["p_up"], obj["worst"]["p_A"]) == (p_low, p_up,
                                                                                  p_A)
    assert obj["worst"]["decline_minus_U"] == pytest.approx(excess) == pytest.approx(0.99)


BAD = [
    (["--U", "0"], "--U (0.0)"),
    (["--U", "-0.5"], "--U (-0.5)"),
    (["--U", "1", "--decline", "rd"], "--U (1.0) must be < 1"),
    (["--alpha", "0"], "--alpha (0.0)"),
    (["--alpha", "1.5"], "--alpha (1.5)"),
    (["--sigma", "0"], "--sigma (0.0)"),
    (["--sigma", "-1"], "--sigma (-1.0)"),
    (["--delta", "0.3"], "--delta (0.3)"),
    (["--k-bar", "1000.5"], "--k-bar (1000.5)"),
    (["--k-bar", "0"], "--k-bar (0)"),
    (["--k-bar", "many"], "--k-bar ('many')"),
    (["--decline", "xd"], "'xd'"),
]


@pytest.mark.parametrize("command", ["psi", "verify"])
@pytest.mark.parametrize("override, message", BAD)
def test_bad_values_are_usage_errors(command, override, message):
    args = {"--k-bar": "1000", "--U": "0.05", "--decline": "ad", "--sigma": "0.5"}
    for name, value in zip(override[::2], override[1::2], strict=True):
        args[name] = value
    res = _run(command, *[x for kv in args.items() for x in kv])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["psi", "--k-bar", "1000,2000", "--out", "t.csv"], "--out writes one table"),
        (["verify", "--k-bar", "1000,2000"], "verify checks one table"),
        (["verify", "--k-bar", "1000", "--k0", "2000"], "--k0 (2000) must be <= k_bar (1000)"),
        (["verify", "--k-bar", "1000", "--fine", "0"], "--fine (0)"),
    ],
)
def test_more_usage_errors(extra, message, tmp_path):
    command, *rest = extra
    res = CliRunner().invoke(cli, [command, *rest, "--U", "0.05", "--decline", "ad",
                                   "--sigma", "0.5"])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_help_explains_and_imports_no_matplotlib():
    for command in ("psi", "verify"):
        res = _run(command, "--help")
        assert res.exit_code == 0 and "--k-bar" in res.output and "--mapping" in res.output
    # a fresh interpreter on this worktree's code (not the venv's editable install of main)
    code = (
        "import sys; from isskit_cli.main import cli\n"
        "try:\n    cli(['psi', '--k-bar', '100', '--U', '0.1', '--decline', 'ad',"
        " '--sigma', '0.5'])\nexcept SystemExit:\n    pass\n"
        "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
