"""Where runs are recorded. The training loop talks only to a `MetricsSink`: MLflow in real runs, an in-memory
sink in tests.

The MLflow sink never lets the store stall or end a run: every record goes to the run's spool on disk first
(suite.spool) and a background thread sends it (suite.delivery), in batches (one `log_batch` per flush, never
one call per step: a single `log_metric` costs ~20 ms on MLflow's sqlite store). A flush waits a few seconds
for the store at most; when the store does not answer, training goes on, the spool keeps everything and the
progress line says that tracking is behind. Only opening a run needs the store: a tracking server that does
not answer then is a one-line error within seconds (`probe_tracking_server`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

from suite import stop
from suite.errors import UserError

DEFAULT_RESULTS_DIR = "results"
# Bounds on every HTTP call MLflow makes for the suite (MLflow reads these variables at each call; a value
# exported by the user wins). MLflow's own defaults (120 s timeout, 7 retries with backoff factor 2) make a
# dead server cost minutes per call. Here a refused connection fails in ~2 s and a server that accepts but
# never answers in ~35 s (3 tries of 10 s plus backoff), always in the sender thread during training: the
# spool makes long retries unnecessary, the sender itself tries again every 1, 2, 4 … 30 s for as long as the
# run lasts.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds per try (connect, and each wait for bytes)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # waits ~0 s, then 2 s between tries
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
PROBE_TIMEOUT_S = 3.0  # the start-up check: connect, then one request without retries
# How long a flush waits for the store (a healthy store takes milliseconds; one that does not answer is
# left to the sender), the run's end waits for the spool to drain, and either waits once a stop was asked for.
FLUSH_WAIT_S, END_WAIT_S, STOP_WAIT_S = 10.0, 60.0, 2.0


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


def open_client(tracking_uri: str | None):
    """(MlflowClient, resolved uri) for `tracking_uri` (None: the default store), a server probed first."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    for name in ("mlflow", "alembic"):  # store-creation chatter would drown the CLI's own output
        logging.getLogger(name).setLevel(logging.WARNING)
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if uri.startswith(("http://", "https://")):
        probe_tracking_server(uri)
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


def search_all(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    """Every active (not deleted) run of the experiment that matches `filter_string`, all result pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def check_store(tracking_uri: str | None) -> None:
    """Fail fast (UserError) when the store that `tracking_uri` (or the default) names is an HTTP server that
    does not answer as MLflow; the commands call it before their slow imports."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        probe_tracking_server(uri)


def probe_tracking_server(uri: str) -> None:
    """A UserError within ~2 × PROBE_TIMEOUT_S unless `uri` answers as an MLflow tracking server: a bounded
    TCP connect (DNS included), then one search request without retries, with MLflow's credentials."""
    from urllib.parse import urlsplit

    from suite.net import tcp_reachable

    parts = urlsplit(uri)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    check = ("check that `mlflow server` runs there and listens on that address and port, or pass another "
             "--tracking-uri / MLFLOW_TRACKING_URI")
    if not tcp_reachable(host, port, PROBE_TIMEOUT_S):
        raise UserError(f"tracking server {uri} cannot be reached: no connection to {host}:{port} (refused, "
                        f"unknown host, or no answer within {PROBE_TIMEOUT_S:.0f} s); {check}")
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    endpoint = "/api/2.0/mlflow/experiments/search"
    try:
        response = http_request(get_default_host_creds(uri), endpoint, "GET", max_retries=0,
                                timeout=PROBE_TIMEOUT_S, raise_on_status=False, params={"max_results": 1})
    except Exception:
        raise UserError(f"tracking server {uri} accepts connections but did not answer within "
                        f"{PROBE_TIMEOUT_S:.0f} s; {check}") from None
    if response.status_code in (401, 403):
        raise UserError(f"tracking server {uri} refused the credentials (HTTP {response.status_code}); set "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        raise UserError(f"{uri} answers, but not as an MLflow tracking server (HTTP {response.status_code} "
                        f"for {endpoint}); check the host, port and path of the URI")


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
    """One MLflow run. Pass `run_id` to continue an existing run (resume after an interruption). Records are
    spooled in `spool_dir` (the run directory; in memory only when None) and delivered in the background."""

    def __init__(
        self,
        experiment: str,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        from mlflow.entities import RunStatus

        from suite.delivery import Sender
        from suite.spool import Spool

        self.client, self.tracking_uri = open_client(tracking_uri)
        created = run_id is None
        if created:
            exp_id = get_or_create_experiment(self.client, experiment, self.tracking_uri)
            run = self.client.create_run(exp_id, run_name=run_name, tags=tags or {})
            run_id = run.info.run_id
        else:  # continuing an interrupted run
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        self.run_id: str | None = run_id
        self.spool = Spool.create(spool_dir, run_id, self.tracking_uri, experiment)
        self.sender = Sender(self.client, self.spool)
        self.flush_seconds = 0.0  # time spent waiting for the store, reported by benchmarks
        if not created and tags:
            self.set_tags(tags)

    def log_params(self, params: dict[str, Any]) -> None:
        self.spool.append({"k": "params", "values": {k: str(v)[:6000] for k, v in params.items()}})
        self.sender.wake()  # rare and small: sent right away, without waiting for them

    def set_tags(self, tags: dict[str, str]) -> None:
        self.spool.append({"k": "tags", "values": {k: str(v)[:5000] for k, v in tags.items()}})
        self.sender.wake()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.spool.append({"k": "metrics", "step": step, "time": int(time.time() * 1000),
                           "values": {k: float(v) for k, v in metrics.items()}})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.spool.append({"k": "artifact", "path": str(Path(path).resolve()), "dir": artifact_path})

    def flush(self) -> None:
        """Everything logged so far is on disk; the store has it too unless it is not answering (then the
        sender keeps trying and `tracking_note` says so)."""
        start = time.perf_counter()
        self.spool.sync_to_disk()
        if self.sender.behind(FLUSH_WAIT_S):
            self.sender.wake()  # already behind: training does not wait for the store
        else:
            self._wait(FLUSH_WAIT_S)
        self.flush_seconds += time.perf_counter() - start

    def end(self, status: str, error: str | None = None) -> None:
        """Record the run's end. When the store cannot take the spool within END_WAIT_S, the spool stays in the
        run directory for the next start or `baq sync` (said on stderr)."""
        tags = {"baq.status": status.lower()}
        if error:
            tags["baq.error"] = error[:5000]
        self.set_tags(tags)
        self.spool.append({"k": "end", "status": status, "time": int(time.time() * 1000)})
        self.spool.sync_to_disk()
        if self._wait(END_WAIT_S):
            self.spool.remove()
            self.sender.stop()
            return
        backlog, reason = self.spool.backlog, self.sender.last_error or "no answer"
        self.sender.stop()
        where = self.spool.path.parent.parent if self.spool.path else None
        print(f"baq: tracking is behind: {backlog} records of MLflow run {self.run_id} not delivered to "
              f"{self.tracking_uri} ({reason})" + (f"; they are kept in {where}, and the next `baq train` or "
              f"`baq run` on it, or `baq sync {where}`, delivers them" if where else ""),
              file=sys.stderr, flush=True)

    def tracking_note(self) -> str | None:
        """None while the store keeps up; else what the progress line shows (records waiting, and why)."""
        if not self.sender.behind(FLUSH_WAIT_S):
            return None
        reason = self.sender.last_error or f"no answer for more than {FLUSH_WAIT_S:.0f} s"
        return f"tracking behind: {self.spool.backlog} records spooled ({reason})"

    def _wait(self, seconds: float) -> bool:
        asked = time.monotonic() if stop.requested() else None

        def give_up() -> bool:
            nonlocal asked
            if asked is None and stop.requested():
                asked = time.monotonic()
            return asked is not None and time.monotonic() - asked > STOP_WAIT_S

        return self.sender.wait(seconds, give_up)


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


def host_info() -> dict[str, str]:
    """The processor model: float results of one config and seed are identical only on one kind of CPU
    (bit-exact runs across kinds are not promised by torch), so a run says which kind made it."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host.cpu": model or platform.processor() or platform.machine() or "unknown"}


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
