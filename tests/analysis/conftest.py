"""A real MLflow store in tmp_path and a helper that logs runs the way suite/tracking.py does (the MLflow
conventions of docs/architecture.md): params, `baq.*` tags, eval metric histories with global steps."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient


def safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


@dataclass
class Store:
    uri: str
    client: MlflowClient

    def experiment(self, name: str, tmp_path) -> str:
        # An explicit artifact location: the default would be ./mlruns in the working directory.
        artifacts = (tmp_path / f"artifacts-{safe(name)}").as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    def log_run(self, experiment_id: str, *, algo: str, dataset: str, seed: int, offline_steps: int,
                scores: dict[int, float], status: str = "finished", overrides: dict | None = None,
                error: str | None = None, repeat_steps: tuple[int, ...] = (),
                git_sha: str = "abc1234") -> str:
        """Log one run; `scores` maps global step → normalized score (return = 10 × score here)."""
        run_id = self.client.create_run(experiment_id).info.run_id
        stamp = int(time.time() * 1000)
        metrics = []
        for i, (step, score) in enumerate(sorted(scores.items())):
            metrics += [Metric("eval/normalized_score", score, stamp + i, step),
                        Metric("eval/return", 10.0 * score, stamp + i, step)]
        for step in repeat_steps:  # a resumed run logs the same (key, step) a second time
            metrics.append(Metric("eval/normalized_score", scores[step], stamp + 10_000, step))
        tags = {"baq.algo": algo, "baq.dataset": dataset, "baq.seed": str(seed),
                "baq.offline_steps": str(offline_steps), "baq.status": status,
                "baq.overrides": json.dumps(overrides or {}), "git.sha": git_sha, "git.dirty": "false"}
        if error:
            tags["baq.error"] = error
        params = {"algo": algo, "dataset": dataset, "seed": str(seed), "offline_steps": str(offline_steps)}
        self.client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, "FINISHED" if status == "finished" else "FAILED")
        return run_id


@pytest.fixture(scope="session")
def _empty_store_file(tmp_path_factory) -> Path:
    """Create (migrate) one empty MLflow sqlite database per session: the schema migration takes seconds."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, _empty_store_file) -> Store:
    """A fresh MLflow store of this test's own, in tmp_path (a copy of the migrated empty database)."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_store_file, path)
    uri = f"sqlite:///{path}"
    return Store(uri, MlflowClient(tracking_uri=uri))


@pytest.fixture
def curve():
    """The `make_curve` helper, as a fixture so that test modules need not import conftest."""
    return make_curve


@pytest.fixture
def synthetic_runs():
    """The `make_synthetic_runs` helper, as a fixture."""
    return make_synthetic_runs


def make_curve(offline_steps: int, online_steps: int, offline_end: float, online_end: float,
          every: int) -> dict[int, float]:
    """Eval scores rising linearly to `offline_end` at the switch, then to `online_end` at the last step."""
    scores = {}
    for step in range(0, offline_steps + online_steps + 1, every):
        if step <= offline_steps:
            scores[step] = offline_end * step / offline_steps
        else:
            scores[step] = offline_end + (online_end - offline_end) * (step - offline_steps) / online_steps
    return scores


def make_synthetic_runs(records: list[dict], offline_steps: int = 100, online_steps: int = 100):
    """LoadedRuns built in memory (no MLflow): each record gives algo, dataset, seed, offline, online and
    optionally status, overrides, error. Evals at 0, the switch and the end, ending at the given scores."""
    import pandas as pd

    from analysis.runs import RUN_COLUMNS, SCORE_COLUMNS, LoadedRuns

    keys = sorted({k for r in records for k in r.get("overrides", {})})
    run_rows, score_rows = [], []
    for i, rec in enumerate(records):
        run_id = f"run{i:03d}"
        identity = {"run_id": run_id, "algorithm": rec["algo"], "dataset": rec["dataset"],
                    "seed": rec["seed"]}
        overrides = rec.get("overrides", {})
        steps = {0: 0.0, offline_steps: rec["offline"], offline_steps + online_steps: rec["online"]}
        for step, score in steps.items():
            phase = "offline" if step <= offline_steps else "online"
            score_rows.append({**identity, "step": step, "phase": phase, "return": 10 * score,
                               "normalized_score": score, **overrides})
        run_rows.append({**identity, "status": rec.get("status", "finished"), "offline_steps": offline_steps,
                         "overrides": json.dumps(overrides), "git_sha": "abc", "git_dirty": "false",
                         "error": rec.get("error", ""), "n_evals": 3, "start_time": i, **overrides})
    runs = pd.DataFrame(run_rows).reindex(columns=RUN_COLUMNS + keys)
    scores = pd.DataFrame(score_rows).reindex(columns=SCORE_COLUMNS + keys)
    return LoadedRuns("synthetic", runs, scores, keys, [])
