"""One training = one MLflow run: its params, tags, metrics, artifacts and end status, in a real local store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from algorithms.iql import IQL
from suite.launch import launch
from suite.train import TrainConfig


def cfg(dataset: str, **kw) -> TrainConfig:
    base = dict(algo="iql", dataset=dataset, offline_steps=20, online_steps=20, eval_interval=20,
                eval_episodes=1, log_interval=10, checkpoint_interval=20, max_episode_steps=25, batch_size=16)
    return TrainConfig(**{**base, **kw})


def test_logged_run_content(tiny_dataset_id: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = launch(cfg(tiny_dataset_id), "unit", tmp_path / "run", uri, tags={"baq.cell": "abc"})
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["algo"] == "iql" and params["offline_steps"] == "20" and params["algo_params.temperature"] == "3.0"
    assert tags["baq.status"] == "finished" and tags["baq.cell"] == "abc" and tags["baq.algo"] == "iql"
    assert tags["baq.offline_steps"] == "20" and tags["dataset.env_id"] == "Hopper-v4"
    assert len(tags["dataset.sha256"]) == 64 and len(tags["git.sha"]) in (40, 7) or tags["git.sha"] == "unknown"
    assert tags["version.torch"].startswith("2.")
    scores = client.get_metric_history(result.run_id, "eval/normalized_score")
    assert [m.step for m in scores] == [20, 40]
    assert [m.value for m in scores] == [e["normalized_score"] for e in result.evals]
    assert [m.step for m in client.get_metric_history(result.run_id, "train/critic_loss")] == [10, 20, 30, 40]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.json", "eval.csv", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(result.run_id, "checkpoints")] == ["checkpoints/final.pt"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["run_id"] == result.run_id


def test_crashing_run_ends_failed_with_reason(
    tiny_dataset_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self, batch, critic_weight=None, actor_penalty=None):
        raise FloatingPointError("non-finite train/critic_loss at step 7")

    monkeypatch.setattr(IQL, "update", explode)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(FloatingPointError):
        launch(cfg(tiny_dataset_id), "unit", tmp_path / "run", uri)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["baq.status"] == "failed"
    assert run.data.tags["baq.error"] == "FloatingPointError: non-finite train/critic_loss at step 7"


def test_interrupted_run_continues_the_same_mlflow_run(tiny_dataset_id: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def stop(info: dict) -> None:
        if info["step"] == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(cfg(tiny_dataset_id), "unit", tmp_path / "run", uri, progress=stop)
    result = launch(cfg(tiny_dataset_id), "unit", tmp_path / "run", uri)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert [r.info.run_id for r in runs] == [result.run_id]
    assert runs[0].info.status == "FINISHED"
    history = client.get_metric_history(result.run_id, "eval/normalized_score")
    assert sorted({m.step for m in history}) == [20, 40]
