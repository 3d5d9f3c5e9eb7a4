"""What the matrix runner shows while it works: a live table on a terminal, one line per event otherwise.

The board only keeps state; the runner feeds it the events workers send (start, progress every
`log_interval` steps, done). Rates and the ETA are measured from those events, so they include everything a
cell does per step (updates, env steps, evaluation), not just the gradient-update rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from suite.matrix import Cell
from suite.states import FAILED, FINISHED, INTERRUPTED, RUNNING

# A cell on the board is one of the run states (suite.states), or pending (not started by this runner) or
# elsewhere (another runner holds its lock).
PENDING, ELSEWHERE = "pending", "elsewhere"


@dataclass
class CellState:
    cell: Cell
    state: str = PENDING
    phase: str = ""
    step: int = 0
    score: float | None = None
    detail: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    # First progress event seen in this session: rates are measured from it, which leaves out process
    # start-up and the steps a resumed cell had already done.
    first_step: int | None = None
    first_at: float | None = None
    steps_per_s: float | None = None
    tracking: str = ""  # the cell's tracking note: empty while the store keeps up (suite.tracking)


class ProgressBoard:
    def __init__(
        self,
        cells: Iterable[Cell],
        title: str,
        workers: int,
        live: bool = True,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cells = {c.hash: CellState(c) for c in cells}
        self.order = list(self.cells)
        self.title = title
        self.workers = max(1, workers)
        self.out = out or sys.stdout
        self.clock = clock
        self.live = live and self.out.isatty()
        self._live: Any = None

    # --- context: the rich Live display exists only while cells run --------------------------------------
    def __enter__(self) -> ProgressBoard:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.render(), console=Console(file=self.out), refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    # --- events ------------------------------------------------------------------------------------------
    def mark(
        self, cell_hash: str, state: str, detail: str = "", score: float | None = None, announce: bool = True
    ) -> None:
        """Set a cell's state without it having run here (already finished, finished by another runner)."""
        s = self.cells[cell_hash]
        s.state, s.detail, s.score = state, detail, score if score is not None else s.score
        if announce:
            self._line(s, f"{state}" + (f" ({detail})" if detail else ""))
        self.refresh()

    def started(self, cell_hash: str, info: dict[str, Any]) -> None:
        s = self.cells[cell_hash]
        s.state, s.started_at = RUNNING, self.clock()
        s.detail = info.get("detail", "")
        self._line(s, "start" + (f" ({s.detail})" if s.detail else ""))
        self.refresh()

    def progress(self, cell_hash: str, info: dict[str, Any]) -> None:
        s = self.cells[cell_hash]
        if s.state != RUNNING:
            return  # a late message from a cell that already ended
        now = self.clock()
        s.phase, s.step = str(info.get("phase", "")), int(info["step"])
        score = info.get("score")
        if score is not None and score == score:  # NaN: no evaluation yet
            s.score = float(score)
        tracking = info.get("tracking") or ""
        if bool(tracking) != bool(s.tracking):
            self._line(s, tracking or "tracking caught up")
        s.tracking = tracking
        if s.first_step is None:
            s.first_step, s.first_at = s.step, now
        elif s.first_at is not None and now > s.first_at and s.step > s.first_step:
            s.steps_per_s = (s.step - s.first_step) / (now - s.first_at)
        self.refresh()

    def finished(self, cell_hash: str, outcome: dict[str, Any]) -> None:
        s = self.cells[cell_hash]
        s.ended_at = self.clock()
        status = outcome.get("status", FAILED)
        if outcome.get("score") is not None:
            s.score = float(outcome["score"])
        if status == FINISHED:
            s.state, s.step = FINISHED, s.cell.total_steps
            s.detail = outcome.get("detail", "")
            took = f" in {format_duration(s.ended_at - s.started_at)}" if s.started_at is not None else ""
            score = f", score {s.score:.1f}" if s.score is not None else ""
            self._line(s, f"finished{took}{score}" + (f" ({s.detail})" if s.detail else ""))
        elif status == ELSEWHERE:
            s.state, s.detail = ELSEWHERE, outcome.get("detail", "locked by another runner")
            self._line(s, f"running elsewhere ({s.detail})")
        elif status == INTERRUPTED:
            s.state, s.detail = INTERRUPTED, outcome.get("detail", "stopped")
            self._line(s, f"interrupted ({s.detail})")
        else:
            s.state, s.detail = FAILED, outcome.get("error", "unknown error")
            self._line(s, f"FAILED: {s.detail}")
        self.refresh()

    # --- summaries ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((FINISHED, RUNNING, FAILED, ELSEWHERE, INTERRUPTED, PENDING), 0)
        for s in self.cells.values():
            out[s.state] += 1
        return out

    def eta_seconds(self) -> float | None:
        """Steps left (pending cells in full, running cells' remainder) over the throughput of
        min(workers, cells left) cells at the mean measured per-cell rate; None before any rate is known."""
        rates = [s.steps_per_s for s in self.cells.values() if s.steps_per_s]
        left = [s for s in self.cells.values() if s.state in (PENDING, RUNNING)]
        if not left:
            return 0.0
        if not rates:
            return None
        steps = sum(s.cell.total_steps - (s.step if s.state == RUNNING else 0) for s in left)
        return steps / (sum(rates) / len(rates) * min(self.workers, len(left)))

    def all_finished(self) -> bool:
        return all(s.state == FINISHED for s in self.cells.values())

    def header(self) -> str:
        c = self.counts()
        eta = self.eta_seconds()
        parts = [f"{c[FINISHED]}/{len(self.cells)} finished", f"{c[RUNNING]} running", f"{c[FAILED]} failed",
                 f"{c[PENDING]} pending"]
        if c[ELSEWHERE]:
            parts.append(f"{c[ELSEWHERE]} running elsewhere")
        behind = sum(1 for s in self.cells.values() if s.state == RUNNING and s.tracking)
        if behind:
            parts.append(f"{behind} tracking behind")
        parts.append(f"ETA {format_duration(eta) if eta is not None else '?'}")
        return f"{self.title}: " + " · ".join(parts)

    def render(self) -> Any:
        """The header line, then the running and failed cells (finished ones only count)."""
        from rich.console import Group
        from rich.text import Text

        table = self.table()
        return Group(Text(self.header(), style="bold"), *([table] if table.row_count else []))

    def table(self) -> Any:
        from rich.table import Table

        table = Table(expand=False)
        for col in ("cell", "state", "phase", "step", "score", "steps/s"):
            table.add_column(col, justify="right" if col in ("step", "score", "steps/s") else "left")
        shown = [self.cells[h] for h in self.order if self.cells[h].state in (RUNNING, FAILED)]
        for s in shown:
            total = s.cell.total_steps
            pct = f" ({100 * s.step / total:.0f}%)" if total else ""
            table.add_row(
                f"{s.cell.label} [{s.cell.hash[:8]}]",
                (f"running, [yellow]{s.tracking}[/yellow]" if s.tracking else s.state) if s.state != FAILED
                else f"[red]failed[/red] {s.detail[:60]}",
                s.phase or ("starting" if s.state == RUNNING else ""),
                f"{s.step}/{total}{pct}" if s.state == RUNNING else "",
                f"{s.score:.1f}" if s.score is not None else "",
                f"{s.steps_per_s:.0f}" if s.steps_per_s else "",
            )
        return table

    def summary(self) -> list[str]:
        c = self.counts()
        lines = [f"{self.title}: {len(self.cells)} cells: {c[FINISHED]} finished, {c[FAILED]} failed, "
                 f"{c[ELSEWHERE]} running elsewhere, "
                 + (f"{c[INTERRUPTED]} interrupted, " if c[INTERRUPTED] else "")
                 + f"{c[PENDING] + c[RUNNING]} not run"]
        for h in self.order:
            s = self.cells[h]
            if s.state == FAILED:
                lines.append(f"  failed: {s.cell.label} [{h}]: {s.detail}")
            elif s.state == ELSEWHERE:
                lines.append(f"  running elsewhere: {s.cell.label} [{h}]: {s.detail}")
            elif s.state == INTERRUPTED:
                lines.append(f"  interrupted: {s.cell.label} [{h}]: {s.detail}")
        return lines

    def _line(self, s: CellState, text: str) -> None:
        if self.live:
            return
        done = sum(1 for x in self.cells.values() if x.state in (FINISHED, FAILED, ELSEWHERE, INTERRUPTED))
        print(f"[{done}/{len(self.cells)}] {s.cell.label} [{s.cell.hash[:8]}] {text}",
              file=self.out, flush=True)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
