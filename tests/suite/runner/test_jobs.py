"""The job protocol: any object with hashes, device and execute runs through `run_job`, which turns errors
and stop requests into outcomes for every cell of the job; the board feed counts a cell's first outcome."""

from __future__ import annotations

import io
import os
import signal
from dataclasses import dataclass, field

from suite import stop
from suite.matrix import Cell, cell_hash
from suite.progress import ProgressBoard
from suite.runner import Event, run_job
from suite.runner.feed import BoardFeed
from suite.runner.jobs import DONE, PROGRESS, START, Report, one_line
from suite.train import TrainConfig


@dataclass
class PairJob:
    """A job of two cells that is neither a CellJob nor a SeedGroupJob: dispatch must not care."""

    fail_with: Exception | None = None
    seen: list[Event] = field(default_factory=list)

    @property
    def hashes(self) -> list[str]:
        return ["aaa", "bbb"]

    @property
    def device(self) -> str:
        return "cpu"

    def execute(self, report: Report) -> dict[str, dict]:
        report(Event(START, "aaa", {"detail": ""}))
        if self.fail_with is not None:
            raise self.fail_with
        return {"aaa": {"status": "finished", "score": 1.0}, "bbb": {"status": "finished", "score": 2.0}}


def test_any_job_runs_and_reports() -> None:
    events: list[Event] = []
    outcomes = run_job(PairJob(), events.append)
    assert outcomes == {"aaa": {"status": "finished", "score": 1.0}, "bbb": {"status": "finished", "score": 2.0}}
    assert events == [Event(START, "aaa", {"detail": ""})]


def test_an_error_fails_every_cell_of_the_job_with_its_first_line() -> None:
    outcomes = run_job(PairJob(fail_with=ValueError("bad batch\nlong traceback")), lambda _: None)
    assert outcomes == {h: {"status": "failed", "error": "ValueError: bad batch"} for h in ("aaa", "bbb")}
    assert one_line(RuntimeError("x" * 400), limit=20) == "RuntimeError: xxxxx…"


def test_a_stop_request_interrupts_the_job_before_it_starts() -> None:
    job = PairJob()
    with stop.graceful(force_on_repeat=False):
        os.kill(os.getpid(), signal.SIGINT)
        outcomes = run_job(job, job.seen.append)
    assert {h: o["status"] for h, o in outcomes.items()} == {"aaa": "interrupted", "bbb": "interrupted"}
    assert job.seen == []  # not started


def test_the_board_counts_a_cells_first_outcome_only(tiny_dataset_id: str) -> None:
    config = TrainConfig(algo="iql", dataset=tiny_dataset_id, offline_steps=10, online_steps=0)
    cell = Cell("iql", tiny_dataset_id, 0, {}, config, cell_hash(config))
    board = ProgressBoard([cell], "t", workers=1, live=False, out=io.StringIO())
    feed = BoardFeed(board)
    feed(Event(START, cell.hash, {"detail": "", "run_id": "r1"}))
    feed(Event(PROGRESS, cell.hash, {"step": 5, "phase": "offline", "score": None}))
    assert board.cells[cell.hash].state == "running" and board.cells[cell.hash].step == 5
    feed(Event(DONE, cell.hash, {"status": "finished", "score": 3.0}))
    feed.outcomes({cell.hash: {"status": "failed", "error": "worker process died"}})  # late: ignored
    assert board.cells[cell.hash].state == "finished" and board.cells[cell.hash].score == 3.0
    assert feed.done == {cell.hash}
