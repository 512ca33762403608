"""Bad input and output purity across psi, verify, info, merge and replay (a QA pass).

Every case here was a traceback, a silent wrong answer, a hang or a noisy log before it
was fixed: a bad value must give a usage error (exit status 2) that names it, and
``--json`` must leave exactly one JSON object on stdout, progress bars or not.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.psi import PsiTable
from isskit.studies.synthetic import write_synthetic_store

AD = ["--k-bar", "100000", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"]


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _usage_error(res, *needles):
    """Exit status 2, no traceback, and each needle in the message."""
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert isinstance(res.exception, SystemExit), res.exception  # not a traceback
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("qa") / "streams.h5"
    rng = np.random.default_rng(11)
    n = 12
    write_synthetic_store(
        path,
        rng.uniform(0.45, 1.0, n),
        predicted=np.zeros(n, int),
        true_label=np.zeros(n, int),
        samples_per_image=3000,
        num_classes=10,
        sigma=0.5,
        seed=3,
        seconds_per_sample=1e-4,
    )
    return path


# ------------------------------------------------------------------ output paths


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_psi_output_into_missing_directory(tmp_path, option):
    target = tmp_path / "nodir" / ("t.csv" if option == "--out" else "f.png")
    _usage_error(_run("psi", *AD, option, target), option, "does not exist")


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_psi_output_under_a_file(tmp_path, option):
    (tmp_path / "notes.txt").write_text("x")
    target = tmp_path / "notes.txt" / ("t.csv" if option == "--out" else "f.png")
    _usage_error(_run("psi", *AD, option, target), option, "is not a directory")


@pytest.mark.parametrize("name", ["fig.xyz", "fig"])
def test_psi_plot_format_matplotlib_cannot_write(tmp_path, name):
    res = _run("psi", *AD, "--plot", tmp_path / name)
    _usage_error(res, "--plot", name, ".png")
    assert not (tmp_path / name).exists()


def test_psi_out_write_failure_is_exit_1(tmp_path, monkeypatch):
    # a full or read-only disk: the OSError arrives only when writing, and is a runtime
    # failure (exit 1), not bad input (exit 2)
    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(PsiTable, "save", refuse)
    res = _run("psi", *AD, "--out", tmp_path / "t.csv")
    assert res.exit_code == 1, (res.exit_code, res.output)
    assert "cannot write --out" in res.output and "Permission denied" in res.output
    assert "Traceback" not in res.output and "Usage:" not in res.output


def test_replay_out_under_a_file(store, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    res = _run("replay", store, "-p", "IAS-0.1", "--out", tmp_path / "notes.txt" / "r.nc")
    _usage_error(res, "--out", "is not a directory")


# ------------------------------------------------------------------ nonsense values


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # float64 cannot resolve 1 - p_lower beyond ~1e13 samples: psi went wrong silently
        (["--k-bar", "1e18", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"],
         "--k-bar (1e+18)"),
        # was a traceback from numpy (int64 overflow)
        (["--k-bar", "1e19", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"],
         "--k-bar (1e+19)"),
        # was exit 0 with overflow warnings and k = k_bar everywhere
        (["--k-bar", "1e5", "--U", "0.05", "--decline", "ad", "--sigma", "1e308"],
         "sigma (1e+308)"),
        # was a billion-point table: killed for memory
        ([*AD, "--delta", "1e-9"], "delta (1e-09)"),
    ],
)
def test_psi_nonsense_values(args, needle):
    _usage_error(_run("psi", *args), needle)


def test_verify_fine_too_large_is_bad_input_not_a_violation():
    # was a MemoryError traceback, exit status 1: to a script, "violated"
    _usage_error(_run("verify", *AD, "--fine", "100000000"), "fine (100000000)")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("ias n=1000 n=2000", "n is given twice"),  # silently used 2000
        ("IAS-0.1 n=2000", "n is given twice"),  # silently replaced the shorthand's n
        ("ISS-AD-0.2-0.05-k_bar=3000", "k_bar is given twice"),
        ("ias n=1000,", "empty value"),  # silently dropped
        ("ias n=,1000", "empty value"),
        ("ias =3", "'=3' is not key=value"),  # was "unknown parameter ''"
        ("ias n=1e13", "n (10000000000000)"),
        ("iss decline=ad k_bar=1e40 U=0.1", "k_bar (1e+40)"),  # printed 10**40 in full
        ("iss decline=ad k_bar=2000 U=0.05 delta=1e-9", "delta (1e-09)"),  # killed for memory
    ],
)
def test_replay_bad_policy_specs(store, spec, needle):
    _usage_error(_run("replay", store, "-p", spec), needle)


def test_replay_radii_error_names_the_option(store):
    _usage_error(_run("replay", store, "-p", "IAS-0.1", "--radii", "a,b"), "--radii", "'a'")


def test_replay_absurd_seconds_per_sample_gives_inf_not_a_warning(store):
    # numpy's overflow warning used to reach stderr (an error under pytest)
    res = _run("replay", store, "-p", "IAS-0.1", "--seconds-per-sample", "1e308",
               "--no-progress")
    assert res.exit_code == 0, res.output
    row = next(line for line in res.stdout.splitlines() if line.startswith("IAS-0.1 "))
    assert row.split()[3] == "inf"  # after the name and the validity


# ------------------------------------------------------------------ --json purity


def test_replay_json_with_progress_on_leaves_stdout_and_the_log_clean(store):
    res = _run("replay", store, "-p", "IAS-0.1", "-p", "ISS-AD-0.2-0.05", "--progress",
               "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)  # exactly one object, nothing else
    assert [p["name"] for p in obj["policies"]] == ["IAS-0.1", "ISS-AD-0.2-0.05"]
    # stderr is not a terminal here: quick work leaves no carriage-return fragments
    assert res.stderr == ""


@pytest.mark.parametrize("command", ["info", "merge"])
def test_info_and_merge_json_with_progress(store, tmp_path, command):
    args = [store] if command == "info" else [tmp_path / "m.h5", store]
    res = _run(command, *args, "--json", "--progress")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["n_images"] == 12
    assert res.stderr == ""


def test_psi_json_is_pure_with_out_and_plot(tmp_path):
    res = _run("psi", *AD, "--delta", "0.01", "--out", tmp_path / "t.csv", "--plot",
               tmp_path / "f.png", "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["out"] == str(tmp_path / "t.csv") and (tmp_path / "f.png").stat().st_size > 0


# ------------------------------------------------------------------ help


def test_group_help_has_a_quick_start_and_exit_statuses():
    res = _run("--help")
    assert res.exit_code == 0
    for text in ("Quick start", "isskit sample --out streams.h5", "isskit replay streams.h5",
                 "2 bad input"):
        assert text in res.output, text


@pytest.mark.parametrize("command", ["psi", "verify", "info", "merge", "replay"])
def test_every_command_help_has_an_example(command):
    res = _run(command, "--help")
    assert res.exit_code == 0
    assert f"isskit {command} " in res.output.split("Options:")[0] + res.output.split(
        "Options:")[-1]


def test_verify_help_does_not_offer_comma_lists():
    # verify checks one table; the psi-only "comma list" help confused users
    assert "comma list" not in _run("verify", "--help").output
    assert "comma list" in _run("psi", "--help").output


def test_policy_parameter_errors_name_the_option_and_spec(store):
    # a spec that parses but whose policy refuses a value: the option and the spec as typed
    _usage_error(_run("replay", store, "-p", "ias n=0", "--no-progress"),
                 "--policy", "'ias n=0'", "n (0) must be an integer >= 1")
    _usage_error(_run("replay", store, "-p", "ias n=50", "--reference", "ias n=0",
                      "--no-progress"), "--reference", "'ias n=0'")
    _usage_error(_run("audit", "--policy", "cohen n0=0 n=100", "--no-progress"),
                 "--policy", "'cohen n0=0 n=100'")
