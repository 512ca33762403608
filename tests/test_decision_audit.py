"""Exact laws of decision policies (isskit.studies.decision_audit) against enumeration and
simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from isskit.decision import decide_adaptive, decide_cs, decide_staged
from isskit.policies import CS, Adaptive, Staged
from isskit.replay import _kernels
from isskit.studies.decision_audit import audit_decisions, decision_law, false_certification
from tests import reference as ref

SIGMA = 0.5


def _close(a, b):
    assert a == pytest.approx(b, rel=1e-11, abs=1e-15)


# --------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("policy", [
    CS(r=0.2, alpha=0.3, n_max=13),
    CS(r=0.2, alpha=0.3, n_max=13, faithful=True),
    CS(r=0.1, alpha=0.2, n_max=13, method="union"),
    CS(r=0.3, alpha=0.45, n_max=12, faithful=True),
])
def test_cs_law_equals_enumeration(policy):
    p0 = ref.ref_p0(policy.r, SIGMA)
    lo, hi = ref.ref_cs_thresholds(p0, policy.alpha, policy.n_max, policy.method,
                                   policy.faithful)
    ps = (p0, p0 - 0.05, 0.9, 0.2)
    wants = ref.ref_decision_law_bruteforce(
        lambda s: ref.ref_cs_decide(s, 1, lo, hi, policy.n_max), policy.n_max, ps)
    for p, want in zip(ps, wants, strict=True):
        law = decision_law(policy, p, SIGMA)
        for got, exp in zip((law.certified, law.not_certified, law.undecided,
                             law.mean_samples), want, strict=False):
            _close(got, exp)
    assert max(w[0] for w in wants) > 0.01 and max(w[1] for w in wants) > 0.01  # both matter


@pytest.mark.parametrize("policy", [
    Staged(r=0.2, stages=(2, 3, 5), alpha=0.3),
    Staged(r=0.5, stages=(4, 7), alpha=0.6),
])
def test_staged_law_equals_enumeration(policy):
    p0 = ref.ref_p0(policy.r, SIGMA)
    ps = (p0, p0 - 0.03, 0.95)
    wants = ref.ref_decision_law_bruteforce(
        lambda s: ref.ref_staged_decide(s, 1, policy, SIGMA), sum(policy.stages), ps)
    for p, want in zip(ps, wants, strict=True):
        law = decision_law(policy, p, SIGMA)
        for got, exp in zip((law.certified, law.not_certified, law.undecided,
                             law.mean_samples), want, strict=False):
            _close(got, exp)


@pytest.mark.parametrize("policy", [
    Adaptive(r=0.05, n0=3, stages=(2, 4), alpha=0.4, beta=0.4),
    Adaptive(r=0.1, n0=2, stages=(1, 2, 3), alpha=0.6, beta=0.3),
])
def test_adaptive_law_equals_enumeration(policy):
    """Two-class stream: label 0 with probability p (enumerated as 1 - x), label 1 otherwise."""
    p0 = ref.ref_p0(policy.r, SIGMA)
    ps = (p0, p0 - 0.02, 0.5, 0.45, 0.9)
    # x = 1 with probability p is label 0
    wants = ref.ref_decision_law_bruteforce(
        lambda s: ref.ref_adaptive_decide([1 - x for x in s], policy, SIGMA),
        policy.max_samples, ps)
    for p, (cert, rej, und, mean, cert0) in zip(ps, wants, strict=True):
        law = decision_law(policy, p, SIGMA)
        _close(law.certified, cert)
        _close(law.not_certified, rej)
        _close(law.mean_samples, mean)
        _close(law.certified_runner_up, cert - cert0)
        assert und == law.undecided == 0.0
        false = cert0 * (p <= p0) + (cert - cert0) * (1 - p <= p0)
        _close(false_certification(policy, p, SIGMA), false)
    assert max(w[4] for w in wants) > 0.01 and max(w[0] - w[4] for w in wants) > 0.01


# --------------------------------------------------------------------------- simulation


def _interval(k, n, conf=0.9999):
    lo = 0.0 if k == 0 else st.beta.ppf((1 - conf) / 2, k, n - k + 1)
    hi = 1.0 if k == n else st.beta.ppf(1 - (1 - conf) / 2, k + 1, n - k)
    return lo, hi


def _bits(x):
    """Index of 0/1 rows (labels == 1), with pack_slots."""
    n, N = x.shape
    nw = _kernels.n_words(N)
    bits = np.zeros((n, 8 * nw), np.uint8)
    cum = np.zeros((n, nw + 1), np.int32)
    _kernels.pack_slots(x.astype(np.uint16), np.arange(n + 1, dtype=np.int64),
                        np.ones(n, np.int64), bits, cum)
    return bits, cum


def _check_sim(law, decision, samples):
    n = decision.size
    for code, prob in ((1, law.certified), (0, law.not_certified), (-1, law.undecided)):
        lo, hi = _interval(int(np.sum(decision == code)), n)
        assert lo <= prob <= hi, (code, prob, lo, hi)
    se = samples.std() / np.sqrt(n)
    assert abs(samples.mean() - law.mean_samples) <= 5 * se + 1e-9


TRIALS = 100_000


@pytest.mark.parametrize("policy", [CS(r=0.25, alpha=0.05, n_max=600),
                                    CS(r=0.25, alpha=0.05, n_max=600, faithful=True),
                                    CS(r=0.25, alpha=0.05, n_max=600, method="union"),
                                    Staged(r=0.25, stages=(40, 100, 200, 260), alpha=0.1)])
def test_true_label_laws_match_simulated_replays(policy):
    """1e5 i.i.d. streams at p = p0 and below, replayed by the kernels."""
    rng = np.random.default_rng(11)
    p0 = ref.ref_p0(policy.r, SIGMA)
    decide = decide_cs if isinstance(policy, CS) else decide_staged
    for p in (p0, p0 - 0.02):
        x = rng.random((TRIALS, policy.max_samples)) < p
        bits, cum = _bits(x)
        res = decide(bits, cum, policy, SIGMA, drawn=policy.max_samples)
        _check_sim(decision_law(policy, p, SIGMA), res.decision, res.samples)


def test_adaptive_law_matches_simulated_replays():
    policy = Adaptive(r=0.25, n0=10, stages=(50, 150, 350), alpha=0.1, beta=0.1)
    rng = np.random.default_rng(12)
    p0 = ref.ref_p0(policy.r, SIGMA)
    for p in (p0, 0.5):
        labels = (rng.random((TRIALS, policy.max_samples)) >= p).astype(np.uint16)
        res = decide_adaptive(labels, policy, SIGMA, num_classes=2)
        law = decision_law(policy, p, SIGMA)
        _check_sim(law, res.decision, res.samples)
        lo, hi = _interval(int(np.sum(res.prediction == 1)), TRIALS)
        assert lo <= law.certified_runner_up <= hi


# --------------------------------------------------------------------------- validity


def test_default_policies_keep_alpha_at_p0():
    """At the defaults (alpha = 0.001, r / sigma = 1): the valid ones stay below alpha."""
    r = 0.5
    for pol in (CS(r=r), CS(r=r, method="union"), Staged(r=r), Adaptive(r=r)):
        at_p0 = false_certification(pol, ref.ref_p0(r, SIGMA), SIGMA)
        assert 0.0 < at_p0 <= pol.alpha
        below = false_certification(pol, ref.ref_p0(r, SIGMA) - 0.003, SIGMA)
        assert below <= at_p0
    faithful = false_certification(CS(r=r, faithful=True), ref.ref_p0(r, SIGMA), SIGMA)
    assert faithful <= 2 * 0.001  # Ville's inequality at 1 / (2 alpha)
    # above p0 certifying is right, not false
    assert false_certification(Staged(r=r), 0.95, SIGMA) == 0.0


def test_audit_rows():
    rows = audit_decisions([Staged(r=0.5, stages=(100, 1000)), CS(r=0.5, n_max=2000)],
                           SIGMA, offsets=(0.0, 0.01))
    assert [(r.policy, round(r.p0 - r.p, 12)) for r in rows] == [
        ("Staged-r=0.5-stages=100/1000", 0.0), ("Staged-r=0.5-stages=100/1000", 0.01),
        ("CS-KT-r=0.5-n_max=2000", 0.0), ("CS-KT-r=0.5-n_max=2000", 0.01)]
    d = rows[0].to_dict()
    assert d["ratio"] == rows[0].false_certification / 0.001
    assert d["validity"] == "alpha-split" and d["exceeds_alpha"] is False
    assert abs(d["certified"] + d["not_certified"] + d["undecided"] - 1) < 1e-12
    with pytest.raises(ValueError, match="offsets"):
        audit_decisions([Staged(r=0.5)], SIGMA, offsets=(-0.1,))
    with pytest.raises(ValueError, match="must be a decision policy"):
        audit_decisions(["cs r=0.5"], SIGMA)
