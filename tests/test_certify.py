"""isskit.sampling.certify: online certificates equal replay's on the store written."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

from isskit.replay import replay  # noqa: E402
from isskit.sampling import sample_to_store  # noqa: E402
from isskit.sampling.certify import certify_to_store  # noqa: E402
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import default_model  # noqa: E402
from isskit.store import open_store  # noqa: E402

# Small versions of every radius policy kind: Cohen's CERTIFY, one-stage IAS, ISS (paper
# pilot reuse and fresh), at sigma 0.5 where the embedded model's p_A spread over (0.5, 1].
POLICIES = ["cohen n0=20 n=300", "ias n=200",
            "iss decline=ad k_bar=400 U=0.1 k0=40",
            "iss decline=ad k_bar=400 U=0.1 k0=40 fresh=true"]
INDICES = [0, 7, 19, 44, 101, 250]


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
    sample_to_store(default.model, digits.dataset, tmp_path / "s.h5", sigma=0.5, N=600,
                    batch=400, seed=3, indices=INDICES, device="cpu", progress=False,
                    model_description="m", dataset_name="d")
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
