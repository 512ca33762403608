"""replay(): from a store on disk to the results Dataset, its metrics, netCDF and faults."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr
from scipy import stats as st

from isskit._provenance import file_sha256
from isskit.policies import IAS, ISS, Cohen, parse_policies
from isskit.replay import build_index, index_blocks, load_results, replay, save_results
from isskit.store import StoreError, open_for_writing, open_store
from isskit.studies.synthetic import realistic_p_A, write_synthetic_store
from tests import reference as ref

N = 3000
C = 10
SIGMA = 0.5
SPS = 0.004  # seconds per sample recorded in the store
SPECS = [
    "IAS-0.3",
    "ias n=1000",
    "iss decline=ad k_bar=2000 U=0.05,0.2 k0=100 delta=0.01",
    "iss decline=rd k_bar=2000 U=0.1 k0=50 delta=0.01 fresh=true",
    Cohen(n0=50, n=2000),
]


def _p_A(n, seed=0):
    rng = np.random.default_rng(seed)
    p = realistic_p_A(n, rng)
    p[:4] = [1.0, 0.5, 0.3, 0.999]
    return p


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "streams.h5"
    n = 40
    rng = np.random.default_rng(1)
    predicted = rng.integers(0, C, n)
    true_label = np.where(rng.random(n) < 0.8, predicted, (predicted + 1) % C)
    write_synthetic_store(
        path,
        _p_A(n),
        predicted=predicted,
        true_label=true_label,
        samples_per_image=N,
        num_classes=C,
        sigma=SIGMA,
        seed=3,
        seconds_per_sample=SPS,
        image_index=np.arange(1000, 1000 + n),
    )
    return path


@pytest.fixture(scope="module")
def results(store_path):
    return replay(store_path, SPECS)


def test_layout(results, store_path):
    ds = results
    policies = parse_policies(SPECS)
    assert dict(ds.sizes) == {"policy": len(policies), "image": 40,
                              "radius_grid": ds.sizes["radius_grid"]}
    assert list(ds.policy.values) == [p.name for p in policies]
    for name in ("prediction", "radius", "p_lower", "samples", "k_hat"):
        assert ds[name].dims == ("policy", "image")
    for name in ("true_label", "image_index", "p_A_empirical", "top_class"):
        assert ds[name].dims == ("image",)
    for name in ("acr", "mad", "mean_samples", "total_samples", "est_minutes", "speedup"):
        assert ds[name].dims == ("policy",)
    assert ds.certified_accuracy.dims == ("policy", "radius_grid")
    for coord in ("kind", "k_bar", "U", "decline", "k0", "n0", "n", "alpha", "delta", "fresh",
                  "mapping", "reference"):
        assert ds[coord].dims == ("policy",), coord
    assert ds.kind.values.tolist() == ["ias", "ias", "iss", "iss", "iss", "cohen"]
    # n and k_bar kept apart: IAS and Cohen have an n, only ISS a k_bar
    assert ds.k_bar.values.tolist() == [0, 0, 2000, 2000, 2000, 0]
    assert ds.n.values.tolist() == [3000, 1000, 0, 0, 0, 2000]
    assert ds.n0.values.tolist() == [0, 0, 0, 0, 0, 50]
    assert ds.fresh.values.tolist() == [False, False, False, False, True, False]
    assert np.isnan(ds.U.values[0]) and ds.U.values[3] == 0.2
    assert ds.reference.values.tolist() == ["IAS-0.2"] * 6  # the largest ISS k_bar
    assert ds.image_index.values.tolist() == list(range(1000, 1040))
    assert ds.attrs["store_sha256"] == file_sha256(store_path)
    assert ds.attrs["store_path"] == str(store_path)
    assert ds.attrs["n_images_left_out"] == 0 and ds.attrs["sigma"] == SIGMA
    assert ds.attrs["seconds_per_sample_source"] == "store"
    # the default grid runs in steps of 0.25 past the largest radius
    grid = ds.radius_grid.values
    assert grid[0] == 0 and np.allclose(np.diff(grid), 0.25)
    assert grid[-1] >= ds.radius.max() > grid[-2]


def test_values_match_the_reference(results, store_path):
    with open_store(store_path) as store:
        labels = store.labels()
        true = store.true_label
    for p in parse_policies(SPECS):
        want = ref.ref_replay(labels, p, SIGMA)
        got = results.sel(policy=p.name)
        np.testing.assert_array_equal(got.prediction, want["prediction"])
        np.testing.assert_array_equal(got.samples, want["samples"])
        np.testing.assert_allclose(got.radius, want["radius"], rtol=0, atol=1e-12)
        r = p.default_reference(parse_policies(SPECS))
        ref_rad = ref.ref_replay(labels, r, SIGMA)["radius"]
        assert float(got.acr) == pytest.approx(
            ref.ref_acr(want["prediction"], want["radius"], true), abs=1e-12)
        assert float(got.mad) == pytest.approx(ref.ref_mad(want["radius"], ref_rad), abs=1e-12)
        for r_ in results.radius_grid.values:
            assert float(got.certified_accuracy.sel(radius_grid=r_)) == (
                ref.ref_certified_accuracy(want["prediction"], want["radius"], true, r_))
        total = sum(want["samples"])
        assert int(got.total_samples) == total
        assert float(got.mean_samples) == total / 40
        assert float(got.est_minutes) == pytest.approx(total * SPS / 60, rel=1e-12)
        assert float(got.speedup) == pytest.approx(r.n * 40 / total, rel=1e-15)
    # empirical p_A from the whole streams
    for i, row in enumerate(labels):
        cls, cnt = ref.ref_mode(row)
        assert results.top_class.values[i] == cls
        assert results.p_A_empirical.values[i] == cnt / N


def test_given_reference_seconds_and_grid(store_path):
    ds = replay(store_path, ["IAS-0.1", "IAS-0.3"], reference="IAS-0.1",
                seconds_per_sample=0.5, radius_grid=[0.0, 1.0])
    assert ds.reference.values.tolist() == ["IAS-0.1", "IAS-0.1"]
    assert ds.mad.sel(policy="IAS-0.1") == 0 and ds.speedup.sel(policy="IAS-0.1") == 1
    assert float(ds.speedup.sel(policy="IAS-0.3")) == pytest.approx(1 / 3, rel=1e-15)
    assert float(ds.est_minutes.sel(policy="IAS-0.3")) == pytest.approx(3000 * 40 * 0.5 / 60)
    assert ds.attrs["seconds_per_sample_source"] == "given"
    assert ds.radius_grid.values.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="exactly one policy"):
        replay(store_path, ["IAS-0.1"], reference="ias n=100,200")
    with pytest.raises(ValueError, match=r"seconds_per_sample \(-1.0\)"):
        replay(store_path, ["IAS-0.1"], seconds_per_sample=-1.0)
    with pytest.raises(ValueError, match=r"radius_grid"):
        replay(store_path, ["IAS-0.1"], radius_grid=[-1.0])


def test_open_store_object_and_prebuilt_index(store_path, results):
    pols = parse_policies(SPECS)
    with open_store(store_path) as store:
        every = pols + [p.default_reference(pols) for p in pols]
        index = build_index(store, every, max_bytes=2 * N * 3)  # 3 rows per block
        ds = replay(store, SPECS, index=index)
    xr.testing.assert_equal(ds.drop_attrs(), results.drop_attrs())


def test_netcdf_round_trip(results, tmp_path):
    path = save_results(results, tmp_path / "results.nc")
    back = load_results(path)
    xr.testing.assert_identical(back, results)
    assert back.fresh.dtype == bool and back.prediction.dtype == np.int64
    with h5py.File(path) as f:  # really netCDF-4 (HDF5 underneath), written by h5netcdf
        # the netCDF-4 format stamps "_NCProperties" ("version=2,<library>=<version>,...")
        props = f.attrs["_NCProperties"]
        props = props.decode() if isinstance(props, bytes) else str(props)
        assert props.startswith("version=2,h5netcdf="), props
        # variables are HDF5 datasets attached to their dimension scales
        assert f["prediction"].attrs["DIMENSION_LIST"].shape == (2,)
        assert f["policy"].attrs["CLASS"] == b"DIMENSION_SCALE"


def test_unknown_sampling_time_gives_nan_minutes(tmp_path):
    path = tmp_path / "s.h5"
    write_synthetic_store(
        path,
        [0.9, 0.99],
        predicted=[1, 2],
        true_label=[1, 2],
        samples_per_image=500,
        num_classes=3,
        sigma=0.25,
        seed=0,
    )
    ds = replay(path, ["ias n=500"])
    assert np.isnan(ds.est_minutes.values[0])
    assert ds.attrs["seconds_per_sample_source"] == "unknown"


def _incomplete_store(path):
    with open_for_writing(path, image_index=[5, 6, 7, 8], true_label=[0, 1, 0, 1],
                          samples_per_image=400,
                          attrs={"sigma": 0.25, "num_classes": 2}) as w:
        w.write_row(0, np.zeros(400, np.uint16), seconds=1.0)
        w.write_row(2, np.ones(400, np.uint16), seconds=1.0)


def test_incomplete_rows_refused_unless_allowed(tmp_path):
    path = tmp_path / "s.h5"
    _incomplete_store(path)
    with pytest.raises(ValueError, match=r"2 of 4 rows of the store are incomplete "
                       r"\(first: row 1, image 6\).*allow_incomplete.*2 complete rows"):
        replay(path, ["IAS-0.04"])
    ds = replay(path, ["IAS-0.04"], allow_incomplete=True)
    assert ds.image.values.tolist() == [0, 2]
    assert ds.image_index.values.tolist() == [5, 7]
    assert ds.prediction.values.tolist() == [[0, 1]]
    assert ds.attrs["n_images_left_out"] == 2
    # image 5: all 0, true 0, radius sigma Phi^-1(alpha^(1/400)); image 7: all 1, true 0
    r = 0.25 * st.norm.ppf(0.001 ** (1 / 400))
    assert ds.radius.values[0, 0] == pytest.approx(r, abs=1e-12)
    assert ds.acr.values[0] == pytest.approx(r / 2, abs=1e-12)


def test_no_complete_row(tmp_path):
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=[0], true_label=[0], samples_per_image=10,
                          attrs={"sigma": 0.25, "num_classes": 2}):
        pass
    with pytest.raises(ValueError, match="no complete row"):
        replay(path, ["ias n=10"], allow_incomplete=True)


def test_policy_needing_more_than_the_streams_hold(store_path):
    with pytest.raises(ValueError, match=r"policy IAS-0.5 needs 5000 samples for image 1000, "
                       r"but each stream holds 3000 \(N\)"):
        replay(store_path, ["IAS-0.5"])
    # ISS at k_bar = N: the reference IAS(N) fits, the fresh samples after the pilot do not
    with pytest.raises(ValueError, match=r"policy ISS-AD-0.3-0.01-k0=1000-delta=0.01-fresh "
                       r"needs \d+ samples for image 10\d\d"):
        replay(store_path, [ISS(3000, 0.01, "ad", k0=1000, delta=0.01, fresh=True)])


def test_policy_needing_more_than_was_drawn(tmp_path):
    # Rows of a certify store hold `drawn` samples; the rest is unused, never counted.
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=[5, 6], true_label=[0, 1], samples_per_image=400,
                          attrs={"sigma": 0.25, "num_classes": 2}) as w:
        w.write_rows_at([0, 1], np.zeros((2, 400), np.uint16), [1.0, 1.0], drawn=[400, 150])
    with pytest.raises(ValueError, match=r"policy IAS-0.02 needs 200 samples for image 6, "
                       r"but its stream holds 150 drawn samples \(of N = 400\)"):
        replay(path, ["IAS-0.02"], reference="ias n=100")
    with pytest.raises(ValueError, match=r"needs 160 samples for image 6"):
        replay(path, ["cohen n0=10 n=150"], reference="ias n=100")
    ds = replay(path, ["ias n=150"], reference="ias n=100")
    # every label 0, all 150 counted: Cohen's bound alpha^(1/150), true labels 0 and 1
    r = 0.25 * st.norm.ppf(0.001 ** (1 / 150))
    np.testing.assert_allclose(ds.radius.values[0], [r, r], atol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("bogus n=1", r"unknown policy kind 'bogus'"),
        ("ias n=0", r"n \(0\) must be an integer >= 1"),
        ([], r"policies \(\[\]\) must name at least one policy"),
    ],
)
def test_bad_policies(store_path, bad, message):
    with pytest.raises(ValueError, match=message):
        replay(store_path, bad)


def test_store_faults_are_store_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        replay(tmp_path / "absent.h5", ["ias n=10"])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(StoreError, match="not an isskit stream store"):
        replay(foreign, ["ias n=10"])


def test_labels_beyond_num_classes_name_the_image(tmp_path):
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=[3, 9], true_label=[0, 1], samples_per_image=100,
                          attrs={"sigma": 0.25, "num_classes": 4}) as w:
        w.write_row(0, np.zeros(100, np.uint16), seconds=1.0)
        w.write_row(1, np.zeros(100, np.uint16), seconds=1.0)
    with h5py.File(path, "r+") as f:  # damage a label behind the writer's back
        f["labels"][1, 42] = 7
        block = f["labels"][...]
    # The store's reader refuses it before the index sees it, naming the file...
    with pytest.raises(StoreError, match=r"s\.h5 is damaged: /labels row 1 \(image 9\): "
                       r"label 7 at sample 42 is not below num_classes \(4\)"):
        replay(path, ["ias n=100"])
    # ...and the array-level index build, fed the same labels, refuses them on its own.
    with pytest.raises(ValueError, match=r"label \(7\) at sample 42 of store row 1, image 9"):
        index_blocks([block], samples_per_image=100, num_classes=4, selection_sizes=[100],
                     image_ids=np.array([3, 9]))


def test_iss_and_ias_at_equal_budget_on_a_realistic_mix(store_path):
    """The paper's claim in small: ISS at U = 0.05 costs far fewer samples than IAS(k_bar)."""
    ds = replay(store_path, [ISS(3000, 0.05, "ad", k0=30, delta=0.01)])
    assert float(ds.speedup[0]) > 1.5
    assert ds.reference.values[0] == IAS(3000).name


def _restored_with(tmp_path, src, **create):
    """A copy of the store whose /labels is rewritten with other HDF5 filters/chunks."""
    dst = tmp_path / "other_layout.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        data = f["labels"][...]
        del f["labels"]
        f.create_dataset("labels", data=data, **create)
    return dst


@pytest.mark.parametrize(
    "create",
    [
        {"chunks": (1, 700), "compression": "gzip", "shuffle": True},
        {"chunks": (4, 1000), "compression": "lzf"},
        {},  # contiguous, uncompressed
    ],
)
def test_index_does_not_depend_on_layout_or_blocks(store_path, tmp_path, create):
    pols = parse_policies(SPECS)
    other = _restored_with(tmp_path, store_path, **create)
    with open_store(store_path) as a, open_store(other) as b:
        want = build_index(a, pols, max_bytes=2 * N * 7)
        for store, max_bytes in ((a, 1), (b, 2 * N * 5), (b, 2**30)):
            got = build_index(store, pols, max_bytes=max_bytes)
            assert got.same_as(want)
        rows = np.array([1, 2, 7, 30])
        sub = build_index(b, pols, rows=rows, max_bytes=2 * N)
        np.testing.assert_array_equal(sub.modes, want.modes[rows])
        np.testing.assert_array_equal(sub.mode_counts, want.mode_counts[rows])


def test_reference_too_long_for_the_streams_is_named(store_path):
    # ISS with k_bar = 5000 on streams of 3000 might fit, its reference IAS(5000) cannot
    with pytest.raises(ValueError, match=r"policy IAS-0.5 needs 5000 samples.*it is the "
                       r"reference of ISS-AD-0.5-0.5-k0=10"):
        replay(store_path, [ISS(5000, 0.5, "ad", k0=10)])
    ds = replay(store_path, [ISS(5000, 0.5, "ad", k0=10, delta=0.01)], reference="IAS-0.3")
    assert ds.reference.values.tolist() == ["IAS-0.3"]


def test_mean_budget_fits_what_every_drawn_row_holds(tmp_path):
    # rows of a certify store hold `drawn` samples: B's price is solved so that every image's
    # size fits its row (the shortest, 941), and a B beyond that is refused naming B
    rng = np.random.default_rng(1)
    labels = rng.choice(2, size=(6, 3000), p=[0.9, 0.1]).astype(np.uint16)
    drawn = np.array([941, 1200, 2060, 1393, 3000, 1500])
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=list(range(6)), true_label=[0] * 6,
                          samples_per_image=3000, attrs={"sigma": 0.25, "num_classes": 2}) as w:
        w.write_rows_at(list(range(6)), labels, [1.0] * 6, drawn=drawn)
    ds = replay(path, ["budget B=600 k0=20"], reference="ias n=20")
    assert (ds.samples.values[0] <= 941).all() and float(ds.mean_samples[0]) <= 600
    with pytest.raises(ValueError, match=r"B \(1500\) is larger than these images can spend"):
        replay(path, ["budget B=1500 k0=20"], reference="ias n=20")
