"""The expert and medium snapshot rules (suite/behavior/snapshots.py) on synthetic return curves."""

from __future__ import annotations

import math

import pytest

from suite.behavior.snapshots import expert_index, medium_index, medium_target
from suite.errors import UserError

# A learning curve that rises, peaks at index 5 and falls back: mean stochastic returns per snapshot.
CURVE = [12.0, 150.0, 310.0, 420.0, 900.0, 1210.0, 800.0, 395.0]


def test_expert_is_the_best_snapshot() -> None:
    assert expert_index(CURVE) == 5


def test_medium_is_closest_to_a_third_of_the_way_from_random_to_best() -> None:
    # Random return 0: the target is 1210 / 3 = 403.3; 395 (index 7) is nearer than 420 (index 3).
    assert medium_target(CURVE, 0.0) == pytest.approx(1210.0 / 3)
    assert medium_index(CURVE, 0.0) == 7
    # Random return -290: target -290 + 1500 / 3 = 210, nearest 150 (60 away) against 310 (100 away).
    assert medium_target(CURVE, -290.0) == pytest.approx(210.0)
    assert medium_index(CURVE, -290.0) == 1


def test_ties_go_to_the_earliest_snapshot() -> None:
    # Target 30 / 3 = 10: 8 and 12 are both 2 away.
    assert medium_index([0.0, 8.0, 12.0, 30.0], 0.0) == 1
    assert expert_index([5.0, 9.0, 9.0]) == 1


def test_negative_returns_keep_the_rule_meaningful() -> None:
    # All returns negative (a cost-like task): R_best / 3 would lie above the best; the rule's target does not.
    curve = [-60.0, -40.0, -25.0, -10.0]
    assert medium_target(curve, -70.0) == pytest.approx(-50.0)
    assert medium_index(curve, -70.0) == 0 and expert_index(curve) == 3


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_bad_curves_are_one_line_errors(bad: list[float]) -> None:
    with pytest.raises(UserError, match="snapshot returns must be a non-empty list of finite numbers"):
        medium_index(bad, 0.0)
