"""Where runs are recorded. The training loop talks only to a `MetricsSink`: MLflow in real runs, an in-memory
sink in tests. Metrics are buffered and sent in batches (one `log_batch` per flush, never one call per step:
a single `log_metric` costs ~20 ms on MLflow's sqlite store)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

from suite.errors import UserError

DEFAULT_RESULTS_DIR = "results"
# MLflow's limits per log_batch call (mlflow.utils.validation: 1000 metrics, 100 params, 100 tags).
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100


class MetricsSink(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def flush(self) -> None: ...
    def end(self, status: str, error: str | None = None) -> None: ...


class MemorySink:
    """Keeps everything in dictionaries; used by tests and by `train` when nothing is tracked."""

    def __init__(self) -> None:
        self.run_id: str | None = "memory"
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.artifacts: list[tuple[Path, str | None]] = []
        self.status: str | None = None
        self.error: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics[k].append((step, float(v)))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))

    def flush(self) -> None:
        pass

    def end(self, status: str, error: str | None = None) -> None:
        self.status, self.error = status, error


def default_tracking_uri() -> str:
    """`--tracking-uri` > MLFLOW_TRACKING_URI > a sqlite store under ./results (no server needed)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    results = Path(os.environ.get("BAQ_RESULTS_DIR", DEFAULT_RESULTS_DIR)).resolve()
    results.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{results / 'mlflow.db'}"


def _client(tracking_uri: str | None):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    for name in ("mlflow", "alembic"):  # store-creation chatter would drown the CLI's own output
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri), uri
    # Opening a sqlite store runs MLflow's schema migrations; two processes doing that on a new store at once
    # collide ("duplicate column name"), so parallel workers take turns through a lock file beside the db.
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=uri), uri
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_or_create_experiment(client: Any, name: str, tracking_uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep artifacts beside the local store instead of MLflow's default ./mlartifacts in the cwd.
        root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name
        artifact_location = root.resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class MLflowSink:
    """One MLflow run. Pass `run_id` to continue an existing run (resume after an interruption)."""

    def __init__(
        self,
        experiment: str,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import RunStatus

        self.client, self.tracking_uri = _client(tracking_uri)
        created = run_id is None
        if created:
            exp_id = get_or_create_experiment(self.client, experiment, self.tracking_uri)
            run = self.client.create_run(exp_id, run_name=run_name, tags=tags or {})
            run_id = run.info.run_id
        self.run_id = run_id
        self._pending: list[Any] = []
        self.flush_seconds = 0.0  # time spent in MLflow calls, reported by benchmarks
        if not created:  # continuing an interrupted run
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            if tags:
                self.set_tags(tags)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        existing = self.client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]  # params are immutable: resume re-logs nothing
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_PARAMS])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), _MAX_TAGS):
            self.client.log_batch(self.run_id, tags=items[i : i + _MAX_TAGS])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())

    def flush(self) -> None:
        start = time.perf_counter()
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=pending[i : i + _MAX_METRICS])
        self.flush_seconds += time.perf_counter() - start

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str, error: str | None = None) -> None:
        self.flush()
        tags = {"baq.status": status.lower()}
        if error:
            tags["baq.error"] = error[:5000]
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status=status)


def git_info(path: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the checkout the suite runs from ('unknown' outside git)."""
    cwd = str(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return {"git.sha": sha, "git.dirty": str(bool(dirty)).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git.sha": "unknown", "git.dirty": "unknown"}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("baq-suite", "torch", "numpy", "gymnasium", "mujoco", "minari", "mlflow"):
        try:
            out[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            out[f"version.{pkg}"] = "missing"
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(list(v))
        else:
            out[key] = v
    return out


def check_tracking_uri(uri: str) -> str:
    accepted = ("sqlite:///", "file:", "http://", "https://", "databricks", "postgresql", "mysql")
    if not uri.startswith(accepted) and not Path(uri).is_absolute():
        raise UserError(f"unsupported tracking URI {uri!r}; accepted: sqlite:///PATH, file:PATH, http(s)://HOST")
    return uri
