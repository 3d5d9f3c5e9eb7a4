"""`baq behavior train ENV_ID`: the command's arguments and its handler (imported lazily by suite/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `behavior` (with its `train` action) to the `baq` subparsers; returns the `behavior` parser."""
    b = sub.add_parser("behavior", help="train behaviour policies (SAC) and write behaviour files for local:")
    bsub = b.add_subparsers(dest="action", required=True)
    t = bsub.add_parser("train", help="train SAC on a Gymnasium task; write medium/expert policies, the "
                                      "medium-replay stream and the index entry")
    t.add_argument("env_id", help="Gymnasium id, e.g. Hopper-v5, InvertedDoublePendulum-v5")
    t.add_argument("--steps", type=int, default=1_000_000, help="environment steps (default 1M)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--random-steps", type=int, default=10_000, help="uniform random actions first (default 10k)")
    t.add_argument("--eval-interval", type=int, default=5_000, help="steps between snapshots (default 5000)")
    t.add_argument("--eval-episodes", type=int, default=10, help="stochastic episodes per snapshot (default 10)")
    t.add_argument("--checkpoint-interval", type=int, default=25_000)
    t.add_argument("--out", default=None, help="behaviour folder to write (default ~/.cache/baq-suite/behavior, "
                   "which local: also reads)")
    t.add_argument("--run-dir", default=None, help="checkpoint directory (default "
                   "results/behavior/<task>-s<seed>-n<steps>); an existing checkpoint is resumed")
    t.add_argument("--if-missing", action="store_true",
                   help="do nothing when a behaviour source local: reads already has this task")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.add_argument("--experiment", default="behavior", help="MLflow experiment name")
    t.add_argument("--tracking-uri", default=None)
    return b


def behavior_train(args: argparse.Namespace) -> int:
    import torch

    from suite import stop
    from suite.behavior import files
    from suite.behavior.publish import default_run_dir, launch_behavior
    from suite.behavior.trainer import BehaviorConfig
    from suite.data.sources import default_output_dir, find_task
    from suite.errors import UserError
    from suite.progress_bar import TrainProgress

    key = files.task_key(args.env_id)
    out = Path(args.out).expanduser() if args.out else default_output_dir()
    found = find_task(key, extra=[out])
    if args.if_missing and found is not None:
        print(f"behaviour files for {key} found in {found[0]}; nothing to train")
        return 0
    cfg = BehaviorConfig(env_id=args.env_id, steps=args.steps, seed=args.seed, random_steps=args.random_steps,
                         eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
                         checkpoint_interval=args.checkpoint_interval).validate()
    if args.threads < 1:
        raise UserError(f"threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    shape = argparse.Namespace(offline_steps=0, online_steps=cfg.steps)
    with stop.graceful(announce=True), TrainProgress(shape) as bar:
        entry = launch_behavior(cfg, out, run_dir, args.experiment, args.tracking_uri, progress=bar.update)
    trainer, listed = entry["trainer"], entry["files"]
    print(f"{key}: random return {entry['random_return']['mean']:.1f}; expert (step {trainer['expert_step']}) "
          f"{listed['expert_policy.npz']['return_stochastic']['mean']:.1f}; medium (step {trainer['medium_step']}) "
          f"{listed['medium_policy.npz']['return_stochastic']['mean']:.1f} (stochastic returns)")
    print(f"wrote {out / key} and {out / 'index.json'}: local:{key}-medium, -expert, -medium-replay, ...")
    print(f"reference returns for normalized scores: {entry['ref_scores']}")
    print(f"MLflow run {trainer['mlflow_run']} in experiment {args.experiment!r}; run directory {run_dir}")
    return 0
