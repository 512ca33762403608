"""Certification policies: one module per policy family behind one interface.

* :mod:`~isskit.policies.base`: the interface (:class:`Policy`, :class:`RadiusPolicy`,
  :class:`CountPlan`) and the registry of spec kinds (:func:`register`);
* :mod:`~isskit.policies.cohen`, :mod:`~isskit.policies.ias`, :mod:`~isskit.policies.iss`,
  :mod:`~isskit.policies.budget`: Cohen's CERTIFY, input-agnostic sampling, input-specific
  sampling and the budget policy (a pilot's posterior buys each image its sample size);
* :mod:`~isskit.policies.adaptive`, :mod:`~isskit.policies.staged`, :mod:`~isskit.policies.cs`:
  the decision policies (:class:`DecisionPolicy`: "certified at radius r?"), evaluated by
  :mod:`isskit.decision`;
* :mod:`~isskit.policies.spec`: the spec language (``"iss decline=ad k_bar=1e5 U=0.05,0.1"``,
  ``ISS-AD-10-0.05``) and policy files.

Over one image's stream ``labels[0:N]`` (DESIGN.md, "Policies"):

===============================  ===================  =========================  =================
policy                           class chosen from    count taken over           samples consumed
===============================  ===================  =========================  =================
``Cohen(n0, n)`` (CERTIFY)       ``[0, n0)``          ``[n0, n0 + n)``           ``n0 + n``
``IAS(n)`` (one stage)           ``[0, n)``           ``[0, n)``                 ``n``
``ISS(k_bar, U, decline, k0)``   ``[0, k0)``          ``[0, k_hat)`` (reused)    ``max(k0, k_hat)``
``ISS(..., fresh=True)``         ``[0, k0)``          ``[k0, k0 + k_hat)``       ``k0 + k_hat``
``Budget(price or B, k0)``       ``[0, k0)``          ``[k0, k0 + k)``           ``k0 + k``
===============================  ===================  =========================  =================

Names follow Chen et al. (AAAI 2022): ``k_bar`` the desired sample size, ``U`` the maximum
radius decline, ``decline`` absolute (``"ad"``) or relative (``"rd"``), ``k0`` the pilot size,
``delta`` the grid step of the mapping psi, ``alpha`` the failure probability.

Examples
--------
>>> from isskit.policies import parse_policy_spec
>>> [p.name for p in parse_policy_spec("iss decline=ad k_bar=1e5 U=0.05,0.1")]
['ISS-AD-10-0.05', 'ISS-AD-10-0.1']
"""

from isskit.policies.adaptive import Adaptive
from isskit.policies.base import (
    DEFAULT_ALPHA,
    KINDS,
    Counted,
    CountPlan,
    Decided,
    DecisionPolicy,
    Policy,
    RadiusPolicy,
    register,
)
from isskit.policies.budget import Budget
from isskit.policies.cohen import DEFAULT_N0, Cohen
from isskit.policies.cs import CS, cs_thresholds
from isskit.policies.ias import IAS
from isskit.policies.iss import DEFAULT_DELTA, ISS
from isskit.policies.spec import load_policy_file, parse_policies, parse_policy_spec
from isskit.policies.staged import Staged

__all__ = [
    "CS",
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "DEFAULT_N0",
    "IAS",
    "ISS",
    "KINDS",
    "Adaptive",
    "Budget",
    "Cohen",
    "CountPlan",
    "Counted",
    "Decided",
    "DecisionPolicy",
    "Policy",
    "RadiusPolicy",
    "Staged",
    "cs_thresholds",
    "load_policy_file",
    "parse_policies",
    "parse_policy_spec",
    "register",
]
