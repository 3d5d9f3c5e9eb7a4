"""`baq run FILE`: train every cell of a matrix, in parallel processes or on a Ray cluster, resumably.

Contract (docs/runner.md):
- one cell = one MLflow run in the experiment named after the matrix, tagged `baq.cell` (hash of the
  resolved config), `baq.matrix`, `baq.overrides`; working dir `<results>/<matrix>/cells/<hash>/`.
- a rerun skips cells with a FINISHED run and continues an unfinished cell's own run from its checkpoint.
  The run is found by its `baq.cell` tag, so a runner killed between creating a run and recording it in
  run.json does not leave a second run behind. `force` starts new runs and tags the old ones superseded.
- a worker trains a cell only while it holds the cell's lock (flock on `<cell dir>/.lock`), and decides
  what to do (skip / continue / start) only after taking it: two runners never train one cell twice.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import multiprocessing as mp
import os
import queue as queue_module
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import spool, stop
from suite.bundle import bundle_folder, finished_in_bundle
from suite.errors import UserError
from suite.launch import RUN_FILE, launch
from suite.matrix import Cell, Matrix, format_dry_run, format_table
from suite.progress import ELSEWHERE, FAILED, FINISHED, INTERRUPTED, ProgressBoard
from suite.tracking import _client, check_tracking_uri, get_or_create_experiment
from suite.train import CHECKPOINT

__all__ = ["run_matrix", "print_dry_run", "matrix_status", "execute_cell", "CellJob", "CellLock"]
BACKENDS = ("local", "ray")
LOCK_FILE = ".lock"
RAY_INSTALL_HINT = "the ray backend needs Ray: pip install 'baq-suite[ray]' (or pip install 'ray[default]')"
Report = Callable[[str, dict[str, Any]], None]
# How long a stopping runner waits for its workers to checkpoint: the step in progress plus, at worst, an
# evaluation (10 episodes of 1000 env steps) and the checkpoint write. Past it they are killed.
STOP_GRACE_S = 120.0


@dataclass(frozen=True)
class CellJob:
    """Everything a worker process needs to train one cell (picklable)."""

    cell: Cell
    matrix: str
    cell_dir: str
    tracking_uri: str
    force: bool = False


# A job is one cell or a suite.seed_groups.SeedGroupJob (cells identical but for the seed).
Job = Any


def job_hashes(job: Job) -> list[str]:
    return [job.cell.hash] if isinstance(job, CellJob) else job.hashes


def job_device(job: Job) -> str:
    return job.cell.config.device if isinstance(job, CellJob) else job.device


def execute_job(job: Job, report: Callable[[str, dict[str, Any], str], None]) -> dict[str, dict[str, Any]]:
    """The outcome of every cell of `job`, by cell hash; lock or store trouble becomes a FAILED outcome, a
    stop request (suite.stop) an INTERRUPTED one."""
    if stop.requested():
        return {h: {"status": INTERRUPTED, "detail": "not started: stop requested"} for h in job_hashes(job)}
    try:
        if isinstance(job, CellJob):
            h = job.cell.hash
            return {h: execute_cell(job, lambda kind, payload: report(kind, payload, h))}
        from suite.seed_groups import execute_seed_group

        return execute_seed_group(job, report)
    except stop.StopRequested as request:  # launch() has ended the run as KILLED; the checkpoint is saved
        return {h: {"status": INTERRUPTED, "detail": str(request)} for h in job_hashes(job)}
    except KeyboardInterrupt:  # a stop request while the cell was being set up (suite.stop.interruptible)
        if not stop.requested():
            raise
        return {h: {"status": INTERRUPTED, "detail": "stopped on request before training"}
                for h in job_hashes(job)}
    except Exception as exc:  # still tell the runner why
        return {h: {"status": FAILED, "error": one_line(exc)} for h in job_hashes(job)}


class CellLock:
    """Non-blocking exclusive flock on a cell's lock file, held while the cell trains. The kernel drops it
    when the holder dies, so a killed runner never leaves a stale lock. The file names the holder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    @contextlib.contextmanager
    def held(self) -> Iterator[bool]:
        try:
            yield self.acquire()
        finally:
            self.release()


def execute_cell(job: CellJob, report: Report) -> dict[str, Any]:
    """Train one cell if nobody else is and it is not finished. Returns the outcome: status (finished /
    failed / elsewhere), plus score, run_id, error or detail. Training errors become a FAILED outcome."""
    lock = CellLock(Path(job.cell_dir) / LOCK_FILE)
    with lock.held() as acquired:
        if not acquired:
            return {"status": ELSEWHERE, "detail": f"locked by {lock.holder()}"}
        outcome, run_id = prepare_cell(job, report)
        return outcome if outcome is not None else train_cell(job, run_id, report)


def train_cell(job: CellJob, run_id: str | None, report: Report) -> dict[str, Any]:
    """With the cell's lock held and `prepare_cell` done: train it alone; training errors become FAILED."""
    try:
        result = launch(job.cell.config, job.matrix, Path(job.cell_dir), job.tracking_uri,
                        tags=cell_tags(job), progress=lambda info: report("progress", info), run_id=run_id)
    except Exception as exc:  # launch() has already marked the run FAILED with the full reason
        return {"status": FAILED, "error": one_line(exc), "run_id": run_id}
    outcome = finished_outcome(result)
    behind, _ = spool.pending(Path(job.cell_dir))
    if behind:
        outcome["detail"] = tracking_behind(behind)
    return outcome


def tracking_behind(records: int) -> str:
    return f"tracking behind: {records} records spooled; the next `baq run` or `baq sync` delivers them"


def prepare_cell(job: CellJob, report: Report) -> tuple[dict[str, Any] | None, str | None]:
    """With the cell's lock held: (outcome, None) when there is nothing to train (already finished), else
    (None, the MLflow run to continue or None for a new one), after reporting the start."""
    cell, run_dir, uri = job.cell, Path(job.cell_dir), job.tracking_uri
    behind, end = spool.pending(run_dir)
    if end == "FINISHED" and not job.force:  # finished here while the store was away
        return {"status": FINISHED, "detail": f"already finished; {tracking_behind(behind)}"}, None
    with stop.interruptible():  # store calls that may wait on the network: a stop request ends them at once
        client, experiment_id = open_store(uri, job.matrix)
        runs = cell_runs(client, experiment_id, cell.hash)
        if job.force and runs:
            supersede(client, runs, "rerun with --force")
            runs = []
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:
            return {"status": FINISHED, "run_id": done[0].info.run_id, "score": final_score(done[0]),
                    "detail": "already finished"}, None
        run_id = _continuable_run(client, runs, run_dir, uri)
    if run_id is None:
        # A new run must start from step 0: a checkpoint here belongs to a run that is gone or superseded.
        for name in (CHECKPOINT, RUN_FILE):
            (run_dir / name).unlink(missing_ok=True)
    resuming = run_id is not None and (run_dir / CHECKPOINT).exists()
    report("start", {"detail": "resuming from checkpoint" if resuming else
                     "continuing its run" if run_id else "", "run_id": run_id})
    return None, run_id


def cell_tags(job: CellJob) -> dict[str, str]:
    return {"baq.cell": job.cell.hash, "baq.matrix": job.matrix, "baq.overrides": job.cell.overrides_json}


def finished_outcome(result: Any) -> dict[str, Any]:
    score = result.online_score if result.online_score is not None else result.offline_score
    return {"status": FINISHED, "run_id": result.run_id, "score": score}


def _continuable_run(client: Any, runs: list[Any], run_dir: Path, uri: str) -> str | None:
    """The unfinished run to continue: run.json's if it is still one of the cell's runs, else the newest.
    Extra unfinished runs (left by an older, lock-less version or a manual copy) are superseded."""
    if not runs:
        return None
    chosen = max(runs, key=lambda r: r.info.start_time or 0)
    record = run_dir / RUN_FILE
    if record.exists():
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError):
            saved = {}
        by_id = {r.info.run_id: r for r in runs}
        if saved.get("tracking_uri") == uri and saved.get("run_id") in by_id:
            chosen = by_id[saved["run_id"]]
    extras = [r for r in runs if r.info.run_id != chosen.info.run_id]
    if extras:
        supersede(client, extras, f"duplicate of {chosen.info.run_id}")
    return chosen.info.run_id


# --- where cells live -------------------------------------------------------------------------------------
def cell_dir(results_dir: Path, matrix_name: str, cell_hash: str) -> Path:
    return Path(results_dir) / matrix_name / "cells" / cell_hash


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
        client, resolved = _client(uri)
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
    return _live(_search(client, experiment_id, f"tags.`baq.cell` = '{cell_hash}'"))


def runs_by_cell(client: Any, experiment_id: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for run in _live(_search(client, experiment_id, "")):
        if "baq.cell" in run.data.tags:
            out.setdefault(run.data.tags["baq.cell"], []).append(run)
    return out


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


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


# --- worker processes -------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this worker when the runner dies (kill -9 included), so no orphan keeps
    training and holding the cell lock. The checkpoint makes the lost work small."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)


def _worker_loop(jobs: Any, events: Any, parent_pid: int, threads: int) -> None:
    """A worker process: trains the cells the runner sends, one at a time, until it gets None. Workers live
    for the whole matrix because a fresh process pays seconds of imports (torch, MLflow) per cell."""
    _die_with_parent(parent_pid)
    import torch

    # Parallelism comes from processes (one thread each by default); `threads` > 1 is for matmul-bound cells
    # when there are fewer cells than cores (run_matrix).
    torch.set_num_threads(threads)
    # SIGINT/SIGTERM (Ctrl-C reaches the workers too; a stopping runner forwards SIGINT) finish the step,
    # checkpoint and end the cell as interrupted. Repeats change nothing: the runner terminates stragglers.
    with stop.graceful(force_on_repeat=False):
        while not stop.requested():
            try:
                job = jobs.recv()
            except EOFError:  # the runner is gone
                return
            if job is None:
                return

            def report(kind: str, payload: dict[str, Any], cell_hash: str) -> None:
                events.put((kind, cell_hash, payload))

            for cell_hash, outcome in execute_job(job, report).items():
                events.put(("done", cell_hash, outcome))


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, short enough for a table cell; MLflow keeps the full text."""
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Worker:
    def __init__(self, ctx: Any, events: Any, threads: int) -> None:
        receive, self.send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_worker_loop, args=(receive, events, os.getpid(), threads),
                                daemon=True, name="baq-cell-worker")
        self.proc.start()
        receive.close()  # the child holds its own copy; closing ours lets it see EOF if we die
        self.cells: set[str] = set()  # the cells of its job not reported done yet

    def assign(self, job: Job) -> None:
        self.cells = set(job_hashes(job))
        self.send.send(job)

    def stop(self) -> None:
        if self.send.closed:
            return
        with contextlib.suppress(OSError):
            self.send.send(None)
        self.send.close()


def _handle(event: tuple[str, str, dict[str, Any]], board: ProgressBoard, done: set[str]) -> None:
    kind, cell_hash, payload = event
    if kind == "start":
        board.started(cell_hash, payload)
    elif kind == "progress":
        board.progress(cell_hash, payload)
    elif kind == "done" and cell_hash not in done:
        done.add(cell_hash)
        board.finished(cell_hash, payload)


def _drain(events: Any, board: ProgressBoard, done: set[str], wait_s: float) -> None:
    try:
        event = events.get(timeout=wait_s)
        while True:
            _handle(event, board, done)
            event = events.get_nowait()
    except queue_module.Empty:
        pass


def _run_local(jobs: list[Job], workers: int, board: ProgressBoard, threads: int = 1) -> None:
    """`workers` processes of `threads` torch threads, each given one cell at a time. A worker that dies
    without reporting (segfault, OOM kill) fails only the cell it held and is replaced."""
    ctx = mp.get_context("spawn")  # fork would copy the runner's threads and any CUDA state
    events = ctx.Queue()
    pending, done = deque(jobs), set()
    pool: list[Any] = [_Worker(ctx, events, threads) for _ in range(workers)]
    try:
        while pending or any(w.cells for w in pool):
            for w in pool:
                if not w.cells and pending:
                    w.assign(pending.popleft())
            _drain(events, board, done, wait_s=0.2)
            for i, w in enumerate(pool):
                w.cells -= done
                if w.proc.is_alive():
                    continue
                if w.cells:
                    _drain(events, board, done, wait_s=0.5)  # its last messages may still be in the pipe
                    w.cells -= done
                for cell_hash in sorted(w.cells):
                    done.add(cell_hash)
                    board.finished(cell_hash, {"status": FAILED,
                                               "error": f"worker process died (exit code {w.proc.exitcode})"})
                w.cells = set()
                w.proc.join()
                w.send.close()
                pool[i] = _Worker(ctx, events, threads) if pending else None
            pool = [w for w in pool if w is not None]
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a SIGINT or SIGTERM sent to the runner alone is passed
        # on. Each busy worker checkpoints the step it is in and reports its cell interrupted; idle ones exit.
        for w in pool:
            w.stop()
            if w.proc.is_alive() and w.proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(w.proc.is_alive() for w in pool) and time.monotonic() < deadline:
            _drain(events, board, done, wait_s=0.2)
        _drain(events, board, done, wait_s=0.2)
        raise
    finally:
        for w in pool:
            w.stop()
        _wait(pool, 10.0)
        for w in pool:
            if w.proc.is_alive():
                w.proc.kill()  # SIGKILL: a SIGTERM would only ask it to stop after its step (suite.stop)


def _wait(pool: list[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for w in pool:
        w.proc.join(timeout=max(0.0, deadline - time.monotonic()))


def _ray_job(job: Job, events: Any, threads: int = 1) -> dict[str, dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)

    def report(kind: str, payload: dict[str, Any], cell_hash: str) -> None:
        with contextlib.suppress(Exception):  # a full or gone queue must not fail the cell
            events.put_nowait((kind, cell_hash, payload))

    with stop.graceful(force_on_repeat=False):  # ray.cancel() interrupts a task with SIGINT
        return execute_job(job, report)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL_HINT) from None
    return ray


def _run_ray(jobs: list[Job], workers: int | None, address: str | None, board: ProgressBoard,
             threads: int = 1) -> None:
    """The same cells as Ray tasks (`threads` CPUs each, 1 GPU for cuda cells). Needs the suite installed, the
    datasets and the tracking store reachable on every node (docs/runner.md)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    # ray.init makes SIGTERM exit the driver on the spot; here it stops the cells cleanly (below).
    with stop.sigterm_as_interrupt():
        _drive_ray(ray, jobs, workers, board, threads, started_here)


def _drive_ray(ray: Any, jobs: list[Job], workers: int | None, board: ProgressBoard, threads: int,
               started_here: bool) -> None:
    from ray.util.queue import Queue

    events = Queue()
    task = ray.remote(_ray_job)
    pending, in_flight, done = deque(jobs), {}, set()
    limit = workers or len(jobs) or 1
    try:
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                job = pending.popleft()
                gpus = 1 if job_device(job).startswith("cuda") else 0
                in_flight[task.options(num_cpus=threads, num_gpus=gpus).remote(job, events, threads)] = job
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)
            _drain_ray(events, board, done)
            for ref in ready:
                job = in_flight.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as exc:  # the task's process died or Ray lost it
                    failed = {"status": FAILED, "error": "ray task failed: " + one_line(exc)}
                    outcomes = {h: failed for h in job_hashes(job)}
                _drain_ray(events, board, done)
                for cell_hash, outcome in outcomes.items():
                    _handle(("done", cell_hash, outcome), board, done)
    except KeyboardInterrupt:
        # A plain cancel interrupts each task's main thread, which its stop handler turns into a checkpoint at
        # the step in progress; the tasks then return their cells as interrupted.
        for ref in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)
        deadline = time.monotonic() + STOP_GRACE_S
        while in_flight and time.monotonic() < deadline:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in ready:
                in_flight.pop(ref)
                with contextlib.suppress(Exception):
                    for cell_hash, outcome in ray.get(ref).items():
                        _handle(("done", cell_hash, outcome), board, done)
        with contextlib.suppress(Exception):
            _drain_ray(events, board, done)
        raise
    finally:
        for ref in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            ray.kill(events.actor)
        if started_here:
            ray.shutdown()


def _drain_ray(events: Any, board: ProgressBoard, done: set[str]) -> None:
    size = events.qsize()
    if size:
        for event in events.get_nowait_batch(size):
            _handle(event, board, done)


# --- the entry point --------------------------------------------------------------------------------------
def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_matrix(
    matrix: Matrix,
    *,
    workers: int | None,
    backend: str = "local",
    address: str | None = None,
    force: bool = False,
    tracking_uri: str | None = None,
    results_dir: Path = Path("results"),
    live: bool = True,
    vectorize_seeds: bool = False,
    threads: int = 1,
) -> int:
    """Train every cell that is not finished; 0 when every cell of the matrix ends FINISHED, 1 otherwise.
    `vectorize_seeds`: cells that differ only in the seed train as one batched network (suite.seed_groups).
    `threads`: torch threads per worker (Ray: CPUs per task). One is the most updates per core; more finish
    each matmul-bound cell (CQL) sooner when cells are fewer than cores (docs/runner.md). The local default
    of workers is then cores // threads."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if backend == "ray":
        import_ray()  # fail before any work when the extra is missing
    if workers is not None and workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    if backend == "local" and address:
        raise UserError("--address is for --backend ray only")
    results_dir = Path(results_dir).resolve()
    uri = resolve_tracking_uri(tracking_uri, results_dir)
    cells = matrix.cells()
    client, experiment_id = open_store(uri, matrix.name)
    _deliver_spools(matrix.name, [cell_dir(results_dir, matrix.name, c.hash) for c in cells])
    existing = {} if force else runs_by_cell(client, experiment_id)

    n_workers = workers or (max(1, default_workers() // threads) if backend == "local" else len(cells))
    board = ProgressBoard(cells, matrix.name, workers=n_workers, live=live)
    finished_before = 0
    for cell in cells:
        done = [r for r in existing.get(cell.hash, []) if r.info.status == "FINISHED"]
        behind, end = (0, None) if force else spool.pending(cell_dir(results_dir, matrix.name, cell.hash))
        if done or end == "FINISHED":  # a cell that finished while the store was away counts as finished
            detail = "already finished" + (f"; {tracking_behind(behind)}" if behind else "")
            board.mark(cell.hash, FINISHED, detail, final_score(done[0]) if done else None, announce=False)
            finished_before += 1
    bundled = {} if force else finished_in_bundle(bundle_folder(results_dir, matrix.name))
    for cell in cells:
        if board.cells[cell.hash].state != FINISHED and cell.hash in bundled:
            board.mark(cell.hash, FINISHED, "finished in the committed bundle", bundled[cell.hash], announce=False)
            finished_before += 1
    if finished_before:
        print(f"{matrix.name}: {finished_before}/{len(cells)} cells already finished, skipped", flush=True)
    jobs: list[Job] = [CellJob(c, matrix.name, str(cell_dir(results_dir, matrix.name, c.hash)), uri, force)
                       for c in cells if board.cells[c.hash].state != FINISHED]
    if vectorize_seeds:
        from suite.seed_groups import group_jobs

        jobs = group_jobs(jobs)  # type: ignore[arg-type]
    interrupted = False
    with board, stop.sigterm_as_interrupt():
        try:
            if jobs and backend == "local":
                _run_local(jobs, min(n_workers, len(jobs)), board, threads)
            elif jobs:
                _run_ray(jobs, workers, address, board, threads)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        for line in board.summary():
            print(line, flush=True)
        print(f"{matrix.name}: stopped; rerun the same command to continue from the checkpoints", flush=True)
        raise KeyboardInterrupt
    # Cells another runner held may have finished meanwhile: count them as what they are now.
    elsewhere = [h for h, s in board.cells.items() if s.state == ELSEWHERE]
    if elsewhere:
        now = runs_by_cell(client, experiment_id)
        for h in elsewhere:
            done = [r for r in now.get(h, []) if r.info.status == "FINISHED"]
            if done:
                board.mark(h, FINISHED, "finished by another runner", final_score(done[0]), announce=False)
    for line in board.summary():
        print(line, flush=True)
    return 0 if board.all_finished() else 1


# --- dry run and status -----------------------------------------------------------------------------------
def _deliver_spools(name: str, cell_dirs: list[Path]) -> None:
    """Deliver what cells spooled while the store was away (suite.spool) before deciding what to train."""
    from suite.sync import sync_run_dirs

    results = sync_run_dirs(d for d in cell_dirs if (d / spool.SPOOL_DIR).is_dir())
    delivered = [r for r in results if r.error is None]
    if delivered:
        print(f"{name}: delivered the spooled tracking records of {len(delivered)} runs", flush=True)
    for result in results:
        if result.error is not None:
            print(f"{name}: warning: {result.line()}", flush=True)


def print_dry_run(matrix: Matrix) -> None:
    """The expanded cells (algo, dataset, seed, overrides, cell hash) and their count; nothing runs."""
    print(format_dry_run(matrix))


def matrix_status(
    matrix: Matrix, tracking_uri: str | None = None, results_dir: Path | None = None
) -> int:
    """Print every cell's state from MLflow (finished / running / interrupted / failed / missing), how far it
    got (the last step it logged, of its total), and its end-of-offline and final scores. 0 when every cell is
    finished, 1 otherwise. `results_dir` defaults to $BAQ_RESULTS_DIR, else ./results (where `baq run` put
    the cells)."""
    results_dir = Path(results_dir or os.environ.get("BAQ_RESULTS_DIR", "results")).resolve()
    uri = resolve_tracking_uri(tracking_uri, results_dir)
    client, experiment_id = open_store(uri, matrix.name, create=False)
    runs = runs_by_cell(client, experiment_id) if experiment_id else {}
    bundled = finished_in_bundle(bundle_folder(results_dir, matrix.name))
    rows, states = [], []
    for cell in matrix.cells():
        cell_runs_ = sorted(runs.get(cell.hash, []), key=lambda r: r.info.start_time or 0)
        state, steps, offline, final, note, run_id = "missing", "", "", "", "", ""
        if cell_runs_:
            finished = [r for r in cell_runs_ if r.info.status == "FINISHED"]
            run = finished[-1] if finished else cell_runs_[-1]
            run_id = run.info.run_id
            state = _run_state(run, cell_dir(results_dir, matrix.name, cell.hash))
            scores = {m.step: m.value for m in client.get_metric_history(run_id, "eval/normalized_score")}
            # The loop logs its throughput every log_interval steps and at the last one: the cell's progress.
            logged = [m.step for m in client.get_metric_history(run_id, "perf/updates_per_s")]
            steps = f"{max(logged, default=0)}/{cell.total_steps}"
            offline = _fmt(scores.get(cell.config.offline_steps)) if cell.config.offline_steps else ""
            final = _fmt(scores.get(cell.total_steps)) if state == "finished" else ""
            note = run.data.tags.get("baq.error", "")[:80] if state == "failed" else ""
        behind, end = spool.pending(cell_dir(results_dir, matrix.name, cell.hash))
        if behind and state != "running":  # a running cell's spool drains at its next flush
            state = "finished" if end == "FINISHED" else state
            note = f"tracking behind: {behind} records spooled (baq sync)"
        if state != "finished" and cell.hash in bundled:
            state, steps, final = "finished", f"{cell.total_steps}/{cell.total_steps}", _fmt(bundled[cell.hash])
            note = "from the committed bundle"
        states.append(state)
        rows.append([cell.algo, cell.dataset, str(cell.seed), cell.overrides_json if cell.overrides else "-",
                     cell.hash, state, steps, offline, final, run_id, note])
    print(f"matrix {matrix.name}: store {uri}")
    print(format_table(["algo", "dataset", "seed", "overrides", "cell", "state", "steps", "offline", "final",
                        "run", "error"], rows))
    counts = {s: states.count(s) for s in ("finished", "running", "interrupted", "failed", "missing")}
    print(f"{len(states)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return 0 if counts["finished"] == len(states) else 1


def _run_state(run: Any, run_dir: Path) -> str:
    status = run.info.status
    if status == "FINISHED":
        return "finished"
    if status == "FAILED":
        return "failed"
    if status == "RUNNING":
        lock_path = run_dir / LOCK_FILE
        if not lock_path.exists():
            return "running"  # trained on another machine: MLflow is all we know
        probe = CellLock(lock_path)
        free = probe.acquire()
        probe.release()
        return "interrupted" if free else "running"
    return "interrupted"  # KILLED or SCHEDULED: a rerun continues it


def _fmt(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else ""
