"""isskit.sampling: noise, reproducibility, labels against a slow loop, resume, refusals."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from scipy import stats as st

from tests.reference import noise_reference, sample_row_reference

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch

from isskit.sampling import (  # noqa: E402
    NOISE_SCHEME_V1,
    block_seed,
    noise_description,
    noise_seed,
    rank_path,
    sample_row,
    sample_to_store,
    select_indices,
)
from isskit.sampling.datasets import load_dataset  # noqa: E402
from isskit.sampling.models import default_model  # noqa: E402
from isskit.store import StoreMismatchError, open_store  # noqa: E402


@pytest.fixture(scope="module")
def default():
    return default_model()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class _Bucket(nn.Module):
    """Label = which of K equally likely N(0, 1) bins the noise at one pixel falls in.

    With input x + sigma * z, ``(input[pos] - x[pos]) / sigma`` is z at that pixel, so the
    labels show the noise itself; the bin edges are scipy's normal quantiles.
    """

    def __init__(self, x, sigma, pos, K=10):
        super().__init__()
        self.x0 = float(x[pos])
        self.sigma = sigma
        self.pos = pos
        self.K = K
        self.edges = torch.tensor(st.norm.ppf(np.arange(1, K) / K), dtype=torch.float64)

    def forward(self, inp):
        c, h, w = self.pos
        z = (inp[:, c, h, w].double() - self.x0) / self.sigma
        return nn.functional.one_hot(torch.bucketize(z, self.edges), self.K).float()


class _FailAfter(nn.Module):
    """Wraps a model and raises after ``n`` forward passes: an interrupted run, in-process."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n = model, n

    def forward(self, x):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("interrupted on purpose")
        return self.model(x)


def test_noise_seed_is_the_documented_hash():
    for seed, index in [(0, 0), (0, 1), (7, 123456), (2**40, 9999)]:
        digest = hashlib.blake2b(f"isskit-noise-v1:{seed}:{index}".encode(),
                                 digest_size=8).digest()
        assert noise_seed(seed, index) == int.from_bytes(digest, "little") & (2**63 - 1)
    seeds = {noise_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000
    with pytest.raises(ValueError, match="seed"):
        noise_seed(-1, 0)


def test_block_seed_is_the_documented_hash():
    for seed, index, block in [(0, 0, 0), (0, 0, 1), (3, 17, 5), (2**40, 10**9, 7)]:
        digest = hashlib.blake2b(f"isskit-noise-v2:{seed}:{index}:{block}".encode(),
                                 digest_size=8).digest()
        assert block_seed(seed, index, block) == int.from_bytes(digest, "little") & (2**63 - 1)
    seeds = {block_seed(s, i, b) for s in range(3) for i in range(20) for b in range(20)}
    assert len(seeds) == 1200
    with pytest.raises(ValueError, match="block"):
        block_seed(0, 0, -1)


class _Pixel(nn.Module):
    """Label = which of 2,000 fine bins one input pixel falls in: the noise, as a label.

    Unlike a trained model, nothing here rounds differently with the batch size: equal
    labels mean equal inputs (to a bin), and different noise shows as different labels.
    """

    def __init__(self, pos=(0, 3, 4)):
        super().__init__()
        self.pos = pos
        self.edges = torch.linspace(-3.0, 4.0, 1999, dtype=torch.float64)

    def forward(self, inp):
        c, h, w = self.pos
        return nn.functional.one_hot(torch.bucketize(inp[:, c, h, w].double(), self.edges),
                                     2000).float()


def test_noise_v2_does_not_depend_on_batch_or_packing(digits):
    from isskit.sampling._samplers import _BlockSampler

    model, sigma, seed = _Pixel(), 0.5, 7
    images = [2, 30, 111]
    xs = {i: digits.dataset[i][0] for i in images}
    N = 1000  # 3 whole blocks and a partial one
    # the documented noise, coded apart, through the same pixel
    expected = {}
    for i in images:
        z = noise_reference(tuple(xs[i].shape), N=N, batch=0, seed=seed, image_index=i)
        expected[i] = model(torch.add(xs[i], z, alpha=sigma)).argmax(1).numpy()
    for batch in (1, 7, 256, 400, 1000, 5000):
        got = sample_row(model, xs[2], sigma=sigma, samples_per_image=N, batch=batch, seed=seed,
                         image_index=2, device="cpu")
        np.testing.assert_array_equal(got, expected[2], err_msg=f"batch {batch}")
    # Pieces of three images, interleaved and cut at odd places, packed into batches of
    # 97: every sample keeps its label, and a row extended piece by piece equals the whole.
    cuts = [0, 1, 100, 255, 256, 257, 600, 999, 1000]
    sampler = _BlockSampler(model, tuple(xs[2].shape), sigma=sigma, seed=seed, batch=97,
                            dev=torch.device("cpu"), amp=False, channels_last=False)
    out = {i: torch.full((N,), -1, dtype=torch.int64) for i in images}
    requests = [(xs[i], i, a, b, out[i][a:b]) for a, b in itertools.pairwise(cuts)
                for i in images]
    with torch.inference_mode():
        sampler.run(requests[::2])
        sampler.run(requests[1::2])
    for i in images:
        np.testing.assert_array_equal(out[i].numpy(), expected[i], err_msg=f"image {i}")
    # the scheme is keyed to (seed, image, block): other seeds or images change it
    assert not np.array_equal(expected[2], expected[30])


def test_noise_v1_stays_as_it_was(digits):
    # The earlier scheme, as documented: one generator per row, batch-sized draws. (Its
    # dependence on the batch shows on CUDA, whose normal_ splits work by tensor size; on
    # the CPU 64-pixel images happen to draw the same numbers for every batch.)
    x = digits.dataset[4][0]
    model = _Pixel()
    kw = dict(
        sigma=0.5,
        samples_per_image=500,
        seed=1,
        image_index=4,
        device="cpu",
        scheme=NOISE_SCHEME_V1,
    )
    for batch in (128, 500):
        z = noise_reference(tuple(x.shape), N=500, batch=batch, seed=1, image_index=4,
                            scheme=NOISE_SCHEME_V1)
        expected = model(torch.add(x, z, alpha=0.5)).argmax(1).numpy()
        np.testing.assert_array_equal(sample_row(model, x, batch=batch, **kw), expected)


def test_v1_store_resumes_with_its_own_scheme(tmp_path, default, digits):
    from isskit.store import open_for_writing

    out = tmp_path / "old.h5"
    idx = [0, 5, 10]
    truth = [digits.dataset[i][1] for i in idx]
    kw = dict(sigma=0.25, samples_per_image=600, batch=200, seed=0, indices=idx, device="cpu",
              progress=False, model_description="m", dataset_name="d")
    # a store as the earlier isskit left it: one row done, with that scheme's noise
    attrs = dict(sigma=0.25, num_classes=10, seed=0, dataset="d",
                 model="m; precision float32", noise=noise_description(200, "cpu",
                                                                        NOISE_SCHEME_V1))
    old = lambda i: sample_row(default.model, digits.dataset[i][0], sigma=0.25,  # noqa: E731
                               samples_per_image=600, batch=200, seed=0, image_index=i,
                               device="cpu", scheme=NOISE_SCHEME_V1)
    with open_for_writing(out, image_index=idx, true_label=truth, samples_per_image=600,
                          attrs=attrs) as w:
        w.write_row(0, old(0), 1.0)
    run = sample_to_store(default.model, digits.dataset, out, **kw)
    assert (run.rows_skipped, run.rows_sampled) == (1, 2)
    with open_store(out) as s:
        assert s.attrs["noise"].startswith(NOISE_SCHEME_V1)
        for row, i in enumerate(idx):
            np.testing.assert_array_equal(s.labels(row), old(i))
    # its batch is part of its noise: another one is refused
    with pytest.raises(StoreMismatchError, match="noise"):
        sample_to_store(default.model, digits.dataset, out, **{**kw, "batch": 100})


def test_select_indices_like_certify_py():
    # certify.py: `if i % skip != 0: continue; if i == max: break`
    def certify_loop(n, skip, max_):
        out = []
        for i in range(n):
            if i % skip != 0:
                continue
            if i == max_:
                break
            out.append(i)
        return out

    for n, skip, max_ in [(10000, 20, -1), (359, 4, 100), (359, 1, 10), (359, 7, 359)]:
        got = select_indices(n, skip=skip, max_index=None if max_ == -1 else max_)
        assert got.tolist() == certify_loop(n, skip, max_)
    assert select_indices(10, indices=[3, 1, 7]).tolist() == [3, 1, 7]
    for bad in ([10], [-1], [1, 1], []):
        with pytest.raises(ValueError):
            select_indices(10, indices=bad)
    with pytest.raises(ValueError, match="skip"):
        select_indices(10, skip=0)
    with pytest.raises(ValueError, match="exclude"):
        select_indices(10, skip=2, indices=[1])


def test_rank_path():
    assert rank_path("a/streams.h5", 3).as_posix() == "a/streams.rank3.h5"
    assert rank_path("streams", 0).as_posix() == "streams.rank0.h5"


def test_noise_is_sigma_times_standard_normal_in_pixel_space(digits):
    x = digits.dataset[5][0]
    sigma, N = 0.5, 20_000
    counts = []
    for pos in [(0, 0, 0), (0, 4, 3)]:
        labels = sample_row(
            _Bucket(x, sigma, pos),
            x,
            sigma=sigma,
            samples_per_image=N,
            batch=700,
            seed=3,
            image_index=5,
            device="cpu",
        )
        counts.append(np.bincount(labels, minlength=10))
        # Each of the 10 bins has probability 1/10 if the noise is N(0, sigma^2).
        assert st.chisquare(counts[-1]).pvalue > 1e-3
    # A wrong scale would pile the counts up in the middle or the tails.
    wrong = sample_row(
        _Bucket(x, 0.4, (0, 0, 0)),
        x,
        sigma=sigma,
        samples_per_image=N,
        batch=700,
        seed=3,
        image_index=5,
        device="cpu",
    )
    assert st.chisquare(np.bincount(wrong, minlength=10)).pvalue < 1e-6


def test_row_is_reproducible_and_keyed_to_seed_and_index(default, digits):
    x = digits.dataset[2][0]
    kw = dict(sigma=0.5, samples_per_image=1000, batch=300, device="cpu")
    a = sample_row(default.model, x, seed=0, image_index=2, **kw)
    b = sample_row(default.model, x, seed=0, image_index=2, **kw)
    assert a.dtype == np.uint16 and a.shape == (1000,)
    np.testing.assert_array_equal(a, b)
    # Other seed or other index: other noise (at sigma 0.5 the labels vary enough to tell).
    assert not np.array_equal(a, sample_row(default.model, x, seed=1, image_index=2, **kw))
    assert not np.array_equal(a, sample_row(default.model, x, seed=0, image_index=3, **kw))


def test_labels_match_one_sample_at_a_time_reference(default, digits):
    # batch 128 does not divide N = 300: the shorter last block is exercised too.
    exempt = 0
    for index in (0, 17, 200):
        x = digits.dataset[index][0]
        got = sample_row(default.model, x, sigma=0.5, samples_per_image=300, batch=128, seed=11,
                         image_index=index, device="cpu")
        ref, margin = sample_row_reference(default.model, x, sigma=0.5, N=300, batch=128,
                                           seed=11, image_index=index)
        # A single-copy forward pass may round differently from a batched one; labels must
        # agree wherever the top two logits are not within rounding of each other.
        clear = margin > 1e-4
        np.testing.assert_array_equal(got[clear], ref[clear])
        exempt += int((~clear).sum())
        assert len(np.unique(ref)) > 1  # sigma 0.5 makes the row non-trivial
    assert exempt <= 3


def test_store_rows_equal_sample_row(tmp_path, default, digits):
    out = tmp_path / "s.h5"
    run = sample_to_store(
        default.model,
        digits.dataset,
        out,
        sigma=0.25,
        samples_per_image=500,
        batch=200,
        seed=4,
        indices=[9, 3, 40],
        device="cpu",
        progress=False,
        model_description=default.description,
        dataset_name=digits.name,
    )
    assert run.rows_sampled == 3 and run.rows_skipped == 0 and run.samples_per_second > 0
    with open_store(out) as s:
        assert s.complete.all() and s.image_index.tolist() == [9, 3, 40]
        assert s.true_label.tolist() == [digits.dataset[i][1] for i in (9, 3, 40)]
        assert s.attrs["sigma"] == 0.25 and s.attrs["seed"] == 4 and s.attrs["batch_size"] == 200
        assert s.attrs["model"].endswith("precision float32")
        assert s.attrs["noise"].startswith("isskit-noise-v2:")
        assert "blocks of 256 samples" in s.attrs["noise"]
        assert (s.seconds > 0).all()
        for row, index in enumerate((9, 3, 40)):
            expected = sample_row(
                default.model,
                digits.dataset[index][0],
                sigma=0.25,
                samples_per_image=500,
                batch=200,
                seed=4,
                image_index=index,
                device="cpu",
            )
            np.testing.assert_array_equal(s.labels(row), expected)


def test_interrupted_run_resumes_to_identical_store(tmp_path, default, digits):
    kw = dict(sigma=0.25, samples_per_image=600, batch=200, seed=0, indices=list(range(0, 40, 5)),
              device="cpu", progress=False, model_description="m", dataset_name="d")
    sample_to_store(default.model, digits.dataset, tmp_path / "full.h5", **kw)
    part = tmp_path / "part.h5"
    # 3 forward passes per row, plus the probe: fails in the middle of the 4th row.
    with pytest.raises(RuntimeError, match="on purpose"):
        sample_to_store(_FailAfter(default.model, 1 + 3 * 3 + 1), digits.dataset, part, **kw)
    with open_store(part) as s:
        assert s.complete.tolist() == [True] * 3 + [False] * 5
    run = sample_to_store(default.model, digits.dataset, part, **kw)
    assert (run.rows_skipped, run.rows_sampled) == (3, 5)
    with open_store(part) as a, open_store(tmp_path / "full.h5") as b:
        assert a.complete.all()
        np.testing.assert_array_equal(a.labels(), b.labels())


# a larger N widens the store instead (test_sample_past_N_equals_sampling_to_N_at_once)
@pytest.mark.parametrize("change", [{"sigma": 0.5}, {"samples_per_image": 500}, {"seed": 1},
                                    {"model_description": "other"}, {"indices": [0, 5]}])
def test_existing_store_with_other_parameters_is_refused(tmp_path, default, digits, change):
    kw = dict(
        sigma=0.25,
        samples_per_image=600,
        batch=200,
        seed=0,
        indices=[0, 5, 10],
        device="cpu",
        progress=False,
        model_description="m",
        dataset_name="d",
    )
    out = tmp_path / "s.h5"
    sample_to_store(default.model, digits.dataset, out, **kw)
    before = out.read_bytes()
    with pytest.raises(StoreMismatchError):
        sample_to_store(default.model, digits.dataset, out, **{**kw, **change})
    assert out.read_bytes() == before


def test_rank_shard_equals_rows_of_a_single_run(tmp_path, default, digits):
    kw = dict(
        sigma=0.25,
        samples_per_image=400,
        batch=200,
        seed=0,
        indices=list(range(7)),
        device="cpu",
        progress=False,
        model_description="m",
        dataset_name="d",
    )
    sample_to_store(default.model, digits.dataset, tmp_path / "one.h5", **kw)
    run = sample_to_store(default.model, digits.dataset, tmp_path / "r.h5", rank=1,
                          world_size=3, **kw)
    assert run.path == tmp_path / "r.rank1.h5"
    with open_store(run.path) as r, open_store(tmp_path / "one.h5") as one:
        assert r.image_index.tolist() == [1, 4]
        assert (r.attrs["rank"], r.attrs["world_size"]) == (1, 3)
        np.testing.assert_array_equal(r.labels(), one.labels([1, 4]))


def test_channels_last_and_bf16_keep_the_noise(tmp_path, digits):
    x = digits.dataset[1][0]
    bucket = _Bucket(x, 0.25, (0, 2, 2))
    kw = dict(sigma=0.25, samples_per_image=900, batch=400, seed=2, image_index=1, device="cpu")
    plain = sample_row(bucket, x, **kw)
    np.testing.assert_array_equal(plain, sample_row(bucket, x, channels_last=True, **kw))
    # The bucket model computes in float64, which autocast leaves alone.
    np.testing.assert_array_equal(plain, sample_row(bucket, x, amp=True, **kw))
    run = sample_to_store(
        bucket,
        digits.dataset,
        tmp_path / "b.h5",
        sigma=0.25,
        samples_per_image=100,
        indices=[1],
        amp=True,
        device="cpu",
        progress=False,
    )
    with open_store(run.path) as s:
        assert s.attrs["model"].endswith("precision bf16 autocast")


def test_progress_bar_on_stderr(tmp_path, default, digits, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # not a terminal: else silent for 15 s
    sample_to_store(
        default.model,
        digits.dataset,
        tmp_path / "p.h5",
        sigma=0.25,
        samples_per_image=300,
        indices=[0, 1],
        device="cpu",
        progress=True,
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "images 2/2" in captured.err and "sample/s" in captured.err


def test_bad_arguments(tmp_path, default, digits):
    kw = dict(device="cpu", progress=False)
    out = tmp_path / "x.h5"
    with pytest.raises(ValueError, match="sigma"):
        sample_to_store(default.model, digits.dataset, out, sigma=0.0, samples_per_image=10, **kw)
    with pytest.raises(ValueError, match="N"):
        sample_to_store(default.model, digits.dataset, out, sigma=0.1, samples_per_image=0, **kw)
    with pytest.raises(ValueError, match="num_classes"):
        sample_to_store(
            default.model, digits.dataset, out, sigma=0.1, samples_per_image=10, num_classes=7, **kw
        )
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match="does the model fit the dataset"):
        sample_to_store(wrong, digits.dataset, out, sigma=0.1, samples_per_image=10, **kw)
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ValueError, match="true labels"):
        sample_to_store(five, digits.dataset, out, sigma=0.1, samples_per_image=10, **kw)
    with pytest.raises(ValueError, match="device"):
        sample_to_store(default.model, digits.dataset, out, sigma=0.1, samples_per_image=10,
                        device="nonsense", progress=False)
    assert not out.exists()


def test_sample_extends_rows_drawn_in_part(tmp_path, default, digits):
    from isskit.store import RUN_PARAMS, open_for_writing

    idx = [3, 8, 21]
    kw = dict(sigma=0.5, samples_per_image=1000, batch=300, seed=5, indices=idx, device="cpu",
              progress=False, model_description="m", dataset_name="d")
    sample_to_store(default.model, digits.dataset, tmp_path / "full.h5", **kw)
    with open_store(tmp_path / "full.h5") as full:
        attrs = {k: full.attrs[k] for k in RUN_PARAMS if k != "samples_per_image"}
        want = full.labels()
        truth = full.true_label
    # what isskit certify leaves: row 0 drawn to 300 (a block and a part), row 1 whole,
    # row 2 not begun
    part = tmp_path / "part.h5"
    with open_for_writing(part, image_index=idx, true_label=truth, samples_per_image=1000,
                          attrs=attrs) as w:
        head = np.zeros((2, 1000), np.uint16)
        head[0, :300] = want[0, :300]
        head[1] = want[1]
        w.write_rows_at([0, 1], head, [1.0, 1.0], drawn=[300, 1000])
    run = sample_to_store(default.model, digits.dataset, part, **kw)
    assert (run.rows_sampled, run.rows_skipped) == (2, 1)
    with open_store(part) as s:
        np.testing.assert_array_equal(s.drawn, [1000] * 3)
        np.testing.assert_array_equal(s.labels(), want)


def test_sample_past_N_equals_sampling_to_N_at_once(tmp_path, default, digits):
    # isskit sample --N beyond a schema-2 store's N: the store grows, its rows (full ones,
    # certify's partial ones, unfinished ones) are drawn on from where they stop, and the
    # labels are those of a store sampled to the new N from scratch, label for label.
    from isskit.sampling.certify import certify_to_store

    idx = [2, 9, 30, 31]
    kw = dict(sigma=0.5, batch=300, seed=4, indices=idx, device="cpu", progress=False,
              model_description="m", dataset_name="d")
    sample_to_store(
        default.model, digits.dataset, tmp_path / "fresh.h5", samples_per_image=1300, **kw
    )
    sample_to_store(
        default.model, digits.dataset, tmp_path / "grown.h5", samples_per_image=500, **kw
    )
    certify_to_store(default.model, digits.dataset, tmp_path / "cert.h5",
                     policies=["cs r=0.25 n_max=500"], max_samples=500, **kw)
    with open_store(tmp_path / "cert.h5") as c:
        assert (c.drawn < 500).sum() >= 3  # rows certify drew in part
    for name in ("grown.h5", "cert.h5"):
        run = sample_to_store(
            default.model, digits.dataset, tmp_path / name, samples_per_image=1300, **kw
        )
        assert run.rows_sampled == len(idx)
        with open_store(tmp_path / name) as s, open_store(tmp_path / "fresh.h5") as f:
            assert s.samples_per_image == 1300 and s.complete.all() and (s.drawn == 1300).all()
            np.testing.assert_array_equal(s.labels(), f.labels(), err_msg=name)
    # a smaller N than the store's stays a mismatch
    with pytest.raises(StoreMismatchError, match="samples_per_image: stored 1300, given 900"):
        sample_to_store(
            default.model, digits.dataset, tmp_path / "grown.h5", samples_per_image=900, **kw
        )


def test_v1_store_is_not_extended_past_its_N(tmp_path, default, digits):
    from isskit.store import open_for_writing

    out = tmp_path / "old.h5"
    attrs = dict(sigma=0.25, num_classes=10, seed=0, dataset="d", model="m; precision float32",
                 noise=noise_description(200, "cpu", NOISE_SCHEME_V1))
    with open_for_writing(out, image_index=[0], true_label=[digits.dataset[0][1]],
                          samples_per_image=600, attrs=attrs):
        pass
    before = out.read_bytes()
    with pytest.raises(StoreMismatchError, match=r"isskit-noise-v1, whose noise depends on "
                                                 r"the batch: its rows cannot be extended "
                                                 r"past N = 600 to N = 800"):
        sample_to_store(
            default.model,
            digits.dataset,
            out,
            sigma=0.25,
            samples_per_image=800,
            batch=200,
            seed=0,
            indices=[0],
            device="cpu",
            progress=False,
            model_description="m",
            dataset_name="d",
        )
    assert out.read_bytes() == before
