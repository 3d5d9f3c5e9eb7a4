"""The one training loop: offline gradient steps, the switch hook, online env steps, evaluation, checkpoints.

`train` drives one `suite.training_run.TrainingRun` through its named steps; `suite.vectorize` drives several
seeds' runs through the same steps with one batched update. The config lives in `suite.config`.
"""

from __future__ import annotations

from pathlib import Path

from suite.config import TrainConfig
from suite.tracking import MetricsSink
from suite.training_run import CHECKPOINT, Progress, TrainingRun, TrainResult, keep_freed_memory

__all__ = ["CHECKPOINT", "Progress", "TrainConfig", "TrainResult", "TrainingRun", "keep_freed_memory", "train"]


def train(
    cfg: TrainConfig,
    sink: MetricsSink | None = None,
    run_dir: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train one (algorithm, dataset, seed) offline then online. With `run_dir`, checkpoints go there and an
    existing checkpoint is resumed."""
    run = TrainingRun(cfg, sink, run_dir, progress)
    while not run.done:
        for _ in range(run.begin_step()):
            run.record(run.algo.update(run.next_batch()))
        run.end_step()
    return run.finish()
