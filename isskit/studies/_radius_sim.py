"""Monte Carlo audit of radius policies (the simulation half of :mod:`isskit.studies.audit`).

:func:`simulate` draws, for ``trials`` independent images of a known p_A, the counts a
replay would take (the shortcut: counts, not streams, since only counts enter the
certificate) with the laws of :mod:`isskit.studies._radius_laws`; ``tests/test_audit.py``
checks the shortcut against :func:`isskit.replay.replay` over real synthetic streams.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.policies import CountPlan
from isskit.stats import cp_lower
from isskit.studies._radius_laws import _check_p, _check_policy, _law, _plan, _selection
from isskit.validate import (
    OVERHEAD_BYTES,
    ArgumentError,
    check_memory,
    check_positive_int,
    check_sigma,
)

__all__ = ["Simulation", "simulate"]

#: Peak bytes per simulated image of :func:`simulate` (about 95 measured with tracemalloc
#: for every policy kind: a dozen int64/float64 arrays of ``trials`` values and SciPy's
#: temporaries; ``tests/test_sizes.py`` checks the bound), so ``trials`` can be checked
#: against the memory left before anything is drawn.
_BYTES_PER_TRIAL = 128


def _check_trials(trials: int, minimum: int) -> int:
    """``trials`` as an int >= ``minimum``, refused before drawing if it cannot fit."""
    trials = check_positive_int(trials, "trials", minimum=minimum)
    check_memory(OVERHEAD_BYTES + _BYTES_PER_TRIAL * trials, "trials", trials,
                 f"the simulated counts of every image, {_BYTES_PER_TRIAL} bytes each")
    return trials


@dataclass(frozen=True)
class Simulation:
    """Counts a replay would take for independent images of a known p_A (:func:`simulate`).

    Attributes
    ----------
    prediction : ndarray of int64
        0 the top class, 1 the runner-up, -1 an abstention.
    p_lower : ndarray of float64
        The certificate's bound (0 without an estimate).
    samples : ndarray of int64
        Samples consumed.
    p_true : ndarray of float64
        True probability of the chosen class.
    failure : ndarray of bool
        Certified with ``p_lower`` above ``p_true``.
    """

    prediction: np.ndarray
    p_lower: np.ndarray
    samples: np.ndarray
    p_true: np.ndarray
    failure: np.ndarray


def simulate(policy, p_A: float, trials: int, rng, sigma: float = 0.5) -> Simulation:
    """Draw the counts a replay would take for ``trials`` independent images.

    Parameters
    ----------
    policy : RadiusPolicy
        The policy.
    p_A : float
        Top-class probability of the two-class stream.
    trials : int
        Number of images.
    rng : numpy.random.Generator
        Source of randomness.
    sigma : float
        Noise level (for the ISS mapping).

    Returns
    -------
    Simulation
        Arrays, one entry per image.
    """
    policy = _check_policy(policy)
    p = _check_p(p_A)
    trials = _check_trials(trials, minimum=1)
    sigma = check_sigma(sigma)
    m = policy.selection_size
    x0 = rng.binomial(m, p, trials)
    top, x_c, p_c = _selection(m, p, x0)
    start, k = _plan(policy, x_c, sigma)
    fresh, covers, inside = _law(policy, start, k)
    count = np.zeros(trials, np.int64)
    # Draw order (fresh, then covering, then inside ranges) keeps earlier seeds' results.
    count[fresh] = rng.binomial(k[fresh], p_c[fresh])
    count[covers] = x_c[covers] + rng.binomial(k[covers] - m, p_c[covers])
    count[inside] = rng.hypergeometric(x_c[inside], m - x_c[inside], k[inside])
    samples = np.broadcast_to(policy.samples_consumed(CountPlan(start, k)), (trials,))
    p_lower = np.where(k > 0, cp_lower(count, np.maximum(k, 1), policy.alpha), 0.0)
    certified = (k > 0) & (p_lower >= 0.5)
    prediction = np.where(certified, np.where(top, 0, 1), -1)
    return Simulation(
        prediction=prediction,
        p_lower=p_lower,
        samples=np.array(samples),
        p_true=p_c,
        failure=certified & (p_lower > p_c),
    )


def _check_confidence(confidence) -> float:
    """The level of a Clopper-Pearson interval on a simulated rate, in (0, 1)."""
    if not (isinstance(confidence, float | int) and 0.0 < confidence < 1.0):
        raise ArgumentError("confidence", "{name} ({value}) must be in (0, 1)", value=confidence)
    return float(confidence)
