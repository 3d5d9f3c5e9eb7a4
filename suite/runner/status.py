"""`baq status FILE`: every cell's state, progress and scores, from the store, the cells' spools and the
committed bundle; nothing trains."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from suite import spool
from suite.bundle import bundle_folder, finished_in_bundle
from suite.matrix import Cell, Matrix, format_table
from suite.runner.cell import LOCK_FILE, CellLock, cell_dir
from suite.runner.store import finished_runs, open_store, resolve_tracking_uri, runs_by_cell
from suite.states import FAILED, FINISHED, INTERRUPTED, MISSING, RUNNING, STATES, recorded_state

COLUMNS = ["algo", "dataset", "seed", "overrides", "cell", "state", "steps", "offline", "final", "run", "error"]


def matrix_status(matrix: Matrix, tracking_uri: str | None = None, results_dir: Path | None = None) -> int:
    """Print every cell's state (suite.states), how far it got (the last step it logged, of its total), and its
    end-of-offline and final scores. 0 when every cell is finished, 1 otherwise. `results_dir` defaults to
    $BAQ_RESULTS_DIR, else ./results (where `baq run` put the cells)."""
    results_dir = Path(results_dir or os.environ.get("BAQ_RESULTS_DIR", "results")).resolve()
    uri = resolve_tracking_uri(tracking_uri, results_dir)
    client, experiment_id = open_store(uri, matrix.name, create=False)
    runs = runs_by_cell(client, experiment_id) if experiment_id else {}
    bundled = finished_in_bundle(bundle_folder(results_dir, matrix.name))
    rows = [_row(cell, client, runs.get(cell.hash, []), cell_dir(results_dir, matrix.name, cell.hash), bundled)
            for cell in matrix.cells()]
    states = [row[COLUMNS.index("state")] for row in rows]
    print(f"matrix {matrix.name}: store {uri}")
    print(format_table(COLUMNS, rows))
    counts = {s: states.count(s) for s in STATES}
    print(f"{len(states)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return 0 if counts[FINISHED] == len(states) else 1


def _row(cell: Cell, client: Any, runs: list[Any], run_dir: Path, bundled: dict[str, float | None]) -> list[str]:
    state, steps, offline, final, note, run_id = MISSING, "", "", "", "", ""
    if runs:
        runs = sorted(runs, key=lambda r: r.info.start_time or 0)
        run = (finished_runs(runs) or runs)[-1]
        run_id = run.info.run_id
        state = run_state(run, run_dir)
        scores = {m.step: m.value for m in client.get_metric_history(run_id, "eval/normalized_score")}
        # The loop logs its throughput every log_interval steps and at the last one: the cell's progress.
        logged = [m.step for m in client.get_metric_history(run_id, "perf/updates_per_s")]
        steps = f"{max(logged, default=0)}/{cell.total_steps}"
        offline = _fmt(scores.get(cell.config.offline_steps)) if cell.config.offline_steps else ""
        final = _fmt(scores.get(cell.total_steps)) if state == FINISHED else ""
        note = run.data.tags.get("baq.error", "")[:80] if state == FAILED else ""
    behind, end = spool.pending(run_dir)
    if behind and state != RUNNING:  # a running cell's spool drains at its next flush
        state = FINISHED if end == "FINISHED" else state
        note = f"tracking behind: {behind} records spooled (baq sync)"
    if state != FINISHED and cell.hash in bundled:
        state, steps, final = FINISHED, f"{cell.total_steps}/{cell.total_steps}", _fmt(bundled[cell.hash])
        note = "from the committed bundle"
    return [cell.algo, cell.dataset, str(cell.seed), cell.overrides_json if cell.overrides else "-", cell.hash,
            state, steps, offline, final, run_id, note]


def run_state(run: Any, run_dir: Path) -> str:
    """The run's state (suite.states.recorded_state). A run recorded as running whose cell lock is free here
    was killed hard (its process gone, MLflow not told): interrupted. Without a lock file the run trains on
    another machine, and MLflow is all there is to know."""
    state = recorded_state(run.info.status, run.data.tags.get("baq.status"))
    lock_path = run_dir / LOCK_FILE
    if state == RUNNING and lock_path.exists() and not CellLock(lock_path).is_held():
        return INTERRUPTED
    return state


def _fmt(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else ""
