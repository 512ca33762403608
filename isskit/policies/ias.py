"""Input-agnostic sampling in one stage (IAS): choose and count the class on ``[0, n)``.

The paper's IAS-c (Chen et al. 2022, Fig. 1) is ``IAS(n = c x 10,000)``; with ``n = k_bar`` it
is the reference ISS accelerates. The class is chosen on the very samples that count it, so
the bound is *selection-biased* where the two top classes are close (p_A near 1/2): the
validity audit measures how much (docs/audit.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isskit.policies.base import (
    DEFAULT_ALPHA,
    CountPlan,
    RadiusPolicy,
    name_suffix,
    register,
    units,
)
from isskit.validate import check_alpha, check_sample_size

__all__ = ["IAS"]


@register
@dataclass(frozen=True)
class IAS(RadiusPolicy):
    """Input-agnostic sampling in one stage: choose and count the class on ``[0, n)``.

    Parameters
    ----------
    n : int
        Sample size, >= 1.
    alpha : float
        One-sided failure probability, in (0, 1).

    Examples
    --------
    >>> from isskit.policies import IAS
    >>> IAS(n=26_000).name
    'IAS-2.6'
    """

    n: int = 100_000
    alpha: float = DEFAULT_ALPHA
    kind: ClassVar[str] = "ias"
    validity: ClassVar[str] = "selection-biased"
    shorthand_key: ClassVar[str] = "n"
    shorthand_example: ClassVar[str] = "IAS-2.6"

    def __post_init__(self):
        object.__setattr__(self, "n", check_sample_size(self.n, "n"))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    @property
    def name(self) -> str:
        """Readable name, the paper's ``IAS-<n in 10^4>`` plus any non-default alpha."""
        return f"IAS-{units(self.n)}" + name_suffix(self, ("alpha",))

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: ``[0, n)``."""
        return self.n

    @property
    def budget(self) -> int:
        """The sample size ``n``."""
        return self.n

    @property
    def max_samples(self) -> int:
        """Samples consumed, the same for every image: ``n``."""
        return self.n

    @property
    def fixed_samples(self) -> bool:
        """Every image consumes ``n``."""
        return True

    def plan(self, x, *, sigma: float) -> CountPlan:
        """Count over the selection samples themselves, ``[0, n)``."""
        return CountPlan(start=0, k=self.n)

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "n": self.n, "alpha": self.alpha}

    def __str__(self) -> str:
        return self.name
