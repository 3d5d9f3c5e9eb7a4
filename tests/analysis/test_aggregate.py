"""rliable aggregates: point estimates against independent computations, reproducible bootstrap intervals,
the numpy global RNG left as found, and rectangular score matrices from unequal seeds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from rliable import metrics as rliable_metrics

from analysis import aggregate
from analysis.scores import analyse

REPS = 200


@pytest.fixture
def matrix() -> np.ndarray:
    # 5 runs × 4 tasks, with scores above 100 so that the optimality gap's clipping matters.
    return np.random.default_rng(7).uniform(-10.0, 130.0, size=(5, 4))


def test_point_estimates_match_independent_computations(matrix):
    iqm, mean, median, gap = aggregate.aggregate_metrics(matrix)
    assert iqm == pytest.approx(scipy.stats.trim_mean(matrix.ravel(), 0.25))
    task_means = [sum(matrix[r, t] for r in range(5)) / 5 for t in range(4)]
    assert mean == pytest.approx(sum(task_means) / 4)
    assert median == pytest.approx(sorted(task_means)[1] / 2 + sorted(task_means)[2] / 2)
    clipped = [min(v, 100.0) for v in matrix.ravel()]
    assert gap == pytest.approx(100.0 - sum(clipped) / len(clipped))


def test_optimality_gap_by_hand_on_the_0_100_scale():
    scores = np.array([[10.0, 120.0], [30.0, 50.0], [70.0, 90.0]])
    # Clip 120 to the expert score 100: gap = 100 − (10 + 100 + 30 + 50 + 70 + 90) / 6.
    assert aggregate.aggregate_metrics(scores)[3] == pytest.approx(100.0 - 350.0 / 6)


def test_iqm_discards_the_outer_quartiles():
    scores = np.array([[0.0, 1000.0], [10.0, 20.0], [30.0, 40.0], [-500.0, 50.0]])
    # 8 values; the lowest 2 (-500, 0) and highest 2 (50, 1000) are trimmed: mean of 10, 20, 30, 40.
    assert aggregate.aggregate_metrics(scores)[0] == pytest.approx(25.0)


def hand_probability(x: np.ndarray, y: np.ndarray) -> float:
    per_task = []
    for task in range(x.shape[1]):
        wins = 0.0
        for a, b in itertools.product(x[:, task], y[:, task]):
            wins += 1.0 if a > b else 0.5 if a == b else 0.0
        per_task.append(wins / (x.shape[0] * y.shape[0]))
    return sum(per_task) / len(per_task)


def test_probability_of_improvement_matches_a_hand_count_and_rliable():
    x = np.array([[1.0, 5.0, 3.0], [4.0, 5.0, 3.0], [2.0, 9.0, 3.0]])
    y = np.array([[1.0, 6.0, 3.0], [3.0, 4.0, 3.0]])  # ties on purpose; third task identical values
    expected = hand_probability(x, y)
    # Task 1: pairs (1,1)=.5 (1,3)=0 (4,1)=1 (4,3)=1 (2,1)=1 (2,3)=0 → 3.5/6.
    # Task 2: (5,6)=0 (5,4)=1 twice, (9,6)=1 (9,4)=1 → 4/6. Task 3: all ties → 0.5.
    assert expected == pytest.approx((3.5 / 6 + 4 / 6 + 0.5) / 3)
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(expected)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, (5, 3)).astype(float), rng.integers(0, 5, (4, 3)).astype(float)
    assert aggregate.probability_of_improvement(a, b) == pytest.approx(
        rliable_metrics.probability_of_improvement(a, b))


def test_intervals_are_reproducible_and_leave_the_global_rng_alone(matrix):
    np.random.seed(12345)
    before = np.random.get_state()
    first = aggregate.interval_estimates({"online": {"BAQ": matrix}}, seed=0, reps=REPS)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    again = aggregate.interval_estimates({"online": {"BAQ": matrix}}, seed=0, reps=REPS)
    other = aggregate.interval_estimates({"online": {"BAQ": matrix}}, seed=1, reps=REPS)
    assert first.equals(again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    assert np.allclose(first["value"], other["value"])  # point estimates do not depend on the seed
    assert (first["ci_low"] <= first["value"] + 1e-9).all()
    assert (first["value"] <= first["ci_high"] + 1e-9).all()
    assert list(first["metric"]) == list(aggregate.METRICS)


def test_a_method_interval_does_not_depend_on_the_other_methods(matrix):
    alone = aggregate.interval_estimates({"online": {"BAQ": matrix}}, seed=0, reps=REPS)
    both = aggregate.interval_estimates({"online": {"IQL": matrix - 5, "BAQ": matrix}}, seed=0, reps=REPS)
    assert np.array_equal(alone["ci_low"], both[both["algorithm"] == "BAQ"]["ci_low"])


def test_seeded_global_rng_restores_state_after_an_error():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    with pytest.raises(RuntimeError), aggregate.seeded_global_rng(0, "x"):
        np.random.rand(10)
        raise RuntimeError("boom")
    assert np.random.rand() == expected


def test_probability_intervals_and_profiles(matrix):
    worse = matrix - 20.0
    poi = aggregate.improvement_probabilities({"online": {"BAQ": matrix, "IQL": worse}}, [("BAQ", "IQL")],
                                              seed=0, reps=REPS)
    row = poi.iloc[0]
    assert row["probability"] == pytest.approx(hand_probability(matrix, worse))
    assert row["ci_low"] <= row["probability"] <= row["ci_high"] <= 1.0
    taus = np.array([0.0, 50.0, 100.0])
    profile = aggregate.performance_profiles({"BAQ": matrix}, taus, seed=0, reps=REPS)
    expected = [np.mean(matrix > t) for t in taus]
    assert np.allclose(profile["fraction"], expected)
    again = aggregate.performance_profiles({"BAQ": matrix}, taus, seed=0, reps=REPS)
    assert profile.equals(again)


def _records(scores: dict[tuple[str, str, int], float]) -> list[dict]:
    return [{"algo": a, "dataset": d, "seed": s, "offline": v / 2, "online": v}
            for (a, d, s), v in scores.items()]


def test_score_matrices_keep_common_seeds_and_report_drops(synthetic_runs):
    scores = {(a, d, s): 10.0 * s + (5.0 if a == "baq" else 0.0) + (1.0 if d == "t2" else 0.0)
              for a in ("baq", "iql") for d in ("t1", "t2") for s in range(3)}
    del scores[("iql", "t2", 1)]  # IQL lacks seed 1 on t2: its common seeds are 0 and 2
    analysis = analyse(synthetic_runs(_records(scores)))
    built = aggregate.score_matrices(analysis)
    assert built.tasks == ["t1", "t2"]
    assert built.matrices["online"]["BAQ"].shape == (3, 2)
    assert np.array_equal(built.matrices["online"]["IQL"], np.array([[0.0, 1.0], [20.0, 21.0]]))
    assert np.array_equal(built.matrices["offline"]["BAQ"][:, 0], np.array([2.5, 7.5, 12.5]))
    assert any("IQL: 1 run(s) dropped" in w for w in built.warnings)


def test_a_method_missing_a_task_is_left_out_rather_than_the_task(synthetic_runs):
    scores = {(a, d, s): 50.0 for a in ("baq", "iql", "cql") for d in ("t1", "t2") for s in range(2)}
    del scores[("cql", "t2", 0)], scores[("cql", "t2", 1)]
    built = aggregate.score_matrices(analyse(synthetic_runs(_records(scores))))
    assert built.tasks == ["t1", "t2"]
    assert set(built.matrices["online"]) == {"BAQ", "IQL"}
    assert any(w.startswith("CQL left out of the aggregates") for w in built.warnings)


def test_iqm_curve_matches_trim_mean_at_each_step(synthetic_runs):
    records = [{"algo": "baq", "dataset": d, "seed": s, "offline": 10.0 * s + i, "online": 30.0 * s - i}
               for i, d in enumerate(("t1", "t2")) for s in range(4)]
    loaded = synthetic_runs(records)
    analysis = analyse(loaded)
    built = aggregate.score_matrices(analysis)
    curves = aggregate.iqm_curves(loaded.scores, built, seed=0, reps=REPS, offline_steps={"BAQ": 100})
    assert list(curves["step"]) == [0, 100, 200]
    for step, phase_value in ((100, "offline"), (200, "online")):
        values = [r[phase_value] for r in records]
        assert curves.loc[curves["step"] == step, "iqm"].item() == pytest.approx(
            scipy.stats.trim_mean(values, 0.25))
    assert (curves["ci_low"] <= curves["iqm"] + 1e-9).all()
    assert (curves["iqm"] <= curves["ci_high"] + 1e-9).all()
    again = aggregate.iqm_curves(loaded.scores, built, seed=0, reps=REPS, offline_steps={"BAQ": 100})
    other = aggregate.iqm_curves(loaded.scores, built, seed=1, reps=REPS, offline_steps={"BAQ": 100})
    assert curves.equals(again) and not curves["ci_low"].equals(other["ci_low"])
