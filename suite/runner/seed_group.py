"""`baq run --vectorize-seeds`: the cells of a matrix that differ only in their seed train as one job, their
seeds as one batched network (suite.vectorize), on one worker.

Each cell keeps everything the runner guarantees for it: its lock, its own MLflow run (continued or new) and
working directory, its own start/progress/done events and outcome. Cells another runner holds or that are
already finished drop out of the group; a group left with one cell trains it alone. Seeds whose checkpoints
are at different steps (a kill between their writes) are trained one by one, as without the option.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from suite.launch import launch_vectorized
from suite.progress import ELSEWHERE
from suite.runner.cell import LOCK_FILE, CellJob, CellLock, cell_tags, prepare_cell, train_cell
from suite.runner.jobs import PROGRESS, Event, Job, Outcome, Report, finished_outcome, one_line
from suite.states import FAILED
from suite.vectorize import SeedsOutOfStep, check_vectorizable_config


@dataclass(frozen=True)
class SeedGroupJob:
    """Cells identical but for their seed (picklable, like CellJob)."""

    jobs: tuple[CellJob, ...]

    @property
    def hashes(self) -> list[str]:
        return [j.cell.hash for j in self.jobs]

    @property
    def device(self) -> str:
        return self.jobs[0].cell.config.device

    def execute(self, report: Report) -> dict[str, Outcome]:
        """Train the group's cells that nobody else holds and that are not finished; the outcome of every
        cell of the group, by cell hash (as `execute_cell` gives for one)."""
        outcomes: dict[str, Outcome] = {}
        with contextlib.ExitStack() as held:
            ready: list[tuple[CellJob, str | None]] = []
            for job in self.jobs:
                h = job.cell.hash
                lock = CellLock(Path(job.cell_dir) / LOCK_FILE)
                if not lock.acquire():
                    outcomes[h] = {"status": ELSEWHERE, "detail": f"locked by {lock.holder()}"}
                    continue
                held.callback(lock.release)
                try:
                    outcome, run_id = prepare_cell(job, report)
                except Exception as exc:
                    outcomes[h] = {"status": FAILED, "error": one_line(exc)}
                    continue
                if outcome is not None:
                    outcomes[h] = outcome
                else:
                    ready.append((job, run_id))
            if len(ready) > 1:
                try:
                    outcomes.update(_train_together(ready, report))
                    return outcomes
                except SeedsOutOfStep:
                    pass  # their runs were marked FAILED; launching each one continues it
            for job, run_id in ready:
                outcomes[job.cell.hash] = train_cell(job, run_id, report)
        return outcomes


def group_jobs(jobs: list[CellJob]) -> list[Job]:
    """Jobs of cells that differ only in the seed, grouped when their algorithm can be vectorized; the order
    of first appearance is kept. Other jobs stay single."""
    groups: dict[str, list[CellJob]] = {}
    for job in jobs:
        key = json.dumps({**job.cell.config.resolved(), "seed": None}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(job)
    out: list[Job] = []
    for members in groups.values():
        if len(members) > 1 and _vectorizable(members[0]):
            out.append(SeedGroupJob(tuple(members)))
        else:
            out += members
    return out


def _vectorizable(job: CellJob) -> bool:
    try:
        check_vectorizable_config(job.cell.config)
    except Exception:
        return False
    return True


def _train_together(ready: list[tuple[CellJob, str | None]], report: Report) -> dict[str, Outcome]:
    jobs = [j for j, _ in ready]
    first = jobs[0]
    try:
        results = launch_vectorized(
            [j.cell.config for j in jobs], first.matrix, [Path(j.cell_dir) for j in jobs], first.tracking_uri,
            tags=[cell_tags(j) for j in jobs],
            progress=[(lambda info, h=j.cell.hash: report(Event(PROGRESS, h, info))) for j in jobs],
            run_ids=[run_id for _, run_id in ready],
        )
    except SeedsOutOfStep:
        raise
    except Exception as exc:  # launch_vectorized has marked every seed's run FAILED with the reason
        return {j.cell.hash: {"status": FAILED, "error": one_line(exc), "run_id": run_id} for j, run_id in ready}
    return {j.cell.hash: finished_outcome(r) for j, r in zip(jobs, results, strict=True)}
