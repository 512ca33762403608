"""``isskit import-log``: the store it writes, against the log and the recovered TSVs; bad input.

References: data/published/recovered (kA_min, kA_max, kA_mid computed outside this project),
hashlib for the source digest, and scipy.stats.binom for the label frequencies.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli
from scipy import stats as st

from isskit.logs import import_log
from isskit.store import open_store

CIFAR = "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.50"  # 61 abstained, 380 wrong
IMAGENET = "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50"
HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def _recovered(published, name):
    path = published / "recovered" / f"{name}.tsv"
    cols = np.genfromtxt(path, delimiter="\t", skip_header=2, usecols=(0, 1, 2, 5, 6, 7))
    names = ["idx", "label", "predict", "kA_min", "kA_max", "kA_mid"]
    return {k: cols[:, i] for i, k in enumerate(names)}


def _run(*args):
    return CliRunner().invoke(cli, ["import-log", *map(str, args)])


def test_store_matches_log_and_recovered_counts(published, tmp_path):
    log = published / "certify-logs" / CIFAR
    out = tmp_path / "cifar.h5"
    res = _run(log, "--out", out, "--samples", 3000, "--seed", 5)
    assert res.exit_code == 0, res.output
    rec = _recovered(published, CIFAR)
    cert = rec["predict"] >= 0
    with open_store(out) as s:
        attrs = s.attrs
        assert attrs["source_log"] == CIFAR
        assert attrs["source_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
        # data/published/README.md: this log fits both 0.001 and 0.01; the first tried wins.
        assert attrs["source_alpha"] == 0.001 and attrs["source_n"] == 100_000
        assert attrs["source_alphas_fitting"].split(",")[:2] == ["0.001", "0.01"]
        assert s.sigma == 0.5 and s.num_classes == 10 and s.samples_per_image == 3000
        np.testing.assert_array_equal(s.image_index, rec["idx"])
        np.testing.assert_array_equal(s.true_label, rec["label"])
        p_A = s.columns["p_A"]
        predicted = s.columns["predicted"]
        np.testing.assert_array_equal(p_A[cert], rec["kA_mid"][cert] / 100_000)
        np.testing.assert_array_equal(p_A[~cert], (rec["kA_max"][~cert] // 2) / 100_000)
        np.testing.assert_array_equal(predicted[cert], rec["predict"][cert])
        np.testing.assert_array_equal(predicted[~cert], rec["label"][~cert])
        # Wrong predictions stay wrong: top class != true label.
        wrong = cert & (rec["predict"] != rec["label"])
        assert wrong.sum() == 380 and np.all(predicted[wrong] != s.true_label[wrong])
        labels = s.labels()
        # Per row, the top class's frequency is Binomial(3000, p_A): a two-sided test at
        # 1e-6 per row over 500 rows would flag a wrong p_A or class.
        hits = (labels == predicted[:, None]).sum(axis=1)
        lo = st.binom.ppf(1e-6, 3000, p_A)
        hi = st.binom.isf(1e-6, 3000, p_A)
        assert np.all((hits >= lo) & (hits <= hi))
        assert labels.max() < 10
        # The log's time column (seconds for n0 + n = 100,100 samples) sets seconds per sample.
        times = np.array([float(t.split(":")[-1]) + 60 * float(t.split(":")[-2])
                          for t in np.genfromtxt(log, delimiter="\t", skip_header=1, usecols=5,
                                                 dtype=str)])
        np.testing.assert_allclose(s.seconds, times / 100_100 * 3000, rtol=1e-12)
    assert "fits every row: n=100000 alpha=0.001, n=100000 alpha=0.01" in res.output


def test_seeded_and_json(published, tmp_path):
    log = published / "certify-logs" / IMAGENET
    runs = []
    for name, seed in (("a.h5", 1), ("b.h5", 1), ("c.h5", 2)):
        res = _run(log, "--out", tmp_path / name, "--samples", 500, "--seed", seed, "--json")
        assert res.exit_code == 0, res.output
        runs.append(json.loads(res.stdout))  # exactly one JSON object, nothing else
        with open_store(tmp_path / name) as s:
            runs[-1]["labels"] = s.labels()
    assert runs[0]["alpha"] == 0.001 and runs[0]["num_classes"] == 1000
    assert runs[0]["radius_format"] == ".4f" and runs[0]["max_range_width"] <= 15
    np.testing.assert_array_equal(runs[0]["labels"], runs[1]["labels"])
    assert not np.array_equal(runs[0]["labels"], runs[2]["labels"])


def test_runner_up_streams_and_abstention_rules(published, tmp_path):
    rec = _recovered(published, CIFAR)
    ab = rec["predict"] < 0
    log = published / "certify-logs" / CIFAR
    r = import_log(log, tmp_path / "r.h5", samples_per_image=400, other="runner_up")
    assert r.abstain == "bound"
    np.testing.assert_array_equal(r.p_A[ab], rec["kA_max"][ab] / 100_000)
    with open_store(tmp_path / "r.h5") as s:
        labels = s.labels()
        pred = s.columns["predicted"]
        assert np.all((labels == pred[:, None]) | (labels == ((pred + 1) % 10)[:, None]))
    u = import_log(log, tmp_path / "u.h5", samples_per_image=100, abstain="uniform", seed=3)
    assert np.all((u.p_A[ab] >= 0) & (u.p_A[ab] <= rec["kA_max"][ab] / 100_000))
    assert len(np.unique(u.p_A[ab])) == ab.sum()
    np.testing.assert_array_equal(u.p_A[~ab], rec["kA_mid"][~ab] / 100_000)


def test_sigma_and_classes_from_flags(published, tmp_path):
    # The first 300 rows of Jeong et al.'s log, whose name holds no sigma (certified at 0.25).
    text = (published / "certify-logs" / "jeong2020__cifar10_consistency-resnet110_noise_0.25")
    log = _write(tmp_path, "jeong_noise_0.25", "".join(text.read_text().splitlines(True)[:301]))
    res = _run(log, "--out", tmp_path / "j.h5", "--samples", 10)
    # the message names the options to give, as typed, not the library's arguments
    assert res.exit_code == 2 and "give --sigma" in res.output and "Traceback" not in res.output
    res = _run(log, "--out", tmp_path / "j.h5", "--samples", 10, "--sigma", 0.25)
    assert res.exit_code == 2 and "give --num-classes" in res.output
    # Alpha given: checked only.
    res = _run(log, "--out", tmp_path / "j.h5", "--samples", 10, "--sigma", 0.25,
               "--alpha", 0.001, "--num-classes", 10, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tried"] == [{"n": 100000, "alpha": 0.001}]


def _write(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body)
    return p


@pytest.mark.parametrize(
    ("name", "body", "args", "message"),
    [
        ("empty_cifar10_sigma_0.25", "", [], "empty"),
        ("cols_cifar10_sigma_0.25", HEADER + "0\t1\t1\t0.5\t1\n", [], "line 2: 5 tab-separated"),
        ("num_cifar10_sigma_0.25", HEADER + "0\t1\t1\t0.5x\t1\t0:00:01\n", [], "line 2: radius"),
        ("extra_cifar10_sigma_0.25", HEADER + "0\t1\t1\t0.5\t1\t0:00:01\tx\n", [], "line 2: 7"),
        ("mnist_sigma_0.25", HEADER + "0\t1\t1\t0.5\t1\t0:00:01\n", [], "give --num-classes"),
        ("big_cifar10_sigma_0.25", HEADER + "0\t12\t12\t0.5\t1\t0:00:01\n", [],
         "line 2: class 12 is out of range"),
        # At n = 100 and alpha = 0.001 the largest radius is 0.25 Phi^-1(0.001^(1/100)) =
        # 0.375 (all 100 samples top class): 0.5 is out of reach.
        ("fit_cifar10_sigma_0.25", HEADER + "0\t1\t1\t0.5\t1\t0:00:01\n",
         ["--n", "100", "--alpha", "0.001"],
         "n=100, alpha=0.001: 1 rows fit no integer count (lines 2)"),
    ],
)
def test_bad_input_exits_2_naming_file_and_line(tmp_path, name, body, args, message):
    p = _write(tmp_path, name, body)
    res = _run(p, "--out", tmp_path / "x.h5", *args)
    assert res.exit_code == 2, res.output
    assert name in res.output and message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "x.h5").exists()


def test_no_fit_lists_every_pair_tried(published, tmp_path):
    log = published / "certify-logs" / "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00"
    res = _run(log, "--out", tmp_path / "x.h5", "--alpha", 0.001, "--n", "100000,50000")
    assert res.exit_code == 2
    assert "n=100000, alpha=0.001: 50 rows fit no integer count (lines 14, 37" in res.output
    assert "n=50000, alpha=0.001" in res.output
    with pytest.raises(ValueError, match="other"):
        import_log(log, tmp_path / "y.h5", other="zipf")


def test_import_then_replay_reproduces_the_log(published, tmp_path):
    # End to end, as docs/reproduce.md runs it: the log's own certification (Cohen, n0 = 100,
    # n = 100,000, at the detected alpha 0.01) replayed on the imported streams gives the
    # log's ACR back (0.733, the mean of radius * correct over the log's rows); and
    # ISS-AD-10-0.05 keeps its ACR within U = 0.05 of IAS-10 at a fraction of the samples.
    name = "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50"
    log = published / "certify-logs" / name
    store = tmp_path / "imagenet.h5"
    res = _run(log, "--out", store, "--samples", 100_100, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["alpha"] == 0.01
    res = CliRunner().invoke(cli, ["replay", str(store), "--policy", "cohen alpha=0.01",
                                   "--policy", "IAS-10", "--policy", "ISS-AD-10-0.05",
                                   "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    by = {p["name"]: p for p in json.loads(res.stdout)["policies"]}
    rows = np.genfromtxt(log, delimiter="\t", skip_header=1, usecols=(3, 4))
    log_acr = float(np.mean(rows[:, 0] * rows[:, 1]))
    assert log_acr == pytest.approx(0.733, abs=5e-4)
    assert by["Cohen-10-alpha=0.01"]["acr"] == pytest.approx(log_acr, abs=0.005)
    iss, ias = by["ISS-AD-10-0.05"], by["IAS-10"]
    assert ias["acr"] - 0.05 <= iss["acr"] <= ias["acr"]
    assert iss["mean_samples"] < ias["mean_samples"] / 3


def test_N_is_the_option_and_samples_its_alias(published, tmp_path):
    log = published / "certify-logs" / CIFAR
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert _run(log, "--out", a, "--N", 300, "--seed", 2).exit_code == 0
    assert _run(log, "--out", b, "--samples", 300, "--seed", 2).exit_code == 0
    with open_store(a) as sa, open_store(b) as sb:
        assert sa.samples_per_image == sb.samples_per_image == 300
        np.testing.assert_array_equal(sa.labels(), sb.labels())
    help_text = _run("--help").output
    assert "--N N" in help_text and "--samples N" in help_text
    res = _run(log, "--out", tmp_path / "d.h5", "--N", 300, "--samples", 200)
    assert res.exit_code == 2 and "not both" in res.output and not (tmp_path / "d.h5").exists()
    res = _run(log, "--out", tmp_path / "c.h5", "--N", 0)
    assert res.exit_code == 2 and "--N" in res.output and "Traceback" not in res.output
