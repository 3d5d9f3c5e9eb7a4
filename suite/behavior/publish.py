"""From a finished SAC run to behaviour files, and the run as one MLflow run (`baq behavior train`)."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from suite.behavior import files, snapshots
from suite.behavior.trainer import BehaviorConfig, BehaviorResult, Progress, evaluate_arrays, train_behavior
from suite.checkpoint import atomic_write_text
from suite.tracking import MLflowSink, default_tracking_uri, git_info, package_versions

# Bump when the trainer makes different files from the same config (it is recorded in every task entry).
TRAINER_VERSION = "1"
TRAINER = "baq-suite SAC (suite/behavior)"
RUN_FILE = "run.json"


def default_run_dir(cfg: BehaviorConfig) -> Path:
    results = Path(os.environ.get("BAQ_RESULTS_DIR", "results"))
    return results / "behavior" / f"{files.task_key(cfg.env_id)}-s{cfg.seed}-n{cfg.steps}"


def _returns(values: np.ndarray) -> dict[str, float | int]:
    return {"mean": float(values.mean()), "std": float(values.std()), "episodes": int(len(values))}


def write_behavior_files(result: BehaviorResult, out: Path) -> dict[str, Any]:
    """Pick the expert and medium snapshots and write their policy files, the medium-replay stream and the
    task's index.json entry into `out`. Returns the entry."""
    cfg = result.config
    key = files.task_key(cfg.env_id)
    means = [float(s.returns.mean()) for s in result.snapshots]
    random_return = float(result.random_returns.mean())
    expert = result.snapshots[snapshots.expert_index(means)]
    medium = result.snapshots[snapshots.medium_index(means, random_return)]
    low, high, ref_source = files.reference_scores(key, random_return, float(expert.returns.mean()))
    origin = f"{TRAINER} v{TRAINER_VERSION} seed {cfg.seed}"
    written: dict[str, tuple[bytes, dict]] = {}
    for quality, snap in (("medium", medium), ("expert", expert)):
        deterministic = evaluate_arrays(cfg, snap.arrays, cfg.eval_episodes, salt=snap.step, stochastic=False)
        facts = {"kind": "policy", "quality": quality, "source": f"{origin}, step {snap.step}",
                 "return_deterministic": _returns(deterministic), "return_stochastic": _returns(snap.returns),
                 "normalized_stochastic": 100.0 * (float(snap.returns.mean()) - low) / (high - low)}
        written[f"{quality}_policy.npz"] = (files.npz_bytes(snap.arrays), facts)
    stream = {k: v[: medium.step].copy() for k, v in result.stream.items()}
    stream["timeouts"][-1] = stream["timeouts"][-1] or not stream["terminals"][-1]  # the cut episode
    written["medium_replay.npz"] = (files.npz_bytes(stream), {
        "kind": "transitions", "quality": "medium-replay", "source": f"{origin}, steps 0-{medium.step}",
        **files.stream_facts(stream)})
    entry = {
        "env_id": cfg.env_id, "ref_min_score": low, "ref_max_score": high, "ref_scores": ref_source,
        "random_return": _returns(result.random_returns),
        "trainer": {"name": TRAINER, "version": TRAINER_VERSION, "config": cfg.as_dict(),
                    "medium_rule": snapshots.MEDIUM_RULE, "medium_step": medium.step, "expert_step": expert.step,
                    "evaluations": [[s.step, float(s.returns.mean()), float(s.returns.std())]
                                    for s in result.snapshots],
                    "mlflow_run": result.run_id},
    }
    return files.write_task(out, key, entry, written)


def _open_sink(cfg: BehaviorConfig, run_dir: Path, experiment: str, tracking_uri: str | None) -> MLflowSink:
    """The MLflow run recorded in `run_dir/run.json` (same store), else a new one."""
    uri = tracking_uri or default_tracking_uri()
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / RUN_FILE
    run_id = None
    if record.exists():
        saved = json.loads(record.read_text())
        run_id = saved.get("run_id") if saved.get("tracking_uri") == uri else None
    tags = {"baq.algo": "sac", "baq.env_id": cfg.env_id, "baq.seed": str(cfg.seed), "baq.steps": str(cfg.steps),
            "baq.status": "running", "baq.kind": "behavior", **git_info(), **package_versions()}
    sink = MLflowSink(experiment, run_name=f"sac-{files.task_key(cfg.env_id)}-s{cfg.seed}", tracking_uri=uri,
                      run_id=run_id, tags=tags)
    atomic_write_text(record, json.dumps({"run_id": sink.run_id, "tracking_uri": uri, "experiment": experiment}))
    return sink


def launch_behavior(cfg: BehaviorConfig, out: Path, run_dir: Path, experiment: str = "behavior",
                    tracking_uri: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Train (or resume) in `run_dir` as one MLflow run, write the behaviour files into `out`, return the
    task's index entry. A failure or a stop ends the MLflow run FAILED or KILLED and is re-raised."""
    sink = _open_sink(cfg.validate(), run_dir, experiment, tracking_uri)
    try:
        result = train_behavior(cfg, sink, run_dir, progress)
        entry = write_behavior_files(result, out)
        sink.set_tags({"behavior.out": str(out), "behavior.medium_step": str(entry["trainer"]["medium_step"]),
                       "behavior.expert_step": str(entry["trainer"]["expert_step"])})
        entry_file = run_dir / "index_entry.json"
        atomic_write_text(entry_file, json.dumps(entry, indent=1, sort_keys=True) + "\n")
        sink.log_artifact(entry_file)
    except BaseException as exc:
        try:
            sink.set_tags({"baq.traceback": traceback.format_exc()[-4000:]})
            sink.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", f"{type(exc).__name__}: {exc}")
        except Exception:
            pass  # the store itself may be what failed; the original error matters more
        raise
    sink.end("FINISHED")
    return entry
