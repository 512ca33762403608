"""isskit.sampling.certify: online certificates equal replay's on the store written."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

from isskit.logs import read_cohen_log  # noqa: E402
from isskit.policies import Decided, parse_policies  # noqa: E402
from isskit.replay import replay  # noqa: E402
from isskit.replay.results import export_cohen  # noqa: E402
from isskit.sampling import sample_to_store  # noqa: E402
from isskit.sampling.certify import certify_to_store  # noqa: E402
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import default_model  # noqa: E402
from isskit.store import open_store  # noqa: E402
from tests import reference as ref  # noqa: E402

# Small versions of every radius policy kind: Cohen's CERTIFY, one-stage IAS, ISS (paper
# pilot reuse and fresh), at sigma 0.5 where the embedded model's p_A spread over (0.5, 1].
POLICIES = ["cohen n0=20 n=300", "ias n=200",
            "iss decline=ad k_bar=400 U=0.1 k0=40",
            "iss decline=ad k_bar=400 U=0.1 k0=40 fresh=true"]
INDICES = [0, 7, 19, 44, 101, 250]
# Small versions of every decision policy kind at sigma 0.5 (p0 = Phi(0.5) = 0.69 at
# r = 0.25, 0.84 at r = 0.5): adaptive's fresh stages, staged's pooled ones, cs's two
# confidence sequences; all decide within 600 samples.
DECISIONS = ["adaptive r=0.25 n0=20 stages=60/200/280", "staged r=0.5 stages=40/160/300",
             "cs r=0.25 method=kt n_max=600", "cs r=0.5 method=union n_max=600"]
MORE_INDICES = [*INDICES, 3, 5, 12, 60, 77, 140, 200, 222, 270, 300, 333, 341, 350, 358]


@pytest.fixture(scope="module")
def default():
    return default_model()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _kw(**over):
    kw = dict(policies=POLICIES, sigma=0.5, max_samples=600, batch=128, seed=3,
              indices=INDICES, device="cpu", progress=False, model_description="m",
              dataset_name="d")
    kw.update(over)
    return kw


def test_online_equals_replay_of_its_store(tmp_path, default, digits):
    out = tmp_path / "c.h5"
    run = certify_to_store(default.model, digits.dataset, out, log_dir=tmp_path / "logs",
                           **_kw())
    with open_store(out) as s:
        assert s.complete.all() and s.schema_version == 2
        np.testing.assert_array_equal(s.drawn, run.drawn)
        # drawn: exactly what the hungriest policy consumed, never more
        np.testing.assert_array_equal(run.drawn, run.samples.max(axis=0))
        assert run.drawn.max() < 600
    for b, spec in enumerate(POLICIES):
        ds = replay(out, [spec], reference="ias n=10")
        np.testing.assert_array_equal(ds.prediction.values[0], run.prediction[b], err_msg=spec)
        np.testing.assert_array_equal(ds.radius.values[0], run.radius[b], err_msg=spec)
        np.testing.assert_array_equal(ds.samples.values[0], run.samples[b], err_msg=spec)
        # the log says the same, line per image
        lines = run.logs[b].read_text().splitlines()
        assert lines[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime"
        got = [line.split("\t")[:4] for line in lines[1:]]
        want = [[str(i), str(t), str(p), f"{r:.6f}"] for i, t, p, r in zip(
            INDICES, ds.true_label.values, ds.prediction.values[0], ds.radius.values[0],
            strict=True)]
        assert got == want
    assert len(set(run.prediction[0].tolist())) > 1 or run.radius[0].min() < run.radius[0].max()


def test_rows_equal_the_rows_sample_draws(tmp_path, default, digits):
    # The same noise as isskit sample: a certify row is a prefix of the full row.
    run = certify_to_store(default.model, digits.dataset, tmp_path / "c.h5", **_kw())
    sample_to_store(
        default.model,
        digits.dataset,
        tmp_path / "s.h5",
        sigma=0.5,
        samples_per_image=600,
        batch=400,
        seed=3,
        indices=INDICES,
        device="cpu",
        progress=False,
        model_description="m",
        dataset_name="d",
    )
    with open_store(tmp_path / "c.h5") as c, open_store(tmp_path / "s.h5") as s:
        for r, d in enumerate(run.drawn):
            np.testing.assert_array_equal(c.labels(r)[:d], s.labels(r)[:d])


def test_store_is_a_cache_and_resume_finishes_the_same(tmp_path, default, digits):
    out = tmp_path / "c.h5"
    first = certify_to_store(default.model, digits.dataset, out, **_kw(policies=POLICIES[1:2]))
    # a second run with more policies reuses the rows and draws only the difference
    again = certify_to_store(default.model, digits.dataset, out, **_kw())
    ref = certify_to_store(default.model, digits.dataset, tmp_path / "r.h5", **_kw())
    assert 0 < again.samples_drawn_now == ref.samples_drawn_now - first.samples_drawn_now
    np.testing.assert_array_equal(again.radius, ref.radius)
    with open_store(out) as a, open_store(tmp_path / "r.h5") as b:
        np.testing.assert_array_equal(a.drawn, b.drawn)
        np.testing.assert_array_equal(a.labels(), b.labels())
    # a third run draws nothing
    assert certify_to_store(default.model, digits.dataset, out, **_kw()).samples_drawn_now == 0


def test_bad_policies(tmp_path, default, digits):
    with pytest.raises(ValueError, match="at least one policy"):
        certify_to_store(default.model, digits.dataset, tmp_path / "c.h5", **_kw(policies=[]))
    with pytest.raises(ValueError, match=r"ias-0.1|IAS-0.1.*may need 1000 samples.*max_samples"
                       r" \(600\)"):
        certify_to_store(default.model, digits.dataset, tmp_path / "c.h5",
                         **_kw(policies=["ias n=1000"]))
    assert not (tmp_path / "c.h5").exists()


def test_decision_policies_online_equal_replay_image_by_image(tmp_path, default, digits):
    # Mixed with radius policies: rows are drawn until every policy has decided, and each
    # decision policy's answer is the one replay finds on the store written.
    out = tmp_path / "c.h5"
    specs = DECISIONS + POLICIES[2:3]
    run = certify_to_store(default.model, digits.dataset, out, log_dir=tmp_path / "logs",
                           **_kw(policies=specs, indices=MORE_INDICES))
    np.testing.assert_array_equal(run.drawn, run.samples.max(axis=0))
    ds = replay(out, specs, reference="ias n=10")
    np.testing.assert_array_equal(ds.decision.values, run.decision)
    np.testing.assert_array_equal(ds.samples.values, run.samples)
    np.testing.assert_array_equal(ds.prediction.values, run.prediction)
    np.testing.assert_array_equal(np.isnan(ds.radius.values), np.isnan(run.radius))
    np.testing.assert_array_equal(np.nan_to_num(ds.radius.values), np.nan_to_num(run.radius))
    # every decision occurs, so the comparison is not on one kind of image only
    assert {1, 0} <= set(run.decision[:4].ravel().tolist())
    # the logs are replay's Cohen export, column for column but the time
    exported = export_cohen(ds, tmp_path / "exported")
    for mine, theirs in zip(run.logs, exported, strict=True):
        a, b = read_cohen_log(mine), read_cohen_log(theirs)
        for f in ("idx", "label", "predict", "radius"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"{mine} {f}")
        assert np.isfinite(a.time).all()
    # and the stored rows, decided by the slow twins, give the same answers
    pols = parse_policies(DECISIONS)
    with open_store(out) as s:
        for i in range(len(MORE_INDICES)):
            row, t = s.labels(i)[:s.drawn[i]], int(s.true_label[i])
            got = [ref.ref_adaptive_decide(row, pols[0], 0.5)[:2],
                   ref.ref_staged_decide(row, t, pols[1], 0.5)]
            for p in pols[2:]:
                lo, hi = ref.ref_cs_thresholds(ref.ref_p0(p.r, 0.5), p.alpha, p.n_max,
                                               p.method)
                got.append(ref.ref_cs_decide(row, t, lo, hi, p.n_max))
            assert got == [(int(run.decision[b, i]), int(run.samples[b, i]))
                           for b in range(4)], i


def _stream(rng, n, p, true=3):
    other = rng.integers(0, 10, n)
    return np.where(rng.random(n) < p, true, np.where(other == true, 0, other)).astype(np.uint16)


@pytest.mark.parametrize("spec", [*DECISIONS, "cs r=0.5 method=kt n_max=300 alpha=0.01",
                                  "adaptive r=0.5 n0=10 stages=30/90"])
def test_needs_equals_the_twins_on_every_prefix(spec):
    # On prefixes of streams around p0, needs() either decides as the twin does on that
    # prefix or asks for exactly the twin's least number of samples; asking again at
    # that number is how certify draws, so the chain of answers ends in the full
    # stream's decision.
    (p,) = parse_policies([spec])
    sigma, true = 0.5, 3
    rng = np.random.default_rng(12)
    if p.kind == "cs":
        lo, hi = ref.ref_cs_thresholds(ref.ref_p0(p.r, sigma), p.alpha, p.n_max, p.method)
    asked = 0
    for q in (0.2, 0.6, 0.69, 0.8, 0.84, 0.9, 0.97, 1.0):
        labels = _stream(rng, p.max_samples, q, true)
        for t in sorted({0, 1, 5, 39, 40, 41, 79, 80, 200, 299, 300,
                         *rng.integers(0, p.max_samples + 1, 12).tolist()}):
            if t > p.max_samples:
                continue
            prefix = labels[:t]
            got = p.needs(prefix, sigma=sigma, true_label=true)
            if p.kind == "cs":
                want = ref.ref_cs_needs(prefix, true, lo, hi, p.n_max)
            elif p.kind == "staged":
                want = ref.ref_staged_needs(prefix, true, p, sigma)
            else:
                want = ref.ref_adaptive_needs(prefix, p, sigma)
            if isinstance(want, int):
                assert got == want and got > t, (q, t)
                asked += 1
            else:
                assert isinstance(got, Decided), (q, t, got)
                assert (got.decision, got.samples) == tuple(want[:2]), (q, t)
                if p.kind == "adaptive":
                    assert got.prediction == want[2]
                else:
                    assert got.prediction == (true if got.decision == 1 else -1)
        # the online chain: draw to what is asked until decided
        t = 0
        while isinstance(got := p.needs(labels[:t], sigma=sigma, true_label=true), int):
            assert got > t
            t = got
        full = p.needs(labels, sigma=sigma, true_label=true)
        assert got == full and t == full.samples
    assert asked > 10


def test_needs_requires_the_true_label():
    (p,) = parse_policies(["staged r=0.5"])
    with pytest.raises(ValueError, match=r"Staged-r=0\.5 tests the true label"):
        p.needs([1, 2, 3], sigma=0.5)


class _Dies(torch.nn.Module):
    """The embedded model, failing at its ``after``-th forward pass (a kill mid-run)."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("killed")
        return self.model(x)


def _columns(path):
    log = read_cohen_log(path)
    return [log.idx.tolist(), log.label.tolist(), log.predict.tolist(), log.radius.tolist()]


def test_logs_are_never_half_written_and_rebuilt_on_resume(tmp_path, default, digits,
                                                           monkeypatch):
    import isskit.sampling.certify as certify_module

    monkeypatch.setattr(certify_module, "_WINDOW", 4)
    specs = [POLICIES[2], DECISIONS[2]]
    kw = _kw(policies=specs, indices=MORE_INDICES, batch=64)
    ref_run = certify_to_store(default.model, digits.dataset, tmp_path / "r.h5",
                               log_dir=tmp_path / "ref", **kw)
    out, logs = tmp_path / "c.h5", tmp_path / "logs"
    with pytest.raises(RuntimeError, match="killed"):
        certify_to_store(_Dies(default.model, 100), digits.dataset, out, log_dir=logs,
                         **dict(kw, num_classes=10))
    with open_store(out) as s:
        done = int(s.complete.sum())
        assert 0 < done < len(MORE_INDICES) and s.complete[:done].all()
    for name in ref_run.logs:
        # what is on disk parses whole and holds exactly the rows committed to the store
        got, want = _columns(logs / name.name), _columns(name)
        assert got == [c[:done] for c in want]
    again = certify_to_store(default.model, digits.dataset, out, log_dir=logs, **kw)
    for mine, ref_log in zip(again.logs, ref_run.logs, strict=True):
        assert _columns(mine) == _columns(ref_log)
        assert np.isfinite(read_cohen_log(mine).time).all()


def test_cached_rows_get_their_stored_time(tmp_path, default, digits):
    # A row reused from the store is logged with its stored /seconds, scaled as a fresh
    # row's: a rerun that draws nothing writes the same logs, times included.
    out = tmp_path / "c.h5"
    first = certify_to_store(default.model, digits.dataset, out, log_dir=tmp_path / "a",
                             **_kw(policies=[POLICIES[1], DECISIONS[1]]))
    again = certify_to_store(default.model, digits.dataset, out, log_dir=tmp_path / "b",
                             **_kw(policies=[POLICIES[1], DECISIONS[1]]))
    assert again.samples_drawn_now == 0
    with open_store(out) as s:
        seconds = s.seconds
    for a, b in zip(first.logs, again.logs, strict=True):
        assert a.read_text() == b.read_text()
        t = read_cohen_log(b).time
        np.testing.assert_allclose(t, seconds * again.samples[first.logs.index(a)]
                                   / again.drawn, rtol=0, atol=1e-6)
