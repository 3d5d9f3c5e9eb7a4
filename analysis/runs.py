"""Read the runs of one MLflow experiment into tidy frames (MLflow conventions: docs/architecture.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from suite.bundle import RunRecord, required_records
from suite.errors import UserError
from suite.states import recorded_state

SCORE_KEY = "eval/normalized_score"
RETURN_KEY = "eval/return"
# Keys of an override that say which cell a run is, not which variant of an algorithm: never a sweep axis.
CELL_KEYS = {"algo", "dataset", "seed"}
RUN_COLUMNS = ["run_id", "algorithm", "dataset", "seed", "status", "offline_steps", "overrides", "git_sha",
               "git_dirty", "host_cpu", "error", "n_evals", "start_time"]
SCORE_COLUMNS = ["run_id", "algorithm", "dataset", "seed", "step", "phase", "return", "normalized_score"]



@dataclass
class LoadedRuns:
    """Everything read from one experiment: one row per run, one row per (run, eval step)."""

    experiment: str
    runs: pd.DataFrame
    scores: pd.DataFrame
    override_keys: list[str]
    warnings: list[str] = field(default_factory=list)


def override_column(key: str) -> str:
    """Column of an override key: an override named like a standard column (e.g. `offline_steps`) gets a
    prefix rather than clobbering it."""
    return f"override.{key}" if key in RUN_COLUMNS or key in SCORE_COLUMNS else key


def flatten_overrides(overrides: dict, prefix: str = "") -> dict[str, object]:
    """Flatten nested override dicts into dotted keys; lists become JSON text so that they fit a CSV cell."""
    flat: dict[str, object] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_overrides(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return {k: v for k, v in flat.items() if k not in CELL_KEYS}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def load_runs(experiment: str, tracking_uri: str | None) -> LoadedRuns:
    """Read every active run of `experiment` in an MLflow store with its eval histories."""
    return runs_from_records(experiment, required_records(MlflowClient(tracking_uri=tracking_uri), experiment))


def _history(record: RunRecord, key: str) -> pd.Series:
    points = record.metrics.get(key, ())
    return pd.Series([v for _, v in points], index=pd.Index([s for s, _ in points], dtype="int64"),
                     dtype=float, name=key)


def runs_from_records(experiment: str, records: list[RunRecord]) -> LoadedRuns:
    """Tidy frames from run records (a store's or a bundle's, in their order); runs not by the suite are
    skipped with a warning."""
    warnings: list[str] = []
    run_rows, score_frames = [], []
    for record in records:
        tags, params, run_id = record.tags, record.params, record.run_id
        algorithm = tags.get("baq.algo", params.get("algo"))
        dataset = tags.get("baq.dataset", params.get("dataset"))
        seed = _int_or_none(tags.get("baq.seed", params.get("seed")))
        offline_steps = _int_or_none(tags.get("baq.offline_steps", params.get("offline_steps")))
        if algorithm is None or dataset is None or seed is None or offline_steps is None:
            warnings.append(f"run {run_id} skipped: it lacks the baq.algo/baq.dataset/baq.seed/"
                            "baq.offline_steps tags, so it was not recorded by the suite")
            continue
        try:
            overrides = flatten_overrides(json.loads(tags.get("baq.overrides") or "{}"))
        except (json.JSONDecodeError, AttributeError):
            warnings.append(f"run {run_id}: tag baq.overrides is not a JSON object; read as no overrides")
            overrides = {}
        scores = _history(record, SCORE_KEY)
        returns = _history(record, RETURN_KEY)
        history = pd.concat([returns.rename("return"), scores.rename("normalized_score")], axis=1)
        history = history.rename_axis("step").reset_index().sort_values("step")
        history["step"] = history["step"].astype(int)
        identity = {"run_id": run_id, "algorithm": algorithm.lower(), "dataset": dataset, "seed": seed}
        if len(history):
            history = history.assign(**identity)
            history["phase"] = np.where(history["step"] <= offline_steps, "offline", "online")
            score_frames.append((history, overrides))
        run_rows.append(({**identity, "status": recorded_state(record.status, tags.get("baq.status")),
                          "offline_steps": offline_steps,
                          "overrides": json.dumps(overrides, sort_keys=True),
                          "git_sha": tags.get("git.sha", ""),
                          "git_dirty": tags.get("git.dirty", ""), "host_cpu": tags.get("host.cpu", ""),
                          "error": tags.get("baq.error", ""),
                          "n_evals": int(history["normalized_score"].notna().sum()),
                          "start_time": record.start_time}, overrides))
    if not run_rows:
        raise UserError(f"experiment {experiment!r} has no runs recorded by the suite (tags baq.algo, "
                        "baq.dataset, baq.seed, baq.offline_steps)")
    keys = sorted({k for _, overrides in run_rows for k in overrides})
    column_of = {k: override_column(k) for k in keys}
    override_keys = [column_of[k] for k in keys]

    def _with_overrides(row: dict, overrides: dict) -> dict:
        return {**row, **{column_of[k]: v for k, v in overrides.items()}}

    runs = pd.DataFrame([_with_overrides(r, o) for r, o in run_rows])
    runs = runs.reindex(columns=RUN_COLUMNS + override_keys)
    columns = SCORE_COLUMNS + override_keys
    scores = (pd.concat([h.assign(**{column_of[k]: v for k, v in o.items()}) for h, o in score_frames],
                        ignore_index=True).reindex(columns=columns) if score_frames
              else pd.DataFrame(columns=columns))
    scores = scores.sort_values(["algorithm", "dataset", "seed", "run_id", "step"], kind="stable")
    return LoadedRuns(experiment, runs.reset_index(drop=True), scores.reset_index(drop=True), override_keys,
                      warnings)
