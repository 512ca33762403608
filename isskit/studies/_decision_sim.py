"""Monte Carlo audit of decision policies: their own replay over simulated two-class streams.

Where no exact law is known (:func:`isskit.studies.decision_audit.exact_law`), and as a check
of the exact laws, :func:`simulate_decision` draws ``trials`` i.i.d. streams of the policy's
``max_samples`` draws, label 0 (the true label, the class of interest) with probability p
and label 1 otherwise, indexes them as a replay does
(:func:`isskit.replay.index.index_blocks`) and lets the replay decide
(:func:`isskit.replay.decisions.evaluate_decisions`): the rule run is the policy's own,
as in every replay. Streams are drawn in blocks of about :data:`_BLOCK_BYTES`, so memory
stays bounded whatever ``trials``; the time is that of drawing every stream in full (about
10 ns a draw), which is why the exact laws are preferred.

This module never prints and never reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isskit.policies._decide import _p0
from isskit.validate import check_positive_int, check_sigma

__all__ = ["DecisionSimulation", "simulate_decision"]

#: Bytes of the uniform draws of one block of streams (8 a draw).
_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class DecisionSimulation:
    """What a decision policy did on ``trials`` simulated streams (:func:`simulate_decision`).

    Attributes
    ----------
    decision : ndarray of int8
        1 certified, 0 not, -1 undecided.
    samples : ndarray of int64
        Samples consumed.
    prediction : ndarray of int64
        The class certified (0 the class of interest, 1 the runner-up), -1 otherwise.
    failure : ndarray of bool
        Certified a class whose probability is at most ``p0``.
    """

    decision: np.ndarray
    samples: np.ndarray
    prediction: np.ndarray
    failure: np.ndarray

    @property
    def failures(self) -> int:
        """Number of false certifications."""
        return int(self.failure.sum())

    def law(self):
        """The empirical :class:`~isskit.studies.decision_audit.DecisionLaw`."""
        from isskit.studies.decision_audit import DecisionLaw

        d = self.decision
        return DecisionLaw(certified=float(np.mean(d == 1)), not_certified=float(np.mean(d == 0)),
                           undecided=float(np.mean(d == -1)),
                           mean_samples=float(np.mean(self.samples)),
                           certified_runner_up=float(np.mean((d == 1) & (self.prediction == 1))))


def simulate_decision(policy, p: float, trials: int, rng, sigma: float) -> DecisionSimulation:
    """Replay ``policy`` over ``trials`` simulated two-class streams with success probability p.

    Parameters
    ----------
    policy : DecisionPolicy
        Any decision policy a replay evaluates.
    p : float
        Probability of label 0 (the true label) at every draw, in [0, 1].
    trials : int
        Number of streams.
    rng : numpy.random.Generator
    sigma : float
        Noise level (``p0 = Phi(r / sigma)``).

    Returns
    -------
    DecisionSimulation

    Examples
    --------
    >>> import numpy as np
    >>> from isskit.policies import Staged
    >>> from isskit.studies.decision_audit import simulate_decision
    >>> sim = simulate_decision(Staged(r=0.5, stages=(100, 1000)), 0.99, 200,
    ...                         np.random.default_rng(0), sigma=0.5)
    >>> int(np.sum(sim.decision == 1)), sim.failures
    (200, 0)
    """
    from isskit.replay._index_read import _range_schedules
    from isskit.replay.decisions import evaluate_decisions
    from isskit.replay.index import index_blocks

    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p ({p}) must be in [0, 1]")
    trials = check_positive_int(trials, "trials")
    sigma = check_sigma(sigma)
    p0 = _p0(policy.r, sigma)
    N = int(policy.max_samples)
    step = max(1, _BLOCK_BYTES // (8 * N))
    schedules = _range_schedules([policy])
    parts = []
    for first in range(0, trials, step):
        b = min(step, trials - first)
        block = (rng.random((b, N)) >= p).astype(np.uint16)  # label 0 with probability p
        truth = np.zeros(b, np.int64)
        index = index_blocks([block], samples_per_image=N, num_classes=2, selection_sizes=[],
                             true_labels=truth, range_schedules=schedules)
        del block
        parts.append(evaluate_decisions(index, [policy], sigma, truth))
    decision, samples, prediction = (np.concatenate([part[k][0] for part in parts])
                                     for k in range(3))
    p_chosen = np.where(prediction == 1, 1.0 - p, p)
    failure = (decision == 1) & (p_chosen <= p0)
    return DecisionSimulation(decision=decision, samples=samples, prediction=prediction,
                              failure=failure)
