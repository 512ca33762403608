"""Cohen et al.'s CERTIFY (ICML 2019, Alg. "certify"): separate selection and estimation.

Over one image's stream: the class is the most frequent label of ``[0, n0)``; it is counted
over the ``n`` fresh samples ``[n0, n0 + n)``; every image consumes ``n0 + n``. The count is
independent of everything that chose its size and its class: validity ``fixed-n``.
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

__all__ = ["DEFAULT_N0", "Cohen"]

#: Default selection size of Cohen's CERTIFY (Cohen et al. 2019, Sec. 4: n0 = 100).
DEFAULT_N0 = 100


@register
@dataclass(frozen=True)
class Cohen(RadiusPolicy):
    """Cohen et al.'s CERTIFY: choose the class on ``[0, n0)``, count it on ``[n0, n0 + n)``.

    Parameters
    ----------
    n0 : int
        Selection sample size (Cohen's ``n0``), >= 1.
    n : int
        Estimation sample size (Cohen's ``n``), >= 1.
    alpha : float
        One-sided failure probability of the lower confidence bound, in (0, 1).

    Examples
    --------
    >>> from isskit.policies import Cohen
    >>> p = Cohen(n=100_000)
    >>> p.name, p.max_samples, p.validity
    ('Cohen-10', 100100, 'fixed-n')
    """

    n0: int = DEFAULT_N0
    n: int = 100_000
    alpha: float = DEFAULT_ALPHA
    kind: ClassVar[str] = "cohen"
    validity: ClassVar[str] = "fixed-n"
    shorthand_key: ClassVar[str] = "n"

    def __post_init__(self):
        object.__setattr__(self, "n0", check_sample_size(self.n0, "n0"))
        object.__setattr__(self, "n", check_sample_size(self.n, "n"))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    @property
    def name(self) -> str:
        """Readable name, ``Cohen-<n in 10^4>`` plus any non-default parameter."""
        return f"Cohen-{units(self.n)}" + name_suffix(self, ("n0", "alpha"))

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: ``[0, n0)``."""
        return self.n0

    @property
    def budget(self) -> int:
        """The estimation size ``n``."""
        return self.n

    @property
    def max_samples(self) -> int:
        """Samples consumed, the same for every image: ``n0 + n``."""
        return self.n0 + self.n

    @property
    def fixed_samples(self) -> bool:
        """Every image consumes ``n0 + n``."""
        return True

    def plan(self, x, *, sigma: float) -> CountPlan:
        """Count over the ``n`` fresh samples after the selection, whatever ``x``."""
        return CountPlan(start=self.n0, k=self.n)

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "n0": self.n0, "n": self.n, "alpha": self.alpha}

    def __str__(self) -> str:
        return self.name
