"""isskit.studies.audit: exact failure probabilities against a slow scipy enumeration, the
Monte Carlo shortcut against the exact values, and the CLI.

The slow reference enumerates every pilot count and every final count, with scipy.stats
(beta.ppf for the bounds, binom / hypergeom pmf for the probabilities) and no isskit.stats.
Only the ISS mapping (isskit.psi, tested on its own) is shared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.main import cli
from scipy import stats as st

from isskit.policies import IAS, ISS, Cohen
from isskit.psi import psi_table
from isskit.studies.audit import audit, failure_probability, simulate


def _lower(y, k, alpha):
    return 0.0 if y == 0 else st.beta.ppf(alpha, y, k - y + 1)


def _fails(k, p_c, alpha):
    """Indicator over y = 0..k of: certified (p_lower >= 1/2) and p_lower > p_c."""
    y = np.arange(k + 1)
    pl = np.where(y > 0, st.beta.ppf(alpha, np.maximum(y, 1), k - y + 1), 0.0)
    return (pl >= 0.5) & (pl > p_c)


def _slow_cohen(n0, n, alpha, p):
    total = 0.0
    for x0 in range(n0 + 1):
        top = x0 >= n0 - x0
        p_c = p if top else 1 - p
        tail = np.sum(st.binom.pmf(np.arange(n + 1), n, p_c)[_fails(n, p_c, alpha)])
        total += st.binom.pmf(x0, n0, p) * tail
    return total


def _slow_iss(policy, p, sigma):
    table = psi_table(policy.k_bar, policy.U, policy.decline, sigma, policy.alpha, policy.delta,
                      mapping=policy.mapping)
    k0, alpha = policy.k0, policy.alpha
    total = 0.0
    for x0 in range(k0 + 1):
        w = st.binom.pmf(x0, k0, p)
        if w < 1e-20:  # contributes below the test's tolerance
            continue
        top = x0 >= k0 - x0
        x_c, p_c = (x0, p) if top else (k0 - x0, 1 - p)
        low = 0.0 if x_c == 0 else st.beta.ppf(alpha / 2, x_c, k0 - x_c + 1)
        up = 1.0 if x_c == k0 else st.beta.ppf(1 - alpha / 2, x_c + 1, k0 - x_c)
        k_hat = int(table.k_hat(low, up))
        if k_hat == 0:
            continue
        fail = _fails(k_hat, p_c, alpha)
        y = np.arange(k_hat + 1)
        if policy.fresh:
            pmf = st.binom.pmf(y, k_hat, p_c)
        elif k_hat >= k0:
            pmf = st.binom.pmf(y - x_c, k_hat - k0, p_c)
        else:
            pmf = st.hypergeom.pmf(y, k0, x_c, k_hat)
        total += w * np.sum(pmf[fail])
    return total


@pytest.mark.parametrize("p", [0.3, 0.5, 0.62, 0.9, 0.995])
def test_cohen_exact_matches_enumeration(p):
    policy = Cohen(n0=11, n=3000, alpha=0.05)
    ref = _slow_cohen(11, 3000, 0.05, p)
    assert failure_probability(policy, p) == pytest.approx(ref, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("p", [0.5, 0.55, 0.7, 0.9, 0.99])
def test_ias_exact_matches_enumeration(p):
    n, alpha = 2000, 0.05
    x = np.arange(n + 1)
    top = x >= n - x
    fail = np.where(top, _fails(n, p, alpha), _fails(n, 1 - p, alpha)[n - x])
    ref = np.sum(st.binom.pmf(x, n, p)[fail])
    assert failure_probability(IAS(n=n, alpha=alpha), p) == pytest.approx(ref, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("decline", ["ad", "rd"])
@pytest.mark.parametrize("p", [0.5, 0.8, 0.93, 0.97])
def test_iss_exact_matches_enumeration(fresh, decline, p):
    # Small k_bar and k0 = 300 (not k_bar / 100) so that k_hat falls both below and above k0.
    policy = ISS(k_bar=3000, U=0.1, decline=decline, k0=300, alpha=0.05, delta=0.01,
                 fresh=fresh)
    ref = _slow_iss(policy, p, sigma=0.5)
    assert failure_probability(policy, p, sigma=0.5) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_iss_below_and_above_pilot_both_exercised():
    # The premise of the test above: for this policy k_hat takes values on both sides of k0.
    for decline in ("ad", "rd"):
        policy = ISS(k_bar=3000, U=0.1, decline=decline, k0=300, alpha=0.05, delta=0.01)
        sim = simulate(policy, 0.93, 5_000, np.random.default_rng(0), sigma=0.5)
        assert np.mean(sim.samples == 300) > 0.1 and np.mean(sim.samples > 300) > 0.1


@pytest.mark.parametrize(
    "policy",
    [
        Cohen(n0=20, n=2000, alpha=0.2),
        IAS(n=1500, alpha=0.2),
        ISS(k_bar=3000, U=0.1, decline="ad", k0=300, alpha=0.2, delta=0.01),
        ISS(k_bar=3000, U=0.1, decline="rd", k0=300, alpha=0.2, delta=0.01, fresh=True),
    ],
)
def test_simulation_agrees_with_exact(policy):
    # At alpha = 0.2 failures are common, so 100,000 simulated images pin the rate to about
    # +-0.0025; the exact value must lie in the 99.99% Clopper-Pearson interval.
    for p in (0.52, 0.75, 0.93):
        rows = audit([policy], [p], trials=100_000, seed=11, confidence=0.9999, sigma=0.5)
        r = rows[0]
        assert r.ci_low <= r.exact <= r.ci_high, (p, r)
        assert r.failures > 0


def test_reused_pilot_breaks_the_guarantee_at_p_one_half():
    # The finding of docs/audit.md: ISS-AD-10-0.05 with its pilot reused fails about 1.8
    # alpha at p_A = 1/2 (both classes at 1/2, the pilot's larger count is counted again);
    # with fresh samples, and for Cohen's CERTIFY, the rate stays below alpha.
    paper, fresh = ISS(100_000, 0.05, "ad"), ISS(100_000, 0.05, "ad", fresh=True)
    rows = audit([paper, fresh, Cohen()], [0.5], trials=100_000, seed=3, sigma=0.5)
    by = {r.policy: r for r in rows}
    assert by["ISS-AD-10-0.05"].exact == pytest.approx(1.797e-3, rel=1e-3)
    assert by["ISS-AD-10-0.05"].significant and by["ISS-AD-10-0.05"].exceeds_alpha
    for name in ("ISS-AD-10-0.05-fresh", "Cohen-10"):
        assert by[name].exact <= 1e-3 and not by[name].exceeds_alpha and not by[name].significant


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"p_A \(1.2\)"):
        failure_probability(Cohen(), 1.2)
    with pytest.raises(ValueError, match="policy"):
        failure_probability("cohen", 0.5)
    with pytest.raises(ValueError, match="trials"):
        simulate(Cohen(), 0.5, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="confidence"):
        audit([Cohen()], [0.5], trials=10, confidence=1.5)


def test_cli_json_and_table():
    runner = CliRunner()
    res = runner.invoke(cli, ["audit", "--p-A", "0.5,0.9", "--trials", "2000", "--policy",
                              "ISS-AD-10-0.05 fresh=false,true", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(r["policy"], r["p_A"]) for r in doc["rows"]] == [
        ("ISS-AD-10-0.05", 0.5), ("ISS-AD-10-0.05", 0.9),
        ("ISS-AD-10-0.05-fresh", 0.5), ("ISS-AD-10-0.05-fresh", 0.9),
    ]
    assert [(v["policy"], v["p_A"]) for v in doc["violations"]] == [("ISS-AD-10-0.05", 0.5)]
    res = runner.invoke(cli, ["audit", "--p-A", "0.5", "--trials", "0", "--policy", "IAS-1"])
    assert res.exit_code == 0 and "EXCEEDS alpha (exact)" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--p-A", "0.5,x"], "--p-A ('x')"),
        (["--p-A", "1.5"], "--p-A (1.5)"),
        (["--policy", "ISS-XX-1"], "ISS-XX-1"),
        (["--trials", "-3"], "--trials (-3)"),
        (["--trials", "2.5"], "'2.5' is not an integer"),
    ],
)
def test_cli_bad_input(args, message):
    res = CliRunner().invoke(cli, ["audit", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("p", [0.55, 0.8])
def test_shortcut_matches_replay_over_real_streams(tmp_path, p):
    # The audit draws counts, not streams. Here the same policies are replayed by
    # isskit.replay over real two-class synthetic streams (top class 0 with probability p,
    # runner-up 1 otherwise), and the per-image outcomes must follow the same distribution:
    # failure counts against the exact probability (binomial test), and the samples consumed
    # and certified shares against the shortcut's simulation (two-sample tests).
    from isskit.replay import replay
    from isskit.studies.synthetic import write_synthetic_store

    T = 3000
    policies = [
        ISS(k_bar=3000, U=0.1, decline="ad", k0=300, alpha=0.2, delta=0.01),
        ISS(k_bar=3000, U=0.1, decline="rd", k0=300, alpha=0.2, delta=0.01, fresh=True),
        Cohen(n0=20, n=2000, alpha=0.2),
    ]
    store = tmp_path / "two_class.h5"
    write_synthetic_store(
        store,
        np.full(T, p),
        predicted=np.zeros(T, np.int64),
        true_label=np.zeros(T, np.int64),
        samples_per_image=3300,
        num_classes=2,
        sigma=0.5,
        seed=17,
        other="runner_up",
    )
    ds = replay(store, policies)
    for policy in policies:
        r = ds.sel(policy=policy.name)
        pred = np.asarray(r.prediction)
        p_lower = np.asarray(r.p_lower)
        p_c = np.where(pred == 1, 1 - p, p)
        failures = int(np.sum((pred >= 0) & (p_lower > p_c)))
        exact = failure_probability(policy, p, sigma=0.5)
        assert st.binomtest(failures, T, exact).pvalue > 1e-3, (policy.name, failures, exact)
        sim = simulate(policy, p, 20_000, np.random.default_rng(5), sigma=0.5)
        replayed = np.asarray(r.samples)
        if np.ptp(replayed) > 0:
            assert st.ks_2samp(replayed, sim.samples).pvalue > 1e-3, policy.name
        else:
            assert np.all(sim.samples == replayed[0])
        c_rep, c_sim = int(np.sum(pred >= 0)), int(np.sum(sim.prediction >= 0))
        table = [[c_rep, T - c_rep], [c_sim, 20_000 - c_sim]]
        assert st.fisher_exact(table).pvalue > 1e-3, (policy.name, table)
        # and the failure rates agree in the large: both near the exact probability
        assert abs(failures / T - sim.failure.mean()) < 0.05


# ----------------------------------------------------------------------- decision policies


def _decision_json(args):
    res = CliRunner().invoke(cli, ["audit", "--no-progress", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_cli_decision_rows_equal_the_library():
    from isskit.policies import parse_policies
    from isskit.studies.decision_audit import audit_decisions

    specs = ["cs r=0.5 method=kt,union n_max=20000", "cs r=0.5 faithful=true n_max=20000",
             "staged r=0.25 stages=100/1000/10000", "adaptive r=0.25 stages=100/1000 alpha=0.01"]
    doc = _decision_json([x for s in specs for x in ("--policy", s)] + ["--offsets", "0,0.01"])
    assert doc["rows"] == [] and doc["violations"] == []
    want = audit_decisions(parse_policies(specs), 0.5, [0.0, 0.01])
    got = doc["decision_rows"]
    assert [(r["policy"], r["p"]) for r in got] == [(w.policy, w.p) for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["exact"] is True and g["trials"] == 0
        for key in ("false_certification", "p0", "certified", "undecided", "mean_samples"):
            assert g[key] == getattr(w, key), key
        assert g["ratio"] == w.false_certification / w.alpha
    # the hardest p is p0 itself: the rate falls below it
    for i in range(0, len(got), 2):
        assert got[i]["p"] == got[i]["p0"]
        assert got[i]["false_certification"] > got[i + 1]["false_certification"]


def test_cli_radius_output_has_no_decision_keys():
    doc = _decision_json(["--p-A", "0.9", "--trials", "0", "--policy", "cohen n0=100 n=1000"])
    assert set(doc) == {"sigma", "seed", "trials", "confidence", "stream", "rows", "violations"}


def test_cli_decision_simulation_matches_scipy_binomial():
    # One-stage staged at alpha = 0.2: certified when the two-sided CP interval at alpha/1 in
    # each tail has its lower end above p0, i.e. Beta(alpha; A, n - A + 1) > p0 (scipy.stats
    # .beta, not the policy's thresholds), so P(certified) = P(Binomial(n, p) >= A_min).
    n, alpha, r, sigma = 300, 0.2, 0.25, 0.5
    p0 = st.norm.cdf(r / sigma)
    a = np.arange(1, n + 1)
    a_min = int(a[st.beta.ppf(alpha, a, n - a + 1) > p0][0])
    trials = 40_000
    doc = _decision_json(["--policy", f"staged r={r} stages={n} alpha={alpha}", "--offsets",
                          "0,0.02", "--decision-trials", str(trials), "--seed", "3"])
    for row in doc["decision_rows"]:
        want = st.binom.sf(a_min - 1, n, row["p"])
        assert row["false_certification"] == pytest.approx(want, rel=1e-9)
        assert row["trials"] == trials
        assert st.binomtest(row["failures"], trials, want).pvalue > 1e-3, (row, want)
        assert row["ci_low"] <= want <= row["ci_high"]
    assert doc["decision_violations"] == []  # a fixed-n CP bound keeps alpha


def test_policy_without_exact_law_is_simulated_over_the_minimum(monkeypatch):
    from isskit.policies import CS
    from isskit.studies import decision_audit

    policy = CS(r=0.25, alpha=0.1, n_max=400)
    exact = decision_audit.audit_decisions([policy], 0.5, [0.0])[0]
    monkeypatch.setattr(decision_audit, "exact_law", lambda *a: None)
    monkeypatch.setattr(decision_audit, "MIN_SIMULATED", 30_000)
    row = audit([policy], trials=0, sigma=0.5, offsets=[0.0])[0]
    assert not row.exact and np.isnan(row.false_certification) and row.trials == 30_000
    assert st.binomtest(row.failures, row.trials, exact.false_certification).pvalue > 1e-3
    assert row.ratio == row.rate / 0.1
    assert abs(row.undecided - exact.undecided) < 0.02
    assert abs(row.mean_samples - exact.mean_samples) < 0.02 * exact.mean_samples


def test_mixed_policies_keep_their_order_and_radius_numbers():
    from isskit.policies import CS

    alone = audit([Cohen(n0=10, n=300, alpha=0.1)], [0.6, 0.9], trials=500, seed=4)
    mixed = audit([CS(r=0.25, n_max=500), Cohen(n0=10, n=300, alpha=0.1)], [0.6, 0.9],
                  trials=500, seed=4, offsets=[0.0, 0.01])
    assert [type(r).__name__ for r in mixed] == ["DecisionAuditRow"] * 2 + ["AuditRow"] * 2
    assert mixed[2:] == alone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "cs r=0.5", "--offsets", "-0.1"], "--offsets (-0.1)"),
        (["--policy", "cs r=0.5", "--offsets", "0,y"], "--offsets ('y')"),
        (["--policy", "cs r=0.5", "--decision-trials", "-2"], "--decision-trials (-2)"),
        (["--policy", "cs r=0 method=kt"], "r (0"),
    ],
)
def test_cli_decision_bad_input(args, message):
    res = CliRunner().invoke(cli, ["audit", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_cli_decision_offsets_at_or_past_p0_are_refused():
    # p = p0 - offset must stay a probability: offset 0.6 >= p0 = Phi(0.1 / 0.5) = 0.579
    res = CliRunner().invoke(cli, ["audit", "--no-progress", "--policy", "cs r=0.1 n_max=500",
                                   "--sigma", "0.5", "--offsets", "0,0.6"])
    assert res.exit_code == 2 and "--offsets (0.6)" in res.output, res.output
    assert f"p0 = {st.norm.cdf(0.2):.4g}" in res.output
    res = CliRunner().invoke(cli, ["audit", "--no-progress", "--policy", "cs r=0.1 n_max=500",
                                   "--p-A", "2"])
    assert res.exit_code == 2 and "--p-A (2.0)" in res.output, res.output
