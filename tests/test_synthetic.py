"""Synthetic label streams: frequencies match p_A, rows are reproducible, realistic p_A."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import stats

from isskit.store import StoreMismatchError, open_store
from isskit.studies.synthetic import (
    DEFAULT_SOURCE,
    read_recovered,
    realistic_p_A,
    synthetic_labels,
    write_synthetic_store,
)

# Seeded draws: a correct generator fails these bounds with probability < 1e-6 each.
_LEVEL = 1 - 1e-6


@pytest.mark.parametrize("other", ["uniform", "runner_up"])
def test_top_class_frequency_within_binomial_interval(other):
    p_A = np.array([0.0, 0.003, 0.3, 0.64, 0.975, 0.9999, 1.0])
    pred = np.array([0, 3, 9, 2, 5, 7, 1])
    N = 200_000
    labels = synthetic_labels(
        p_A, N, predicted=pred, num_classes=10, rng=np.random.default_rng(1), other=other
    )
    assert labels.dtype == np.uint16 and labels.shape == (7, N)
    assert labels.max() < 10
    for i, (p, c) in enumerate(zip(p_A, pred, strict=True)):
        k = int(np.sum(labels[i] == c))
        lo, hi = stats.binom.interval(_LEVEL, N, p)
        assert lo <= k <= hi, (i, p, k, lo, hi)
        rest = labels[i][labels[i] != c]
        if other == "runner_up":
            assert np.all(rest == (c + 1) % 10)
        elif rest.size > 1000:
            # The other nine classes equally likely: chi-square goodness of fit.
            counts = np.bincount(rest, minlength=10)
            assert counts[c] == 0
            assert stats.chisquare(np.delete(counts, c)).pvalue > 1e-6


def test_non_top_draws_are_spread_uniformly_over_positions():
    # The gap-sampling shortcut must give i.i.d. Bernoulli positions: every position
    # (the first one too) equally likely, successive draws independent.
    rows, N, p = 400, 1000, 0.7
    labels = synthetic_labels(
        np.full(rows, p),
        N,
        predicted=np.zeros(rows, int),
        num_classes=2,
        rng=np.random.default_rng(2),
    )
    miss = labels != 0
    lo, hi = stats.binom.interval(_LEVEL, rows, 1 - p)
    assert lo <= miss[:, 0].sum() <= hi and lo <= miss[:, -1].sum() <= hi
    per_tenth = miss.reshape(rows, 10, N // 10).sum(axis=(0, 2))
    assert stats.chisquare(per_tenth).pvalue > 1e-6
    both = np.sum(miss[:, :-1] & miss[:, 1:])  # pairs of neighbours both non-top
    lo, hi = stats.binom.interval(_LEVEL, rows * (N - 1), (1 - p) ** 2)
    assert lo <= both <= hi


def test_synthetic_labels_rejects_bad_input():
    kw = dict(predicted=[0], num_classes=10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"p_A \(1.5\)"):
        synthetic_labels([1.5], 10, **kw)
    with pytest.raises(ValueError, match=r"p_A \(nan\)"):
        synthetic_labels([np.nan], 10, **kw)
    with pytest.raises(ValueError, match=r"predicted class \(10\)"):
        synthetic_labels([0.5], 10, predicted=[10], num_classes=10, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="other"):
        synthetic_labels([0.5], 10, other="zipf", **kw)
    with pytest.raises(ValueError, match="num_classes"):
        synthetic_labels([0.5], 10, predicted=[0], num_classes=1, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="N"):
        synthetic_labels([0.5], 0, **kw)
    with pytest.raises(ValueError, match="rng"):
        synthetic_labels([0.5], 10, predicted=[0], num_classes=10, rng=3)
    # p_A = 1 needs no other class
    one = synthetic_labels([1.0], 5, predicted=[0], num_classes=1, rng=np.random.default_rng())
    assert one.tolist() == [[0] * 5]


def _write(path, **over):
    args = dict(
        p_A=np.array([0.9, 0.6, 1.0, 0.3, 0.99]),
        predicted=np.array([1, 2, 3, 4, 5]),
        true_label=np.array([1, 2, 0, 4, 5]),
        samples_per_image=5000,
        num_classes=10,
        sigma=0.5,
        seed=11,
        image_index=np.array([10, 20, 30, 40, 50]),
        max_bytes=2 * 5000 * 2,  # two rows per block, so blocks are exercised
    )
    args.update(over)
    return write_synthetic_store(path, args.pop("p_A"), **args)


def test_store_rows_are_reproducible_and_seeded_by_image_index(tmp_path):
    _write(tmp_path / "a.h5")
    _write(tmp_path / "b.h5", max_bytes=1 << 30)
    with open_store(tmp_path / "a.h5") as a, open_store(tmp_path / "b.h5") as b:
        assert a.complete.all()
        np.testing.assert_array_equal(a.labels(), b.labels())
        np.testing.assert_array_equal(a.columns["p_A"], [0.9, 0.6, 1.0, 0.3, 0.99])
        np.testing.assert_array_equal(a.columns["predicted"], [1, 2, 3, 4, 5])
        assert a.attrs["seed"] == 11 and a.sigma == 0.5 and a.attrs["dataset"] == "synthetic"
        assert np.isnan(a.seconds_per_sample())
        # Row i is exactly synthetic_labels on the generator seeded by (seed, image_index).
        for i, idx in enumerate(a.image_index):
            one = synthetic_labels(
                a.columns["p_A"][i : i + 1],
                5000,
                predicted=a.columns["predicted"][i : i + 1],
                num_classes=10,
                rng=np.random.default_rng([11, int(idx)]),
            )
            np.testing.assert_array_equal(a.labels(i), one[0])
        first = a.labels(0)
    # The same image in another store, in another position, gets the same row.
    write_synthetic_store(
        tmp_path / "c.h5",
        [0.3, 0.9],
        predicted=[4, 1],
        true_label=[4, 1],
        samples_per_image=5000,
        num_classes=10,
        sigma=0.5,
        seed=11,
        image_index=[40, 10],
    )
    with open_store(tmp_path / "c.h5") as c:
        np.testing.assert_array_equal(c.labels(1), first)
    # Another seed gives other rows.
    _write(tmp_path / "d.h5", seed=12)
    with open_store(tmp_path / "d.h5") as d:
        assert not np.array_equal(d.labels(0), first)


def test_resume_redraws_only_incomplete_rows_identically(tmp_path):
    path = _write(tmp_path / "a.h5", seconds_per_sample=1e-4)
    with open_store(path) as s:
        full = s.labels()
        assert s.seconds_per_sample() == pytest.approx(1e-4)
    with h5py.File(path, "r+") as f:  # as if killed before rows 1 and 3 were written
        f["complete"][1] = False
        f["complete"][3] = False
        f["labels"][1] = 0
        f["labels"][3] = 0
    _write(path, seconds_per_sample=1e-4)
    with open_store(path) as s:
        assert s.complete.all()
        np.testing.assert_array_equal(s.labels(), full)
    with pytest.raises(StoreMismatchError, match="column p_A"):
        _write(path, p_A=np.array([0.9, 0.6, 1.0, 0.3, 0.98]), seconds_per_sample=1e-4)


def test_write_synthetic_store_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="seconds_per_sample"):
        _write(tmp_path / "a.h5", seconds_per_sample=-1.0)
    with pytest.raises(ValueError, match="image_index"):
        _write(tmp_path / "a.h5", image_index=np.array([-1, 20, 30, 40, 50]))
    with pytest.raises(ValueError, match="sigma"):
        _write(tmp_path / "a.h5", sigma=0)
    assert not (tmp_path / "a.h5").exists()


def test_recovered_log_deciles_match_the_published_table():
    # Deciles of kA_mid / n over non-abstained rows, and the abstention count, from the
    # table "What the p_A distributions look like" in data/published/README.md.
    rec = read_recovered(DEFAULT_SOURCE)
    assert rec.header["n"] == "100000" and rec.header["sigma"] == "0.25"
    ok = rec.kA_mid >= 0
    assert ok.size == 500 and int((~ok).sum()) == 43
    assert np.all(rec.predict[~ok] == -1)
    p = rec.kA_mid[ok] / rec.n[ok]
    deciles = np.quantile(p, [0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(deciles, [0.641, 0.853, 0.975, 0.999, 1.0], atol=6e-4)


def test_read_recovered_is_a_frozen_result_matching_the_file():
    # an independent parse of the same TSV: numpy's own reader, not isskit's
    import dataclasses

    from isskit.logs import RecoveredLog
    from isskit.logs import read_recovered as from_logs

    assert from_logs is read_recovered  # one reader, re-exported by isskit.studies.synthetic
    rec = read_recovered(DEFAULT_SOURCE)
    assert isinstance(rec, RecoveredLog)
    lines = rec.path.read_text().splitlines()
    names = lines[1].split("\t")
    rows = [dict(zip(names, line.split("\t"), strict=True)) for line in lines[2:] if line]
    for col in ("idx", "label", "predict", "kA_min", "kA_max", "kA_mid", "n"):
        want = [int(r[col]) if r[col] != "" else -1 for r in rows]
        np.testing.assert_array_equal(getattr(rec, col), want, col)
        assert getattr(rec, col).dtype == np.int64
    table = {"kA_mid": np.array([int(r["kA_mid"] or -1) for r in rows])}
    np.testing.assert_array_equal(rec.certified, table["kA_mid"] >= 0)
    # the '#' line of the file: "alpha_one_sided=0.01 n=100000 sigma=0.25 source=locuslab/..."
    assert rec.header["alpha_one_sided"] == "0.01" and rec.header["n"] == "100000"
    assert rec.header["source"] == "locuslab/smoothing"  # text after a blank is not a pair
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.n = rec.idx
    with pytest.raises(TypeError):
        rec["n"]  # a result object, not a dict


def test_realistic_p_A_draws_from_the_log():
    rec = read_recovered(DEFAULT_SOURCE)
    ok = rec.kA_mid >= 0
    values = set((rec.kA_mid[ok] / rec.n[ok]).tolist())
    bound = set((rec.kA_max[~ok] / rec.n[~ok]).tolist())
    n = 20_000
    drop = realistic_p_A(n, np.random.default_rng(0), abstain="drop")
    assert set(drop.tolist()) <= values
    top = realistic_p_A(n, np.random.default_rng(0), abstain="bound")
    assert set(top.tolist()) <= values | bound
    uni = realistic_p_A(n, np.random.default_rng(0))
    abstained = ~np.isin(uni, list(values))
    # 43 of 500 rows abstain: their share of draws is binomial.
    lo, hi = stats.binom.interval(_LEVEL, n, 43 / 500)
    assert lo <= abstained.sum() <= hi
    assert np.all((uni[abstained] >= 0) & (uni[abstained] <= max(bound)))
    np.testing.assert_array_equal(uni, realistic_p_A(n, np.random.default_rng(0)))


def test_realistic_p_A_other_source_and_errors(published):
    name = "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50"
    p = realistic_p_A(5000, np.random.default_rng(1), name, abstain="drop")
    # README table: median .986 for this log
    assert abs(np.median(p) - 0.986) < 0.01
    path = published / "recovered" / f"{name}.tsv"
    np.testing.assert_array_equal(
        realistic_p_A(10, np.random.default_rng(1), path),
        realistic_p_A(10, np.random.default_rng(1), name),
    )
    with pytest.raises(ValueError, match="no recovered log named 'nope'; available: cohen2019"):
        realistic_p_A(3, np.random.default_rng(), "nope")
    with pytest.raises(ValueError, match="abstain"):
        realistic_p_A(3, np.random.default_rng(), abstain="skip")


def test_one_data_folder_variable(tmp_path, monkeypatch):
    """ISSKIT_DATA names one folder laid out like data/: published logs and shipped files."""
    from isskit._data import data_file
    from isskit.studies.synthetic import published_dir

    (tmp_path / "published" / "recovered").mkdir(parents=True)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "digits.npz").write_bytes(b"")
    monkeypatch.setenv("ISSKIT_DATA", str(tmp_path))
    assert published_dir() == tmp_path / "published"
    assert data_file("digits/digits.npz") == tmp_path / "digits" / "digits.npz"
    monkeypatch.setenv("ISSKIT_DATA_DIR", str(tmp_path / "elsewhere"))  # the old name is gone
    assert published_dir() == tmp_path / "published"
