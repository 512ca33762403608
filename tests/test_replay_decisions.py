"""replay() with decision policies: adaptive, staged and cs beside radius policies, one Dataset.

Every decision is checked image by image against the slow twins of tests/reference.py (the
authors' stopping rules one draw at a time), and Cohen's certified accuracy at r against
SciPy's Clopper-Pearson bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from isskit.policies import CS, Adaptive, Staged, parse_policies
from isskit.replay import replay
from isskit.store import open_store
from isskit.studies.synthetic import realistic_p_A, write_synthetic_store
from isskit.validate import ArgumentError
from tests import reference as ref

N = 3000
C = 10
SIGMA = 0.5
SPECS = [
    "ias n=1000",
    "adaptive r=0.25,0.5 n0=20 stages=200/1000",
    "staged r=0.5 stages=100/400/1500",
    "cs r=0.25 method=kt,union n_max=2500",
]
REFERENCE = "cohen n0=50 n=2000"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("decisions") / "streams.h5"
    n = 40
    rng = np.random.default_rng(7)
    p_A = realistic_p_A(n, rng)
    p_A[:3] = [1.0, 0.5, 0.69]  # certain, a coin, p0 of r = 0.25 at sigma 0.5 (0.691)
    predicted = rng.integers(0, C, n)
    true_label = np.where(rng.random(n) < 0.8, predicted, (predicted + 1) % C)
    write_synthetic_store(
        path,
        p_A,
        predicted=predicted,
        true_label=true_label,
        samples_per_image=N,
        num_classes=C,
        sigma=SIGMA,
        seed=5,
        seconds_per_sample=0.001,
        image_index=np.arange(500, 500 + n),
    )
    return path


@pytest.fixture(scope="module")
def labels(store_path):
    store = open_store(store_path)
    return np.concatenate([b for _, b in store.iter_chunks(max_bytes=2**20)]), \
        np.asarray(store.true_label)


@pytest.fixture(scope="module")
def results(store_path):
    return replay(store_path, SPECS, reference=REFERENCE)


def _twin(policy, row, true_label):
    """(decision, samples, prediction) of one policy on one stream, from the twins."""
    if isinstance(policy, CS):
        lo, hi = ref.ref_cs_thresholds(ref.ref_p0(policy.r, SIGMA), policy.alpha,
                                       policy.n_max, policy.method)
        d, s = ref.ref_cs_decide(row.tolist(), true_label, lo, hi, policy.n_max)
        return d, s, true_label if d == 1 else -1
    if isinstance(policy, Staged):
        d, s = ref.ref_staged_decide(row.tolist(), true_label, policy, SIGMA)
        return d, s, true_label if d == 1 else -1
    assert isinstance(policy, Adaptive)
    d, s, c = ref.ref_adaptive_decide(row.tolist(), policy, SIGMA)
    return d, s, c if d == 1 else -1


def test_decisions_match_twins_image_by_image(results, labels):
    block, true = labels
    ds = results
    deciders = [p for p in parse_policies(SPECS) if p.question == "decision"]
    assert len(deciders) == 5
    for p in deciders:
        got = ds.sel(policy=p.name)
        want = np.array([_twin(p, block[i], int(true[i])) for i in range(block.shape[0])])
        np.testing.assert_array_equal(got.decision.values, want[:, 0], err_msg=p.name)
        np.testing.assert_array_equal(got.samples.values, want[:, 1], err_msg=p.name)
        np.testing.assert_array_equal(got.prediction.values, want[:, 2], err_msg=p.name)
        ok = (want[:, 0] == 1) & (want[:, 2] == true)
        assert float(got.certified_accuracy_at_r) == pytest.approx(ok.mean())
        assert float(got.undecided) == pytest.approx(np.mean(want[:, 0] == -1))
        assert float(got.mean_samples) == pytest.approx(want[:, 1].mean())
        assert float(got.r) == p.r
        # the reference spends 2050 samples on every image
        assert float(got.speedup) == pytest.approx(2050 * block.shape[0] / want[:, 1].sum())
    # the workload decides something: not all undecided, some certified
    assert np.any(ds.decision.values == 1) and np.any(ds.decision.values == 0)


def test_reference_certified_accuracy_at_r_from_scipy(results, labels):
    # Cohen(50, 2000): class = mode of [0, 50) (ties to the smallest), counted on [50, 2050);
    # certified at r when sigma Phi^-1(p_lower) >= r and the class is right
    block, true = labels
    ok = {}
    for r in (0.25, 0.5):
        hits = []
        for i in range(block.shape[0]):
            c = int(np.argmax(np.bincount(block[i, :50], minlength=C)))
            k = int(np.sum(block[i, 50:2050] == c))
            p_lower = st.beta.ppf(0.001, k, 2000 - k + 1) if k > 0 else 0.0
            radius = SIGMA * st.norm.ppf(p_lower) if p_lower >= 0.5 else 0.0
            hits.append(c == true[i] and p_lower >= 0.5 and radius >= r)
        ok[r] = np.mean(hits)
    ds = results
    for name in ds.policy.values:
        r = float(ds.r.sel(policy=name))
        got = float(ds.reference_certified_accuracy_at_r.sel(policy=name))
        if np.isnan(r):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(ok[r]), name


def test_variables_that_do_not_apply_are_nan_or_minus_one(results):
    ds = results
    radius = ds.kind.values == "ias"
    dec = ~radius
    assert ds.kind.values.tolist() == ["ias", "adaptive", "adaptive", "staged", "cs", "cs"]
    assert np.all(np.isnan(ds.radius.values[dec])) and np.all(np.isnan(ds.p_lower.values[dec]))
    assert np.all(ds.k_hat.values[dec] == -1)
    assert np.all(np.isnan(ds.acr.values[dec])) and np.all(np.isnan(ds.mad.values[dec]))
    assert np.all(np.isnan(ds.certified_accuracy.values[dec]))
    assert np.all(ds.decision.values[radius] == -1)
    for v in ("certified_accuracy_at_r", "undecided", "reference_certified_accuracy_at_r"):
        assert np.all(np.isnan(ds[v].values[radius])), v
        assert np.all(np.isfinite(ds[v].values[dec])), v
    assert np.all(np.isfinite(ds.acr.values[radius]))
    assert ds.validity.values.tolist() == ["selection-biased", "alpha-split", "alpha-split",
                                           "alpha-split", "anytime-valid", "anytime-valid"]
    assert ds.stages.values.tolist()[1] == "200/1000"
    assert ds.method.values.tolist()[4:] == ["kt", "union"]


def test_same_decisions_alone_and_in_a_mix(store_path, results):
    # the index layout (slots reused from the radius policies' or packed anew) changes nothing
    alone = replay(store_path, SPECS[1:], reference=REFERENCE)
    for name in alone.policy.values:
        np.testing.assert_array_equal(alone.decision.sel(policy=name).values,
                                      results.decision.sel(policy=name).values)
        np.testing.assert_array_equal(alone.samples.sel(policy=name).values,
                                      results.samples.sel(policy=name).values)


def test_bad_input(store_path):
    with pytest.raises(ArgumentError, match=r"radius_grid \(\[0.5\]\) applies to radius "
                                            r"policies.*Staged-r=0.5"):
        replay(store_path, ["staged r=0.5 stages=100/400/1500"], reference=REFERENCE,
               radius_grid=[0.5])
    with pytest.raises(ArgumentError, match=r"reference \('CS-KT-r=0.5'\) must be a radius"):
        replay(store_path, ["ias n=1000"], reference="cs r=0.5")
    # the default reference, Cohen(100, 100000), does not fit streams of 3000
    with pytest.raises(ValueError, match=r"needs 100100 samples.*reference of Staged-r=0.5"):
        replay(store_path, ["staged r=0.5 stages=100/400/1500"])
    with pytest.raises(ValueError, match=r"CS-KT-r=0.25-n_max=5000 needs \d+ samples for "
                                         r"image 5\d\d"):
        replay(store_path, ["cs r=0.25 n_max=5000"], reference=REFERENCE)
    with pytest.raises(ValueError, match=r"Adaptive-r=0.5 needs 11200 samples for image 5\d\d"):
        replay(store_path, ["adaptive r=0.5"], reference=REFERENCE)


# ------------------------------------------------------------------------- the command line


def _cli(*args):
    from click.testing import CliRunner
    from isskit_cli.main import cli

    return CliRunner().invoke(cli, ["replay", *map(str, args)])


CLI_SPECS = ["-p", "adaptive r=0.5 n0=20 stages=200/1000", "-p", "cs r=0.25 method=kt,union "
             "n_max=2500", "-p", "ias n=1000", "--reference", REFERENCE, "--no-progress"]


def test_cli_decision_block_and_json(store_path, results):
    res = _cli(store_path, *CLI_SPECS)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "CA(r)" in out and "Undecided" in out and "Ref CA(r)" in out
    ds = results
    for name in ("Adaptive-r=0.5-n0=20-stages=200/1000", "CS-KT-r=0.25-n_max=2500"):
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        ca = 100 * float(ds.certified_accuracy_at_r.sel(policy=name))
        assert f"{ca:6.1f}" in line and ("alpha-split" in line or "anytime-valid" in line)
    res = _cli(store_path, *CLI_SPECS, "--json")
    assert res.exit_code == 0, res.output
    import json

    rows = {r["name"]: r for r in json.loads(res.output)["policies"]}
    cs = rows["CS-union-r=0.25-n_max=2500"]
    assert cs["validity"] == "anytime-valid" and cs["r"] == 0.25
    assert cs["certified_accuracy_at_r"] == pytest.approx(
        float(ds.certified_accuracy_at_r.sel(policy="CS-union-r=0.25-n_max=2500")))
    assert cs["undecided"] == pytest.approx(
        float(ds.undecided.sel(policy="CS-union-r=0.25-n_max=2500")))
    assert cs["acr"] is None  # NaN: ACR does not apply
    assert "r" not in rows["IAS-0.1"] and rows["IAS-0.1"]["validity"] == "selection-biased"


def test_cli_export_cohen_writes_r_where_certified(store_path, results, tmp_path):
    from isskit.logs import read_cohen_log

    res = _cli(store_path, *CLI_SPECS, "--export-cohen", tmp_path / "logs")
    assert res.exit_code == 0, res.output
    ds = results
    name = "Adaptive-r=0.5-n0=20-stages=200/1000"
    log = read_cohen_log(tmp_path / "logs" / "Adaptive-r=0.5-n0=20-stages=200_1000.tsv")
    dec = ds.decision.sel(policy=name).values
    np.testing.assert_allclose(log.radius, np.where(dec == 1, 0.5, 0.0))
    np.testing.assert_array_equal(log.predict, ds.prediction.sel(policy=name).values)
    np.testing.assert_array_equal(log.idx, ds.image_index.values)


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "staged r=0.5 stages=100/400/1500", "--radii", "0.5", "--reference", REFERENCE],
     r"--radii \(\[0.5\]\) applies to radius policies"),
    (["-p", "adaptive r=0"], r"r \(0.0\) must be a finite radius > 0"),
    (["-p", "adaptive r=0.5 stages=1000/100"],
     r"stages \(1000/100\) must be strictly increasing"),
    (["-p", "staged r=0.5 alpha=1.5"], r"alpha \(1.5\)"),
    (["-p", "adaptive r=0.5 beta=0"], r"beta \(0.0\)"),
    (["-p", "cs r=0.025 n_max=10", "--reference", REFERENCE],
     r"n_max \(10\) is smaller than the first possible decision"),
    (["-p", "ias n=1000", "--reference", "cs r=0.5"], r"--reference \('CS-KT-r=0.5'\)"),
])
def test_cli_bad_input_is_exit_2(store_path, args, message):
    import re

    res = _cli(store_path, *args, "--no-progress")
    assert res.exit_code == 2, res.output
    assert re.search(message, res.output.replace("\n", " ")), res.output
    assert "Traceback" not in res.output
