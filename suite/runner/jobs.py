"""What the runner hands a worker, and what comes back.

A job is one unit of work for one worker: a single cell (`suite.runner.cell.CellJob`) or cells identical but
for the seed, trained as one batched network (`suite.runner.seed_group.SeedGroupJob`). Every job knows its
cells, its device and how to execute itself; the backends (local pool, Ray) only call `run_job`.

While it runs a job sends `Event`s (start, progress, done) for each of its cells through one `Report`
callback; the outcome of each cell is a plain dict (status, and score, run_id, error or detail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from suite import stop
from suite.states import FAILED, FINISHED, INTERRUPTED

START, PROGRESS, DONE = "start", "progress", "done"
Outcome = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One thing a cell reports: `start` (payload: detail, run_id), `progress` (the training loop's progress
    info: step, phase, score, tracking), or `done` (payload: the cell's outcome). Picklable."""

    kind: str
    cell: str  # the cell's hash
    payload: dict[str, Any]


Report = Callable[[Event], None]


class Job(Protocol):
    """One worker's unit of work (picklable)."""

    @property
    def hashes(self) -> list[str]:
        """The hashes of the job's cells."""

    @property
    def device(self) -> str:
        """The torch device its cells train on (Ray gives cuda jobs a GPU)."""

    def execute(self, report: Report) -> dict[str, Outcome]:
        """Train the job's cells; the outcome of each, by cell hash."""


def run_job(job: Job, report: Report) -> dict[str, Outcome]:
    """`job.execute`, with a stop request an INTERRUPTED outcome and any other error a FAILED one for every
    cell of the job: a worker always tells the runner why."""
    if stop.requested():
        return {h: {"status": INTERRUPTED, "detail": "not started: stop requested"} for h in job.hashes}
    try:
        return job.execute(report)
    except stop.StopRequested as request:  # launch() has ended the run as KILLED; the checkpoint is saved
        return {h: {"status": INTERRUPTED, "detail": str(request)} for h in job.hashes}
    except KeyboardInterrupt:  # a stop request while the cell was being set up (suite.stop.interruptible)
        if not stop.requested():
            raise
        return {h: {"status": INTERRUPTED, "detail": "stopped on request before training"} for h in job.hashes}
    except Exception as exc:
        return {h: {"status": FAILED, "error": one_line(exc)} for h in job.hashes}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, short enough for a table cell; MLflow keeps the full text."""
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finished_outcome(result: Any) -> Outcome:
    """The outcome of a trained cell from its `TrainResult`."""
    score = result.online_score if result.online_score is not None else result.offline_score
    return {"status": FINISHED, "run_id": result.run_id, "score": score}


def tracking_behind(records: int) -> str:
    return f"tracking behind: {records} records spooled; the next `baq run` or `baq sync` delivers them"
