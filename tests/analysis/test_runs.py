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
