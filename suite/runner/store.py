"""The runner's questions to the MLflow store: which runs a cell has, which of them finished, and taking a run
out of the matrix. A cell's runs are found by their `baq.cell` tag (the hash of the resolved config)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from suite.tracking import check_tracking_uri, get_or_create_experiment, open_client, search_all


def resolve_tracking_uri(tracking_uri: str | None, results_dir: Path) -> str:
    """`tracking_uri` > $MLFLOW_TRACKING_URI > a sqlite store in `results_dir` (beside the cell dirs)."""
    if tracking_uri:
        return check_tracking_uri(tracking_uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def open_store(uri: str, experiment: str, create: bool = True) -> tuple[Any, str | None]:
    """(client, experiment id), creating both under a file lock for sqlite: MLflow creates and migrates a
    new sqlite file when the client is made, and two processes doing that at once can break it. With
    `create=False` a missing experiment gives None."""
    def connect() -> tuple[Any, str | None]:
        client, resolved = open_client(uri)
        if create:
            return client, get_or_create_experiment(client, experiment, resolved)
        found = client.get_experiment_by_name(experiment)
        return client, found.experiment_id if found else None

    if not uri.startswith("sqlite:///"):
        return connect()
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocking: the other process is done in seconds
        return connect()


def _live(runs: list[Any]) -> list[Any]:
    return [r for r in runs if r.data.tags.get("baq.superseded") != "true"]


def cell_runs(client: Any, experiment_id: str, cell_hash: str) -> list[Any]:
    """The cell's runs that count (not superseded, not deleted)."""
    return _live(search_all(client, experiment_id, f"tags.`baq.cell` = '{cell_hash}'"))


def runs_by_cell(client: Any, experiment_id: str) -> dict[str, list[Any]]:
    """Every cell's runs that count, by cell hash."""
    out: dict[str, list[Any]] = {}
    for run in _live(search_all(client, experiment_id)):
        if "baq.cell" in run.data.tags:
            out.setdefault(run.data.tags["baq.cell"], []).append(run)
    return out


def finished_runs(runs: list[Any]) -> list[Any]:
    """The runs that ended FINISHED: a cell with one is done."""
    return [r for r in runs if r.info.status == "FINISHED"]


def supersede(client: Any, runs: list[Any], reason: str) -> None:
    """Take runs out of the matrix without deleting them: tagged, and no longer shown as running."""
    for run in runs:
        client.set_tag(run.info.run_id, "baq.superseded", "true")
        client.set_tag(run.info.run_id, "baq.superseded_reason", reason)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")


def final_score(run: Any) -> float | None:
    """The last evaluation's normalised score (MLflow keeps the value at the highest step)."""
    return run.data.metrics.get("eval/normalized_score")
