"""The runner's side of the events: each one applied to the progress board once."""

from __future__ import annotations

from suite.progress import ProgressBoard
from suite.runner.jobs import DONE, PROGRESS, START, Event, Outcome


class BoardFeed:
    """A `Report` that shows events on the board. A cell's first `done` counts; a late duplicate (a worker's
    last message read after the runner already failed the cell) does not."""

    def __init__(self, board: ProgressBoard) -> None:
        self.board = board
        self.done: set[str] = set()

    def __call__(self, event: Event) -> None:
        if event.kind == START:
            self.board.started(event.cell, event.payload)
        elif event.kind == PROGRESS:
            self.board.progress(event.cell, event.payload)
        elif event.kind == DONE and event.cell not in self.done:
            self.done.add(event.cell)
            self.board.finished(event.cell, event.payload)

    def outcomes(self, outcomes: dict[str, Outcome]) -> None:
        for cell_hash, outcome in outcomes.items():
            self(Event(DONE, cell_hash, outcome))
