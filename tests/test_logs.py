"""isskit.logs: strict reading, count recovery and alpha detection, against independent references.

References: the recovered TSVs in data/published/recovered (computed outside this project,
data/published/README.md), the README's table of alphas, and scipy.stats.beta / norm used
directly on single counts.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats as st

from isskit.logs import (
    detect_alpha,
    num_classes_from_name,
    read_cohen_log,
    recover_counts,
    sigma_from_name,
    write_cohen_log,
)

HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"

# data/published/README.md, "The documented alpha is not always the one used": the alphas in
# {0.001, 0.01} that fit every row of each log.
README_ALPHAS = {
    "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.12": (0.001,),
    "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.50": (0.001, 0.01),
    "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25": (0.01,),
    "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.50": (0.001,),
    "cohen2019__cifar10_resnet110_noise_0.50_test_sigma_0.50": (0.01,),
    "cohen2019__cifar10_resnet110_noise_1.00_test_sigma_0.50": (0.001,),
    "cohen2019__cifar10_resnet110_noise_1.00_test_sigma_1.00": (0.01,),
    "cohen2019__imagenet_resnet50_noise_0.25_test_sigma_0.25": (0.01,),
    "cohen2019__imagenet_resnet50_noise_0.25_test_sigma_0.50": (0.01,),
    "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50": (0.01,),
    "cohen2019__imagenet_resnet50_noise_0.50_train_sigma_0.50": (0.01,),
    "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_0.50": (0.01,),
    "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00": (0.01,),
    "jeong2020__cifar10_consistency-resnet110_noise_0.25": (0.001,),
    "salman2019__cifar10_cohen-resnet110_noise_0.25_test_sigma_0.25": (0.001,),
    "salman2019__cifar10_cohen-resnet110_noise_0.50_test_sigma_0.50": (0.001,),
    "salman2019__cifar10_cohen-resnet110_noise_1.00_test_sigma_1.00": (0.001,),
    "salman2019__imagenet_replication-resnet50_noise_0.25_test_sigma_0.25": (0.001,),
    "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50": (0.001,),
    "salman2019__imagenet_replication-resnet50_noise_1.00_test_sigma_1.00": (0.001,),
}


def _tsv(published, name):
    """The recovered TSV: its header's alpha, n and sigma, and the columns idx, kA_min, kA_max."""
    path = published / "recovered" / f"{name}.tsv"
    meta = dict(kv.split("=", 1) for kv in path.read_text().splitlines()[0][2:].split()[:3])
    cols = np.genfromtxt(path, delimiter="\t", skip_header=2, usecols=(0, 5, 6, 7), dtype=float)
    return (
        float(meta["alpha_one_sided"]), int(meta["n"]), float(meta["sigma"]),
        cols[:, 0].astype(np.int64), cols[:, 1].astype(np.int64), cols[:, 2].astype(np.int64),
        cols[:, 3],
    )


@pytest.mark.parametrize("name", sorted(README_ALPHAS))
def test_recovered_ranges_equal_published_tsv(published, name):
    log = read_cohen_log(published / "certify-logs" / name)
    alpha, n, sigma, idx, kmin, kmax, kmid = _tsv(published, name)
    ranges = recover_counts(log, n=n, alpha=alpha, sigma=sigma)
    np.testing.assert_array_equal(log.idx, idx)
    assert ranges.fits.all()
    np.testing.assert_array_equal(ranges.kA_min, kmin)
    np.testing.assert_array_equal(ranges.kA_max, kmax)
    certified = ~log.abstained
    np.testing.assert_array_equal(ranges.kA_mid[certified], kmid[certified])
    assert np.all(np.isnan(kmid[~certified]))


@pytest.mark.parametrize(
    "name", [n for n in sorted(README_ALPHAS) if not n.startswith(("jeong", "salman2019__cifar"))]
    + ["salman2019__cifar10_cohen-resnet110_noise_1.00_test_sigma_1.00"],
)
def test_detected_alphas_match_readme_table(published, name):
    log = read_cohen_log(published / "certify-logs" / name)
    fit = detect_alpha(log, n=100_000, candidates=(0.001, 0.01))
    assert fit.alphas == README_ALPHAS[name]
    assert fit.tried == ((100_000, 0.001), (100_000, 0.01))
    for pair in fit.tried:
        assert (len(fit.failures[pair]) == 0) == (pair[1] in README_ALPHAS[name])


def test_ranges_are_exact_against_scipy_on_single_counts(published):
    # Re-derive a sample of rows count by count with scipy.stats directly: the range ends
    # print the logged text, the counts just outside do not.
    name = "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50"
    log = read_cohen_log(published / "certify-logs" / name)
    r = recover_counts(log, n=100_000, alpha=0.01)
    n, alpha, sigma = 100_000, 0.01, 0.5

    def printed(k):
        if k <= 0 or k > n:
            return None
        p = st.beta.ppf(alpha, k, n - k + 1)
        return format(sigma * st.norm.ppf(p), ".3") if p >= 0.5 else "abstain"

    rows = np.flatnonzero(~log.abstained)[::25]
    for i in rows:
        text = log.radius_text[i]
        assert printed(r.kA_min[i]) == text and printed(r.kA_max[i]) == text
        assert printed(r.kA_min[i] - 1) != text and printed(r.kA_max[i] + 1) != text
    # Abstentions: kA_max is the last count whose bound is below 1/2.
    i = np.flatnonzero(log.abstained)[0]
    assert r.kA_min[i] == 0
    assert st.beta.ppf(alpha, r.kA_max[i], n - r.kA_max[i] + 1) < 0.5
    assert st.beta.ppf(alpha, r.kA_max[i] + 1, n - r.kA_max[i]) >= 0.5


def test_read_fields_and_formats(published):
    name = "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50"
    log = read_cohen_log(published / "certify-logs" / name)
    assert log.radius_format == ".4f" and len(log) == 500
    # First rows of that file: "0 65 -1 0.0000 0 0:02:22.997739", "100 473 700 0.0654 0 ...".
    assert log.idx[:2].tolist() == [0, 100] and log.label[:2].tolist() == [65, 473]
    assert log.predict[:2].tolist() == [-1, 700] and log.radius_text[:2] == ("0.0000", "0.0654")
    assert log.time[0] == pytest.approx(142.997739)
    assert not log.correct[1] and log.line[:2].tolist() == [2, 3]
    cohen = read_cohen_log(
        published / "certify-logs" / "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.12"
    )
    assert cohen.radius_format == ".3" and cohen.radius_text[1] == "0.0734"


def test_time_in_seconds_is_read(tmp_path):
    p = tmp_path / "x_sigma_0.25"
    p.write_text(HEADER + "0\t1\t1\t0.5\t1\t15.4\n3\t2\t-1\t0.0\t0\t1 day, 0:00:01.5\n")
    log = read_cohen_log(p)
    assert log.time.tolist() == [15.4, 86401.5]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "empty"),
        (HEADER, "no rows"),
        ("idx label predict radius correct time\n0\t1\t1\t0.5\t1\t1.0\n", "line 1"),
        (HEADER + "0\t1\t1\t0.5\t1\n", "line 2: 5 tab-separated columns"),
        (HEADER + "0\t1\t1\t0.5\t1\t1.0\n1\t1\t1\t0.5\t1\t1.0\textra\n", "line 3: 7"),
        (HEADER + "0\t1\tcat\t0.5\t1\t1.0\n", "line 2: predict ('cat') is not an integer"),
        (HEADER + "0\t1\t1\tnan\t1\t1.0\n", "line 2: radius ('nan')"),
        (HEADER + "0\t1\t1\tabc\t1\t1.0\n", "line 2: radius ('abc') is not a number"),
        (HEADER + "0\t1\t2\t0.5\t1\t1.0\n", "line 2: correct (1) contradicts"),
        (HEADER + "0\t1\t-1\t0.5\t0\t1.0\n", "line 2: an abstention"),
        (HEADER + "0\t1\t1\t0.5\t1\tyesterday\n", "line 2: time ('yesterday')"),
        (HEADER + "0\t1\t1\t0.5\t1\t1.0\n\n2\t1\t1\t0.5\t1\t1.0\n", "line 3: 1 tab-separated"),
        (HEADER + "0\t1\t1\t0.5\t1\t1.0\n1\t1\t1\t0.50000\t1\t1.0\n", "line 3: radius '0.50000'"),
    ],
)
def test_bad_logs_name_file_and_line(tmp_path, body, message):
    p = tmp_path / "bad_log_sigma_0.50"
    p.write_text(body)
    with pytest.raises(ValueError, match=r"bad_log_sigma_0\.50") as exc:
        read_cohen_log(p)
    assert message in str(exc.value)


def test_missing_file_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        read_cohen_log(tmp_path / "nope")


def _write_log(path, counts, n, alpha, sigma, spec, rng):
    def text_of(x):
        return repr(float(x)) if spec == "r" else format(x, spec)

    p_lower = np.array([st.beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0 for k in counts])
    lines = [HEADER]
    for i, p in enumerate(p_lower):
        label = int(rng.integers(10))
        if p < 0.5:
            lines.append(f"{i}\t{label}\t-1\t{text_of(0.0)}\t0\t0:00:01.0\n")
        else:
            text = text_of(sigma * st.norm.ppf(p))
            lines.append(f"{i}\t{label}\t{label}\t{text}\t1\t0:00:01.0\n")
    path.write_text("".join(lines))


@pytest.mark.parametrize("spec", [".3", ".4f", "r"])
def test_round_trip_contains_the_true_count(tmp_path, spec):
    # A log written here from known counts (scipy, not isskit): every true count lies in its
    # recovered range, and an unrounded radius pins the count down to (nearly) one value.
    rng = np.random.default_rng(7)
    n, alpha, sigma = 20_000, 0.001, 0.5
    counts = np.concatenate([rng.integers(9_000, n + 1, 200), [n, 0, 1]])
    path = tmp_path / f"synthetic_test_sigma_0.50_{spec.strip('.')}"
    _write_log(path, counts, n, alpha, sigma, spec, rng)
    log = read_cohen_log(path)
    assert log.radius_format == spec
    r = recover_counts(log, n=n, alpha=alpha)
    assert r.fits.all()
    assert np.all((r.kA_min <= counts) & (counts <= r.kA_max))
    if spec == "r":
        assert np.all(r.kA_max[~log.abstained] - r.kA_min[~log.abstained] <= 1)


def _rows():
    return dict(idx=[0, 7, 12], label=[3, 1, 2], predict=[3, -1, 5],
                radius=[0.123456789, 0.0, 1.5], seconds=[13.73608, 90061.5, 2.0])


def test_written_log_is_certify_py_text(tmp_path):
    # The expected text is written out by hand: Cohen et al.'s header, correct = predict ==
    # label (never for -1), times as str(datetime.timedelta) (days included), NaN as "nan".
    rows = _rows()
    rows["seconds"][2] = np.nan
    path = write_cohen_log(tmp_path / "log.tsv", **rows)
    assert path.read_text() == (
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "0\t3\t3\t0.123457\t1\t0:00:13.736080\n"
        "7\t1\t-1\t0.000000\t0\t1 day, 1:01:01.500000\n"
        "12\t2\t5\t1.500000\t0\tnan\n"
    )
    write_cohen_log(path, **rows, radius_format=".3")
    assert path.read_text().splitlines()[1] == "0\t3\t3\t0.123\t1\t0:00:13.736080"


def test_written_log_reads_back(tmp_path):
    rows = _rows()
    log = read_cohen_log(write_cohen_log(tmp_path / "log_sigma_0.50", **rows))
    for name in ("idx", "label", "predict"):
        np.testing.assert_array_equal(getattr(log, name), rows[name])
    assert log.radius_format == ".6f"
    assert log.radius_text == ("0.123457", "0.000000", "1.500000")
    np.testing.assert_allclose(log.time, rows["seconds"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(log.correct, [True, False, False])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"radius_format": "{:.3}"}, "radius_format ('{:.3}') must be one of"),
        ({"label": [3, 1]}, "1-D of one length"),
    ],
)
def test_bad_write_raises_and_writes_nothing(tmp_path, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write_cohen_log(tmp_path / "log.tsv", **{**_rows(), **change})
    assert list(tmp_path.iterdir()) == []


def test_wrong_alpha_reports_rows_and_pairs(published):
    log = read_cohen_log(
        published / "certify-logs" / "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00"
    )
    fit = detect_alpha(log, n=[100_000, 50_000], alpha=0.001)
    assert fit.fits == ()
    assert fit.tried == ((100_000, 0.001), (50_000, 0.001))
    bad = fit.failures[(100_000, 0.001)]
    assert len(bad) > 0
    r = recover_counts(log, n=100_000, alpha=0.001)
    np.testing.assert_array_equal(bad, log.line[~r.fits])
    assert np.all(r.kA_min[~r.fits] > r.kA_max[~r.fits])
    text = fit.describe()
    assert "n=100000, alpha=0.001" in text and f"lines {bad[0]}" in text
    assert detect_alpha(log, alpha=0.01).alphas == (0.01,)


def test_file_name_helpers():
    assert sigma_from_name("cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.50") == 0.5
    assert sigma_from_name("jeong2020__cifar10_consistency-resnet110_noise_0.25") is None
    assert num_classes_from_name("x_cifar10_y") == 10
    assert num_classes_from_name("x_imagenet_y") == 1000
    assert num_classes_from_name("mnist") is None


def test_sigma_needed_when_name_lacks_it(published):
    log = read_cohen_log(
        published / "certify-logs" / "jeong2020__cifar10_consistency-resnet110_noise_0.25"
    )
    with pytest.raises(ValueError, match="sigma"):
        recover_counts(log)
    with pytest.raises(ValueError, match=r"alpha \(2.0\)"):
        recover_counts(log, alpha=2.0, sigma=0.25)
