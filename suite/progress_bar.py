"""The progress bar of `baq train`: phase, step, updates/s, the last evaluation score, and whether tracking is
behind (the store is not answering and records wait in the run's spool)."""

from __future__ import annotations

import sys
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, cfg: Any) -> None:
        self.total = cfg.offline_steps + cfg.online_steps
        self.enabled = sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]:>7}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[ups]:>6.0f} upd/s"), TextColumn("score {task.fields[score]}"),
            TimeRemainingColumn(), TextColumn("[yellow]{task.fields[tracking]}"), disable=not self.enabled,
        )
        self._task = None
        self._last_line = 0

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        self._task = self._progress.add_task("train", total=self.total, phase="offline", ups=0.0, score="n/a",
                                            tracking="")
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, info: dict[str, Any]) -> None:
        score = info["score"]
        score_text = "n/a" if score != score else f"{score:.1f}"  # NaN before the first evaluation
        tracking = info.get("tracking") or ""
        self._progress.update(self._task, completed=info["step"], phase=info["phase"],
                              ups=info["updates_per_s"], score=score_text, tracking=tracking)
        if not self.enabled and (info["step"] - self._last_line >= max(self.total // 20, 1)
                                 or info["step"] == self.total):
            # Without a terminal (CI, nohup), a line every 5% instead of a bar.
            self._last_line = info["step"]
            print(f"[{info['phase']}] step {info['step']}/{self.total}  {info['updates_per_s']:.0f} upd/s  "
                  f"score {score_text}" + (f"  {tracking}" if tracking else ""), flush=True)
