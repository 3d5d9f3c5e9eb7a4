"""Run one training as one MLflow run: create or continue the run, tag it, end it FINISHED or FAILED.

The CLI's `baq train` and the matrix runner both come through here, so every run is recorded the same way.
Opening the run is the one moment the tracking store must answer (and a stop request interrupts it at once);
after that the run's records are spooled in its directory and delivered in the background (suite.tracking).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from suite import stop
from suite.files import atomic_write_text
from suite.sync import deliver_before_training
from suite.tracking import MLflowSink, default_tracking_uri, git_info, host_info, package_versions
from suite.train import Progress, TrainConfig, TrainResult, train

RUN_FILE = "run.json"


def run_tags(cfg: TrainConfig) -> dict[str, str]:
    return {
        "baq.algo": cfg.algo, "baq.dataset": cfg.dataset, "baq.seed": str(cfg.seed),
        "baq.offline_steps": str(cfg.offline_steps), "baq.online_steps": str(cfg.online_steps),
        "baq.status": "running",
        "device": cfg.device if cfg.device != "cpu" else f"cpu ({torch.get_num_threads()} thread)",
        **git_info(), **host_info(), **package_versions(),
    }


def launch(
    cfg: TrainConfig,
    experiment: str,
    run_dir: Path,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    run_id: str | None = None,
) -> TrainResult:
    """Train `cfg` in `run_dir`, resuming the run recorded there if it was interrupted. Exceptions end the
    MLflow run as FAILED with the reason in the `baq.error` tag, and are re-raised.

    `run_id` continues that MLflow run instead of the one in run.json (the matrix runner finds a cell's run
    by its tag, which also covers a runner killed between creating the run and writing run.json)."""
    cfg.validate()
    with stop.interruptible():
        sink = open_run(cfg, experiment, run_dir, tracking_uri, tags, run_id)
    try:
        result = train(cfg, sink, run_dir, with_tracking_note(progress, sink))
    except BaseException as exc:
        _end_failed(sink, exc)
        raise
    sink.end("FINISHED")
    return result


def launch_vectorized(
    cfgs: list[TrainConfig],
    experiment: str,
    run_dirs: list[Path],
    tracking_uri: str | None = None,
    tags: list[dict[str, str]] | None = None,
    progress: list[Callable[[dict[str, Any]], None] | None] | None = None,
    run_ids: list[str | None] | None = None,
) -> list[TrainResult]:
    """`launch` for seeds trained as one batched network (suite.vectorize): one MLflow run and one run
    directory per seed, recorded exactly as separate runs (plus the tag `baq.vectorized_seeds`); an exception
    fails every seed's run. `tags`, `progress` and `run_ids` are per seed."""
    from suite.vectorize import check_vectorizable_config, train_vectorized

    n = len(cfgs)
    for cfg in cfgs:
        cfg.validate()
    check_vectorizable_config(cfgs[0])  # before any MLflow run exists
    tags, progress, run_ids = tags or [{}] * n, progress or [None] * n, run_ids or [None] * n
    sinks: list[MLflowSink] = []
    try:
        with stop.interruptible():
            for cfg, run_dir, extra, run_id in zip(cfgs, run_dirs, tags, run_ids, strict=True):
                sinks.append(open_run(cfg, experiment, run_dir, tracking_uri,
                                      {**extra, "baq.vectorized_seeds": str(n)}, run_id))
        progress = [with_tracking_note(p, sink) for p, sink in zip(progress, sinks, strict=True)]
        results = train_vectorized(cfgs, sinks, run_dirs, progress)
    except BaseException as exc:
        for sink in sinks:
            _end_failed(sink, exc)
        raise
    for sink in sinks:
        sink.end("FINISHED")
    return results


def open_run(
    cfg: TrainConfig, experiment: str, run_dir: Path, tracking_uri: str | None = None,
    tags: dict[str, str] | None = None, run_id: str | None = None,
) -> MLflowSink:
    """The MLflow run of `run_dir`: the one recorded in its run.json (same store) or a new one. Records an
    earlier start left spooled there are delivered first."""
    uri = tracking_uri or default_tracking_uri()
    run_dir.mkdir(parents=True, exist_ok=True)
    deliver_before_training(run_dir, uri)
    record = run_dir / RUN_FILE
    if run_id is None and record.exists():
        saved = json.loads(record.read_text())
        if saved.get("tracking_uri") == uri:
            run_id = saved["run_id"]
    all_tags = {**run_tags(cfg), **(tags or {})}
    name = f"{cfg.algo}-{cfg.dataset.split(':', 1)[-1].replace('/', '-')}-s{cfg.seed}"
    sink = MLflowSink(experiment, run_name=name, tracking_uri=uri, run_id=run_id, tags=all_tags,
                      spool_dir=run_dir)
    if run_id is not None:
        _clear_stale_tags(sink, all_tags)
    atomic_write_text(record, json.dumps({"run_id": sink.run_id, "tracking_uri": uri,
                                          "experiment": experiment}))
    return sink


def with_tracking_note(progress: Progress | None, sink: MLflowSink) -> Progress | None:
    """`progress` with the sink's `tracking` note added (None while the store keeps up)."""
    if progress is None:
        return None
    return lambda info: progress({**info, "tracking": sink.tracking_note()})


def _end_failed(sink: MLflowSink, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    try:
        sink.set_tags({"baq.traceback": traceback.format_exc()[-4000:]})
        sink.end("FAILED" if not isinstance(exc, KeyboardInterrupt) else "KILLED", reason)
    except Exception:
        pass  # the store itself may be what failed; the original error matters more


def _clear_stale_tags(sink: MLflowSink, current: dict[str, str]) -> None:
    """A continued run that had failed is running again: its old error no longer describes it; nor does
    `baq.vectorized_seeds` when it now trains alone."""
    tags = sink.client.get_run(sink.run_id).data.tags
    for key in ("baq.error", "baq.traceback", "baq.vectorized_seeds"):
        if key in tags and key not in current:
            sink.client.delete_tag(sink.run_id, key)
