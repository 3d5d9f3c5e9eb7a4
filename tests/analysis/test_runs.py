"""Reading runs from a real sqlite MLflow store: tags, metric histories, dedup by step, phases, overrides."""

from __future__ import annotations

import json

import pytest

from analysis.runs import load_runs
from suite.errors import UserError


def test_load_runs_reads_the_conventions(store, tmp_path, curve):
    exp = store.experiment("reading", tmp_path)
    scores = curve(100, 50, offline_end=40.0, online_end=70.0, every=25)
    first = store.log_run(exp, algo="baq", dataset="d4rl:hopper-medium-v2", seed=3, offline_steps=100,
                          scores=scores, overrides={"algo": {"lambda0": 0.5}, "online_steps": 50},
                          repeat_steps=(100,))
    failed = store.log_run(exp, algo="iql", dataset="d4rl:hopper-medium-v2", seed=0, offline_steps=100,
                           scores={0: 1.0, 25: 2.0}, status="failed", error="ValueError: nan loss")
    stray = store.client.create_run(exp).info.run_id  # not made by the suite: no baq.* tags
    store.client.set_terminated(stray)

    loaded = load_runs("reading", store.uri)

    assert set(loaded.runs["run_id"]) == {first, failed}
    assert any(stray in w for w in loaded.warnings)
    assert loaded.override_keys == ["algo.lambda0", "online_steps"]
    mine = loaded.scores[loaded.scores["run_id"] == first]
    assert list(mine["step"]) == sorted(scores)  # step 100 was logged twice: kept once
    assert list(mine["normalized_score"]) == pytest.approx([scores[s] for s in sorted(scores)])
    assert list(mine["return"]) == pytest.approx([10 * scores[s] for s in sorted(scores)])
    assert list(mine["phase"]) == ["offline"] * 5 + ["online"] * 2
    assert (mine["algo.lambda0"] == 0.5).all() and (mine["online_steps"] == 50).all()
    assert (mine[["algorithm", "dataset", "seed"]].drop_duplicates().values.tolist()
            == [["baq", "d4rl:hopper-medium-v2", 3]])
    runs = loaded.runs.set_index("run_id")
    assert runs.loc[first, "status"] == "finished" and runs.loc[first, "git_sha"] == "abc1234"
    assert json.loads(runs.loc[first, "overrides"]) == {"algo.lambda0": 0.5, "online_steps": 50}
    assert runs.loc[failed, "status"] == "failed" and runs.loc[failed, "error"] == "ValueError: nan loss"
    assert runs.loc[first, "n_evals"] == len(scores)


def test_unknown_experiment_is_a_user_error_listing_the_known_ones(store, tmp_path):
    store.experiment("known", tmp_path)
    with pytest.raises(UserError, match=r"no MLflow experiment named 'unknown'.*known"):
        load_runs("unknown", store.uri)


def test_experiment_without_suite_runs_is_a_user_error(store, tmp_path):
    exp = store.experiment("empty", tmp_path)
    store.client.create_run(exp)
    with pytest.raises(UserError, match="has no runs recorded by the suite"):
        load_runs("empty", store.uri)


def test_a_stopped_run_is_interrupted_and_reported_incomplete(store, tmp_path) -> None:
    """A run stopped on request ends KILLED with `baq.status=killed`: interrupted, in the cell's unfinished
    seeds and the table's notes, never in no bucket at all."""
    from analysis.scores import analyse
    from analysis.tables import score_table

    exp = store.experiment("stopped", tmp_path)
    store.log_run(exp, algo="iql", dataset="d4rl:hopper-medium-v2", seed=0, offline_steps=10,
                  scores={10: 5.0, 20: 6.0})
    stopped = store.log_run(exp, algo="iql", dataset="d4rl:hopper-medium-v2", seed=1, offline_steps=10,
                            scores={10: 4.0})
    store.client.set_tag(stopped, "baq.status", "killed")
    store.client.set_terminated(stopped, "KILLED")
    loaded = load_runs("stopped", store.uri)
    assert dict(zip(loaded.runs["seed"], loaded.runs["status"], strict=True)) == {0: "finished", 1: "interrupted"}
    analysis = analyse(loaded, {"algorithms": ["iql"], "datasets": ["d4rl:hopper-medium-v2"], "seeds": [0, 1]})
    (cell,) = analysis.cells.to_dict("records")
    assert cell["running_seeds"] == [1] and cell["missing_seeds"] == [] and cell["n"] == 1
    assert any("still running or interrupted: seed 1" in note for note in score_table(analysis).notes)


def test_recorded_state_covers_every_tag_and_status() -> None:
    from suite.states import STATES, recorded_state

    statuses = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "ODD")
    for status in statuses:
        for tag in (None, "finished", "failed", "killed", "interrupted", "running", "odd"):
            assert recorded_state(status, tag) in STATES
    assert recorded_state("KILLED", "running") == "interrupted"  # killed hard: MLflow knows better
    assert recorded_state("FAILED", "running") == "failed"
    assert recorded_state("RUNNING", "killed") == "interrupted"
