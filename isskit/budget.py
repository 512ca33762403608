"""The budget study's public names in one place (docs/budget.md, ``bench/budget_study.py``).

The policy (DESIGN.md: Jeffreys' prior, one pilot, ``price=`` or ``B=``) is
:class:`isskit.policies.Budget`, replayed by :func:`isskit.replay.replay` like any other;
its rule lives once, in :mod:`isskit.policies._budget_gain` (posterior gains, ``k`` at a
price) and :mod:`isskit.policies.budget` (the policy, the price a mean budget implies).
What the study measures beyond it, on the same rule:

* :mod:`isskit.studies.budget_priors`: empirical-Bayes and known priors, the second pilot;
* :mod:`isskit.studies.budget_variant`: :class:`BudgetVariant`, the policy with those;
* :mod:`isskit.studies.budget_replay`: :func:`plan_budget`, :func:`replay_budget`, from
  pilot counts and a counting callable, for the policy and every variant.

Examples
--------
>>> from isskit.budget import Budget, BudgetVariant
>>> BudgetVariant(B=20000, k0=100, prior="eb").policy == Budget(B=20000, k0=100)
True
"""

from isskit.policies._budget_gain import (
    DEFAULT_K_MAX,
    GRID_STEP,
    BudgetTable,
    GainTable,
    budget_table,
    k_grid,
)
from isskit.policies.budget import DEFAULT_K0, Budget, PriceSolution, solve_price
from isskit.studies.budget_priors import (
    Prior,
    TwoStageRule,
    binned_prior,
    empirical_prior,
    pilot_predictive,
    two_stage_rule,
)
from isskit.studies.budget_replay import BudgetPlan, BudgetReplay, plan_budget, replay_budget
from isskit.studies.budget_variant import PRIORS, BudgetVariant, gain_table

__all__ = [
    "DEFAULT_K0",
    "DEFAULT_K_MAX",
    "GRID_STEP",
    "PRIORS",
    "Budget",
    "BudgetPlan",
    "BudgetReplay",
    "BudgetTable",
    "BudgetVariant",
    "GainTable",
    "PriceSolution",
    "Prior",
    "TwoStageRule",
    "binned_prior",
    "budget_table",
    "empirical_prior",
    "gain_table",
    "k_grid",
    "pilot_predictive",
    "plan_budget",
    "replay_budget",
    "solve_price",
    "two_stage_rule",
]

