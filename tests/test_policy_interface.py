"""A policy defined only here replays, audits and exports with no change anywhere else.

The toy policy ``pilotsize(m)``: choose the class on ``[0, m)``, then count it over the next
``x`` fresh samples, ``x`` being the class's count in the selection (an input-specific size
that grows with the pilot's confidence). It touches no isskit module: the interface
(``isskit.policies.RadiusPolicy``) and the registry are all replay, audit and export use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from scipy import stats as st

from isskit.policies import KINDS, CountPlan, RadiusPolicy, parse_policy_spec, register
from isskit.replay import export_cohen, replay
from isskit.store import open_store
from isskit.studies.audit import audit, failure_probability, simulate
from isskit.studies.synthetic import write_synthetic_store

N, C, SIGMA, ALPHA = 400, 3, 0.5, 0.01


@dataclass(frozen=True)
class PilotSize(RadiusPolicy):
    m: int = 20
    alpha: float = ALPHA
    kind: ClassVar[str] = "pilotsize"
    validity: ClassVar[str] = "fixed-n"

    def __post_init__(self):
        if not (isinstance(self.m, int) and self.m >= 1):
            raise ValueError(f"m ({self.m!r}) must be an integer >= 1")

    @property
    def name(self):
        return f"pilotsize-{self.m}"

    def params(self):
        return {"kind": self.kind, "m": self.m, "alpha": self.alpha}

    @property
    def selection_size(self):
        return self.m

    @property
    def max_samples(self):
        return 2 * self.m

    def plan(self, x, *, sigma):
        return CountPlan(start=self.m, k=np.asarray(x, np.int64))


@pytest.fixture
def toy():
    register(PilotSize)
    yield PilotSize
    del KINDS["pilotsize"]


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(4)
    n = 30
    p_A = rng.uniform(0.3, 1.0, n)
    predicted = rng.integers(0, C, n)
    write_synthetic_store(path, p_A, predicted=predicted, true_label=predicted, samples_per_image=N,
                          num_classes=C, sigma=SIGMA, seed=2, seconds_per_sample=0.01)
    return path


def _twin(labels, m, alpha, sigma):
    """The toy policy by hand over one stream, with scipy: (prediction, radius, samples)."""
    sel = list(labels[:m])
    counts = [sel.count(c) for c in range(C)]
    c = counts.index(max(counts))  # ties to the smallest label
    x = counts[c]
    window = list(labels[m : m + x])
    k_A = window.count(c)
    if x == 0:
        return -1, 0.0, m
    p_lower = 0.0 if k_A == 0 else st.beta.ppf(alpha, k_A, x - k_A + 1)
    if p_lower < 0.5:
        return -1, 0.0, m + x
    return c, sigma * st.norm.ppf(p_lower), m + x


def test_toy_policy_replays_audits_exports(toy, store_path, tmp_path):
    (policy,) = parse_policy_spec("pilotsize m=25")
    assert policy == PilotSize(m=25)
    ds = replay(store_path, [policy, "ias n=50"])
    assert str(ds.validity.values[0]) == "fixed-n" and int(ds.m.values[0]) == 25
    with open_store(store_path) as s:
        labels = s.labels()
    for i in range(labels.shape[0]):
        pred, radius, samples = _twin(labels[i].tolist(), 25, ALPHA, SIGMA)
        assert int(ds.prediction.values[0, i]) == pred
        assert int(ds.samples.values[0, i]) == samples
        assert float(ds.radius.values[0, i]) == pytest.approx(radius, rel=1e-12, abs=1e-12)

    # the audit: exact against a plain sum over the selection count and the fresh count
    p = 0.8
    exact = failure_probability(policy, p, sigma=SIGMA)
    total = 0.0
    for x0 in range(26):
        top = x0 >= 25 - x0
        x, pc = (x0, p) if top else (25 - x0, 1 - p)
        for y in range(x + 1):
            pl = 0.0 if y == 0 else st.beta.ppf(ALPHA, y, x - y + 1)
            if x and pl >= 0.5 and pl > pc:
                total += st.binom.pmf(x0, 25, p) * st.binom.pmf(y, x, pc)
    assert exact == pytest.approx(total, rel=1e-9, abs=1e-15)
    sim = simulate(policy, p, 20_000, np.random.default_rng(0), sigma=SIGMA)
    assert np.all(sim.samples >= 25) and np.all(sim.samples <= 50)
    (row,) = audit([policy], [p], trials=20_000, sigma=SIGMA)
    assert row.ci_low <= exact <= row.ci_high

    paths = export_cohen(ds, tmp_path / "logs")
    rows = paths[0].read_text().splitlines()
    assert rows[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime"
    assert [int(r.split("\t")[2]) for r in rows[1:]] == ds.prediction.values[0].tolist()


def test_unregistered_kind_is_unknown():
    with pytest.raises(ValueError, match="unknown policy kind 'pilotsize'"):
        parse_policy_spec("pilotsize m=25")
