"""What a policy's evaluation returns.

Where a radius policy counts (:class:`CountPlan`), what it
counted once decided (:class:`Counted`), and a decision policy's answer (:class:`Decided`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CountPlan:
    """Where a radius policy counts its class, per selection count.

    Attributes
    ----------
    start : int or ndarray of int64
        First sample of the count range.
    k : int or ndarray of int64
        Length of the count range (0: abstain without an estimate).
    k_hat : int or ndarray of int64
        The input-specific sample size the policy chose, for the results' ``k_hat``
        variable; -1 for policies whose ``k`` is the same for every image.
    """

    start: object
    k: object
    k_hat: object = -1


@dataclass(frozen=True)
class Counted:
    """What a radius policy counted on one image's stream prefix, once it has decided.

    The certificate follows from these counts by the rule replay applies
    (:func:`isskit.replay.planner._certify`: Cohen's bound on ``k_A`` of ``k`` at the
    policy's ``alpha``, certified when it is at least 1/2).

    Attributes
    ----------
    chosen : int
        The class chosen on ``labels[0:m]``.
    k_A : int
        Count of ``chosen`` over the count range.
    k : int
        Length of the count range (0: abstain without an estimate).
    samples : int
        Samples consumed, ``max(m, start + k)``.
    k_hat : int
        As :attr:`CountPlan.k_hat`.
    """

    chosen: int
    k_A: int
    k: int
    samples: int
    k_hat: int = -1


@dataclass(frozen=True)
class Decided:
    """What a decision policy answered on one image's stream prefix, once it has decided.

    Attributes
    ----------
    decision : int
        1 certified at ``r``, 0 not certified, -1 undecided (the results' ``decision``).
    samples : int
        Samples consumed.
    prediction : int
        The class certified, -1 where not certified (``staged`` and ``cs`` certify the
        true label).
    """

    decision: int
    samples: int
    prediction: int = -1
