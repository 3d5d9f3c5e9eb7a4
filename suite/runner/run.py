"""`baq run FILE`: train every cell of a matrix that is not finished, in local worker processes or on a Ray
cluster, resumably (the cell contract is in suite.runner.cell)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from suite import spool, stop
from suite.bundle import bundle_folder, finished_in_bundle
from suite.errors import UserError
from suite.matrix import Matrix, format_dry_run
from suite.progress import ELSEWHERE, ProgressBoard
from suite.runner.cell import CellJob, cell_dir
from suite.runner.feed import BoardFeed
from suite.runner.jobs import Job, tracking_behind
from suite.runner.local import run_local
from suite.runner.ray_backend import import_ray, run_ray
from suite.runner.seed_group import group_jobs
from suite.runner.store import final_score, finished_runs, open_store, resolve_tracking_uri, runs_by_cell
from suite.states import FINISHED

BACKENDS = ("local", "ray")


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _check_options(backend: str, workers: int | None, threads: int, address: str | None) -> None:
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
    `vectorize_seeds`: cells that differ only in the seed train as one batched network (seed_group).
    `threads`: torch threads per worker (Ray: CPUs per task). One is the most updates per core; more finish
    each matmul-bound cell (CQL) sooner when cells are fewer than cores (docs/runner.md). The local default
    of workers is then cores // threads."""
    _check_options(backend, workers, threads, address)
    results_dir = Path(results_dir).resolve()
    uri = resolve_tracking_uri(tracking_uri, results_dir)
    cells = matrix.cells()
    client, experiment_id = open_store(uri, matrix.name)
    _deliver_spools(matrix.name, [cell_dir(results_dir, matrix.name, c.hash) for c in cells])
    n_workers = workers or (max(1, default_workers() // threads) if backend == "local" else len(cells))
    board = ProgressBoard(cells, matrix.name, workers=n_workers, live=live)
    if not force:
        _mark_finished(board, matrix, runs_by_cell(client, experiment_id), results_dir)
    jobs: list[Job] = [CellJob(c, matrix.name, str(cell_dir(results_dir, matrix.name, c.hash)), uri, force)
                       for c in cells if board.cells[c.hash].state != FINISHED]
    if vectorize_seeds:
        jobs = group_jobs(jobs)  # type: ignore[arg-type]
    feed = BoardFeed(board)
    interrupted = False
    with board, stop.sigterm_as_interrupt():
        try:
            if jobs and backend == "local":
                run_local(jobs, min(n_workers, len(jobs)), feed, threads)
            elif jobs:
                run_ray(jobs, workers, address, feed, threads)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        for line in board.summary():
            print(line, flush=True)
        print(f"{matrix.name}: stopped; rerun the same command to continue from the checkpoints", flush=True)
        raise KeyboardInterrupt
    _recount_elsewhere(board, client, experiment_id)
    for line in board.summary():
        print(line, flush=True)
    return 0 if board.all_finished() else 1


def _mark_finished(board: ProgressBoard, matrix: Matrix, runs: dict[str, list[Any]], results_dir: Path) -> None:
    """Mark the cells with nothing left to train: a FINISHED run in the store, a run that finished while the
    store was away (its spool says so), or a run in the committed bundle."""
    bundled = finished_in_bundle(bundle_folder(results_dir, matrix.name))
    skipped = 0
    for cell in matrix.cells():
        done = finished_runs(runs.get(cell.hash, []))
        behind, end = spool.pending(cell_dir(results_dir, matrix.name, cell.hash))
        if done or end == "FINISHED":
            detail = "already finished" + (f"; {tracking_behind(behind)}" if behind else "")
            board.mark(cell.hash, FINISHED, detail, final_score(done[0]) if done else None, announce=False)
        elif cell.hash in bundled:
            board.mark(cell.hash, FINISHED, "finished in the committed bundle", bundled[cell.hash], announce=False)
        else:
            continue
        skipped += 1
    if skipped:
        print(f"{matrix.name}: {skipped}/{len(board.cells)} cells already finished, skipped", flush=True)


def _recount_elsewhere(board: ProgressBoard, client: Any, experiment_id: str | None) -> None:
    """Cells another runner held may have finished meanwhile: count them as what they are now."""
    elsewhere = [h for h, s in board.cells.items() if s.state == ELSEWHERE]
    if not elsewhere:
        return
    now = runs_by_cell(client, experiment_id)
    for h in elsewhere:
        done = finished_runs(now.get(h, []))
        if done:
            board.mark(h, FINISHED, "finished by another runner", final_score(done[0]), announce=False)


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
