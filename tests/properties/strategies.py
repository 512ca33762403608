"""Hypothesis strategies for valid ISS mapping parameters (k_bar, U, decline, sigma, alpha, delta).

Reusable by every property test that needs a psi table; each draw is a dict of keyword
arguments for :func:`isskit.psi.psi_table`.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["alphas", "deltas", "k_bars", "mapping_params", "sigmas"]


def k_bars(max_value: int = 100_000) -> st.SearchStrategy[int]:
    """Sample sizes spread over orders of magnitude (1 included), up to ``max_value``."""
    parts = [st.integers(1, min(50, max_value))]
    if max_value > 50:
        parts.append(st.integers(51, min(2000, max_value)))
    if max_value > 2000:
        parts.append(st.integers(2001, max_value))
    return st.one_of(*parts)


def alphas(max_value: float = 0.45) -> st.SearchStrategy[float]:
    """Failure probabilities, the usual values and anything in (1e-6, max_value)."""
    usual = [a for a in (0.001, 0.01, 0.05) if a <= max_value]
    return st.one_of(st.sampled_from(usual), st.floats(1e-6, max_value))


def sigmas() -> st.SearchStrategy[float]:
    """Noise levels, the paper's and anything in [0.05, 4]."""
    return st.one_of(st.sampled_from([0.12, 0.25, 0.5, 1.0]), st.floats(0.05, 4.0))


def deltas(max_steps: int = 200) -> st.SearchStrategy[float]:
    """Grid steps that divide 1: 1/n, n in [1, max_steps]."""
    return st.integers(1, max_steps).map(lambda n: 1.0 / n)


@st.composite
def mapping_params(draw, decline: str | None = None, max_k_bar: int = 100_000,
                   max_alpha: float = 0.45, max_steps: int = 200) -> dict:
    """Keyword arguments for ``psi_table``: a valid, random parameter set."""
    decline = decline or draw(st.sampled_from(["ad", "rd"]))
    sigma = draw(sigmas())
    if decline == "ad":
        # up to 2 sigma: beyond that psi is 0 almost everywhere and nothing is tested
        U = draw(st.floats(1e-3, 2.0 * sigma))
    else:
        U = draw(st.floats(1e-3, 0.99))
    return {
        "k_bar": draw(k_bars(max_k_bar)),
        "U": U,
        "decline": decline,
        "sigma": sigma,
        "alpha": draw(alphas(max_alpha)),
        "delta": draw(deltas(max_steps)),
    }
