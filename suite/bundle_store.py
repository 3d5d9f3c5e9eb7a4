"""Between MLflow stores and bundles: `baq export` writes a store's runs as a bundle, `baq import` recreates a
bundle's runs in a store (docs/results.md). No torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.bundle import RunRecord, read_bundle, required_records, select_for_export, write_bundle
from suite.errors import UserError
from suite.tracking import search_all

# MLflow's limits per log_batch call (mlflow.utils.validation: 1000 metrics, 100 params, 100 tags).
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
IMPORTED_FROM = "baq.imported_from"  # the run id the bundle recorded
INCOMPLETE = "baq.import_incomplete"  # set while an import writes the run; a run still carrying it is redone


def export_runs(experiment: str, tracking_uri: str, folder: Path, *, matrix: dict | None = None,
                include_unfinished: bool = False) -> dict[str, int]:
    """Write the runs of `experiment` (one per cell: finished ones, and with `include_unfinished` the rest)
    into the bundle folder. Returns counts: new, updated, unchanged, left_out (unfinished cells)."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        raise UserError(f"no MLflow store at {tracking_uri}; accepted: the store the runs were tracked in "
                        "(--tracking-uri or $MLFLOW_TRACKING_URI)")
    records = required_records(MlflowClient(tracking_uri=tracking_uri), experiment)
    chosen, left_out = select_for_export(records, include_unfinished)
    counts = write_bundle(chosen, folder, matrix)
    return {**counts, "left_out": left_out}


def import_bundle(folders: list[Path], tracking_uri: str) -> dict[str, int]:
    """Recreate the bundle's runs in the store at `tracking_uri`, in the bundle's experiment. A cell the
    experiment already holds is skipped (importing twice adds nothing); each run is written whole or not at
    all. Returns counts: imported, skipped."""
    from mlflow.tracking import MlflowClient

    from suite.tracking import get_or_create_experiment

    bundle = read_bundle(folders)  # every file is checked before anything is written
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = get_or_create_experiment(client, bundle.experiment or "", tracking_uri)
    present = _present_cells(client, experiment_id)
    counts = {"imported": 0, "skipped": 0}
    for record, path in bundle.records:
        if record.cell in present:
            counts["skipped"] += 1
            continue
        try:
            _import_run(client, experiment_id, record)
        except Exception as err:  # the store refused it: the half-written run was deleted
            reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot import {path} into {tracking_uri}: {reason}; nothing of that run was kept "
                            f"({counts['imported']} run(s) before it were imported whole)") from None
        counts["imported"] += 1
    return counts


def _present_cells(client: Any, experiment_id: str) -> set[str]:
    """Cells the experiment holds; runs an interrupted import left half-written are deleted here."""
    cells = set()
    for run in search_all(client, experiment_id):
        if run.data.tags.get(INCOMPLETE) == "true":
            client.delete_run(run.info.run_id)
            continue
        tags = run.data.tags
        cells.add(tags.get("baq.cell") or f"run-{tags.get(IMPORTED_FROM, run.info.run_id)}")
    return cells


def _import_run(client: Any, experiment_id: str, record: RunRecord) -> None:
    from mlflow.entities import Metric, Param

    tags = {**record.tags, IMPORTED_FROM: record.run_id, INCOMPLETE: "true"}
    run_id = client.create_run(experiment_id, start_time=record.start_time, tags=tags,
                               run_name=record.run_name or None).info.run_id
    try:
        params = [Param(k, v) for k, v in record.params.items()]
        for i in range(0, len(params), _MAX_PARAMS):
            client.log_batch(run_id, params=params[i : i + _MAX_PARAMS])
        metrics = [Metric(key, value, record.start_time, step) for key, points in record.metrics.items()
                   for step, value in points]
        for i in range(0, len(metrics), _MAX_METRICS):
            client.log_batch(run_id, metrics=metrics[i : i + _MAX_METRICS])
        # An unfinished run is imported as KILLED: nothing is training it in this store.
        status = record.status if record.status in ("FINISHED", "FAILED", "KILLED") else "KILLED"
        client.set_terminated(run_id, status=status, end_time=record.end_time)
        client.delete_tag(run_id, INCOMPLETE)
    except BaseException:
        client.delete_run(run_id)
        raise
