"""Studies of policies on streams with known statistics.

* :mod:`~isskit.studies.audit`: the validity audit (exact and simulated failure rates), of
  radius and decision policies;
* :mod:`~isskit.studies.decision_audit`: the decision policies' false-certification laws;
* :mod:`~isskit.studies.oracle`: the oracle ceiling of any input-specific policy;
* :mod:`~isskit.studies.synthetic`: synthetic streams with a known p_A, realistic p_A mixes.

Import the submodules themselves; this package imports none of them.
"""
