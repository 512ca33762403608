"""isskit._renamed: old keyword and attribute names accepted with a DeprecationWarning."""

from __future__ import annotations

import dataclasses

import pytest

from isskit._renamed import renamed


@renamed(N="samples_per_image", n_samples="samples_per_image")
def _f(a, *, samples_per_image=7):
    return a, samples_per_image


@renamed(n_samples="samples_per_image")
@dataclasses.dataclass(frozen=True)
class _Box:
    samples_per_image: int
    other: int = 0


def test_old_keyword_warns_and_passes_the_value_on():
    assert _f(1, samples_per_image=3) == (1, 3)
    with pytest.warns(DeprecationWarning, match=r"_f\(\): 'N' is now called 'samples_per_image'"):
        assert _f(1, N=4) == (1, 4)
    with pytest.warns(DeprecationWarning, match="'n_samples'"):
        assert _f(2, n_samples=5) == (2, 5)
    with pytest.raises(TypeError, match="two names of one argument"):
        _f(1, N=4, samples_per_image=4)
    assert _f.__name__ == "_f" and _f.__wrapped__(1) == (1, 7)


def test_old_attribute_and_constructor_keyword_of_a_dataclass():
    box = _Box(samples_per_image=9)
    assert dataclasses.fields(box)[0].name == "samples_per_image"
    with pytest.warns(DeprecationWarning, match=r"_Box\(\): .n_samples. is now called"):
        old = _Box(n_samples=9, other=1)
    assert old == _Box(9, 1)
    with pytest.warns(DeprecationWarning, match="_Box: 'n_samples' is now called"):
        assert box.n_samples == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.samples_per_image = 1


# ----------------------------------------------------- the stream-length rename (issue 9)
# The library calls the stream length N ``samples_per_image`` everywhere (the store attr);
# the spellings it had before, ``N=``, ``n_samples=`` and import_log's ``samples=``, still
# work, with a warning. (This file is left alone by /work/tools/rename_n.py.)


def test_old_keywords_of_the_public_functions_still_work(tmp_path):
    import numpy as np

    from isskit.replay import index_blocks
    from isskit.studies.synthetic import synthetic_labels, write_synthetic_store

    rng = np.random.default_rng(0)
    with pytest.warns(DeprecationWarning, match="'N' is now called 'samples_per_image'"):
        old = synthetic_labels([0.9, 0.5], N=64, predicted=[1, 2], num_classes=3,
                               rng=np.random.default_rng(0))
    new = synthetic_labels([0.9, 0.5], samples_per_image=64, predicted=[1, 2], num_classes=3,
                           rng=rng)
    np.testing.assert_array_equal(old, new)
    kw = dict(predicted=[1], true_label=[1], num_classes=3, sigma=0.5, seed=0)
    with pytest.warns(DeprecationWarning, match=r"write_synthetic_store\(\): 'N'"):
        write_synthetic_store(tmp_path / "a.h5", [0.9], N=32, **kw)
    with pytest.warns(DeprecationWarning, match=r"index_blocks\(\): 'n_samples'"):
        index = index_blocks([new], n_samples=64, num_classes=3, selection_sizes=[8])
    assert index.samples_per_image == 64
    with pytest.warns(DeprecationWarning, match="StreamIndex: 'n_samples'"):
        assert index.n_samples == 64


def test_import_log_takes_its_old_samples_keyword(published, tmp_path):
    from isskit.logs import import_log

    log = published / "certify-logs" / "cohen2019__cifar10_resnet110_noise_0.12_test_sigma_0.50"
    with pytest.warns(DeprecationWarning, match=r"import_log\(\): 'samples'"):
        res = import_log(log, tmp_path / "a.h5", samples=200)
    assert res.samples_per_image == 200 and res.summary()["samples_per_image"] == 200
    with pytest.warns(DeprecationWarning, match="ImportResult: 'N'"):
        assert res.N == 200
