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
