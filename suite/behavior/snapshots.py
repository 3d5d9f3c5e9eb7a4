"""Which training snapshots become the behaviour policies: D4RL's expert and medium levels.

D4RL (Fu et al. 2020, section 5) trained SAC, took the final policy as "expert" and a policy stopped early at
about one third of the expert's performance as "medium". Here every evaluation snapshot is a candidate, scored by
its mean *stochastic* return (D4RL collects with stochastic actions), and:

- expert = the snapshot with the highest mean stochastic return (the earliest one on a tie);
- medium = the snapshot whose mean stochastic return is closest to one third of the way from the random
  policy's return to the best one, `R_random + (R_best − R_random) / 3` (the earliest on a tie). That is a
  normalized score of 33.3 on the scale whose 0 is the random policy and 100 the best snapshot: it equals
  `R_best / 3` when the random return is 0, and stays meaningful for tasks whose returns are negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from suite.errors import UserError

MEDIUM_SHARE = 1.0 / 3.0  # D4RL: "medium" is about one third of the expert's performance
# Recorded in every task entry the trainer writes.
MEDIUM_RULE = ("the snapshot whose mean stochastic return is closest to R_random + (R_best - R_random) / 3, "
               "R_best the highest mean stochastic return of any snapshot, R_random that of uniform random actions; "
               "the earliest on a tie")


def expert_index(returns: Sequence[float]) -> int:
    """Index of the best snapshot (the earliest on a tie)."""
    values = _checked(returns)
    return int(np.argmax(values))  # argmax returns the first maximum


def medium_target(returns: Sequence[float], random_return: float) -> float:
    """The return the medium snapshot should have: a third of the way from the random return to the best."""
    best = float(np.max(_checked(returns)))
    return float(random_return) + MEDIUM_SHARE * (best - float(random_return))


def medium_index(returns: Sequence[float], random_return: float) -> int:
    """Index of the snapshot closest to `medium_target` (the earliest on a tie)."""
    values = _checked(returns)
    distance = np.abs(values - medium_target(values, random_return))
    return int(np.argmin(distance))  # argmin returns the first minimum


def _checked(returns: Sequence[float]) -> np.ndarray:
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise UserError(f"snapshot returns must be a non-empty list of finite numbers, got {list(values)}")
    return values
