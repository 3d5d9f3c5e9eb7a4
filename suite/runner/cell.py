"""One cell: its working directory, its lock, and training it as one MLflow run.

- one cell = one MLflow run in the experiment named after the matrix, tagged `baq.cell` (hash of the resolved
  config), `baq.matrix`, `baq.overrides`; working dir `<results>/<matrix>/cells/<hash>/`.
- a rerun skips a cell with a FINISHED run and continues an unfinished cell's own run from its checkpoint.
  The run is found by its `baq.cell` tag, so a runner killed between creating a run and recording it in
  run.json does not leave a second run behind. `force` starts a new run and tags the old ones superseded.
- a worker trains a cell only while it holds the cell's lock (flock on `<cell dir>/.lock`), and decides what
  to do (skip / continue / start) only after taking it: two runners never train one cell twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import spool, stop
from suite.launch import RUN_FILE, launch
from suite.matrix import Cell
from suite.progress import ELSEWHERE
from suite.runner.jobs import PROGRESS, START, Event, Outcome, Report, finished_outcome, one_line, tracking_behind
from suite.runner.store import cell_runs, final_score, finished_runs, open_store, supersede
from suite.states import FAILED, FINISHED
from suite.train import CHECKPOINT

LOCK_FILE = ".lock"


def cell_dir(results_dir: Path, matrix_name: str, cell_hash: str) -> Path:
    return Path(results_dir) / matrix_name / "cells" / cell_hash


@dataclass(frozen=True)
class CellJob:
    """Everything a worker process needs to train one cell (picklable)."""

    cell: Cell
    matrix: str
    cell_dir: str
    tracking_uri: str
    force: bool = False

    @property
    def hashes(self) -> list[str]:
        return [self.cell.hash]

    @property
    def device(self) -> str:
        return self.cell.config.device

    def execute(self, report: Report) -> dict[str, Outcome]:
        return {self.cell.hash: execute_cell(self, report)}


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

    def is_held(self) -> bool:
        """Whether a process holds the lock now (probed by taking and releasing it)."""
        free = self.acquire()
        self.release()
        return not free


def execute_cell(job: CellJob, report: Report) -> Outcome:
    """Train one cell if nobody else is and it is not finished. Returns the outcome: status (finished /
    failed / elsewhere), plus score, run_id, error or detail. Training errors become a FAILED outcome."""
    lock = CellLock(Path(job.cell_dir) / LOCK_FILE)
    with lock.held() as acquired:
        if not acquired:
            return {"status": ELSEWHERE, "detail": f"locked by {lock.holder()}"}
        outcome, run_id = prepare_cell(job, report)
        return outcome if outcome is not None else train_cell(job, run_id, report)


def train_cell(job: CellJob, run_id: str | None, report: Report) -> Outcome:
    """With the cell's lock held and `prepare_cell` done: train it alone; training errors become FAILED."""
    h = job.cell.hash
    try:
        result = launch(job.cell.config, job.matrix, Path(job.cell_dir), job.tracking_uri, tags=cell_tags(job),
                        progress=lambda info: report(Event(PROGRESS, h, info)), run_id=run_id)
    except Exception as exc:  # launch() has already marked the run FAILED with the full reason
        return {"status": FAILED, "error": one_line(exc), "run_id": run_id}
    outcome = finished_outcome(result)
    behind, _ = spool.pending(Path(job.cell_dir))
    if behind:
        outcome["detail"] = tracking_behind(behind)
    return outcome


def prepare_cell(job: CellJob, report: Report) -> tuple[Outcome | None, str | None]:
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
        done = finished_runs(runs)
        if done:
            return {"status": FINISHED, "run_id": done[0].info.run_id, "score": final_score(done[0]),
                    "detail": "already finished"}, None
        run_id = _continuable_run(client, runs, run_dir, uri)
    if run_id is None:
        # A new run must start from step 0: a checkpoint here belongs to a run that is gone or superseded.
        for name in (CHECKPOINT, RUN_FILE):
            (run_dir / name).unlink(missing_ok=True)
    resuming = run_id is not None and (run_dir / CHECKPOINT).exists()
    report(Event(START, cell.hash, {"detail": "resuming from checkpoint" if resuming else
                                    "continuing its run" if run_id else "", "run_id": run_id}))
    return None, run_id


def cell_tags(job: CellJob) -> dict[str, str]:
    return {"baq.cell": job.cell.hash, "baq.matrix": job.matrix, "baq.overrides": job.cell.overrides_json}


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
