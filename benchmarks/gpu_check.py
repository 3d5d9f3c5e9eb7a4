"""The prepared GPU check (`nox -s gpu`): whoever is lent a GPU runs this first and records what it prints in
docs/performance.md. Without a CUDA device it says so and exits 0.

    python -m benchmarks.gpu_check [--device cuda] [--steps 300] [--seeds 4] [--json out.json]

Three parts, each printed as one table, in under 5 minutes on a lent GPU:
1. every registered algorithm trains `--steps` offline and `--steps`/2 online steps on the device through
   `suite.train.train` (a tiny random-action D4RL-layout Hopper dataset made here; one evaluation episode at
   the end of each phase): wall time, steps/s, and whether every logged metric is finite;
2. `--seeds` seeds as one batched network (`suite.vectorize.train_vectorized`, as `--vectorize-seeds`)
   against the same seeds trained one after another, for the vectorisable algorithms: wall time and the
   largest difference of the final losses (float rounding only, on a deterministic device);
3. the update throughput table on the device for the benchmark's algorithms (`benchmarks.common.ALGOS`; ours
   only: d3rlpy and the CPU roofline are CPU measures).
`--device cpu` runs the same code on the CPU (the tests do, with few steps).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import ALGOS, markdown_table, run_cli, write_json, write_random_d4rl_file
from benchmarks.throughput import throughput_table
from suite.algorithm import algorithm_names, get_algorithm, make_config
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import TrainConfig, train

DATASET_ID = "d4rl:hopper-medium-v2"  # served from the temp D4RL_DATASET_DIR this check writes


def _config(algo: str, steps: int, device: str, seed: int = 0) -> TrainConfig:
    """About `steps` offline and half as many online steps; an evaluation (one episode) every online-phase
    length, so at the switch and at the end."""
    online = steps // 2
    return TrainConfig(algo=algo, dataset=DATASET_ID, seed=seed, offline_steps=2 * online, online_steps=online,
                       eval_interval=online, eval_episodes=1, log_interval=max(1, online // 2),
                       checkpoint_interval=10 * steps, max_episode_steps=100, device=device)


def _finite(sink: MemorySink) -> bool:
    return all(math.isfinite(v) for points in sink.metrics.values() for _, v in points)


def training_rows(algos: list[str], steps: int, device: str) -> list[dict[str, Any]]:
    """Part 1: a short offline→online run of every algorithm on the device."""
    rows = []
    for algo in algos:
        cfg, sink = _config(algo, steps, device), MemorySink()
        start = time.perf_counter()
        result = train(cfg, sink)
        wall = time.perf_counter() - start
        total = cfg.offline_steps + cfg.online_steps
        rows.append({"algo": algo, "device": device, "steps": total, "wall_s": wall, "steps_s": total / wall,
                     "offline_score": result.offline_score, "online_score": result.online_score,
                     "finite": _finite(sink)})
    return rows


def _final_losses(sink: MemorySink) -> dict[str, float]:
    return {k: points[-1][1] for k, points in sink.metrics.items() if k.startswith("train/") and points}


def vectorize_rows(algos: list[str], steps: int, seeds: int, device: str) -> list[dict[str, Any]]:
    """Part 2: `seeds` seeds as one batched network against the same seeds one after another."""
    from suite.vectorize import train_vectorized

    rows = []
    for algo in algos:
        cfgs = [_config(algo, steps, device, seed) for seed in range(seeds)]
        separate = [MemorySink() for _ in cfgs]
        start = time.perf_counter()
        for cfg, sink in zip(cfgs, separate, strict=True):
            train(cfg, sink)
        separate_s = time.perf_counter() - start
        batched = [MemorySink() for _ in cfgs]
        start = time.perf_counter()
        train_vectorized(cfgs, batched, [None] * seeds)
        vectorized_s = time.perf_counter() - start
        gap = max((abs(a - b) for s, v in zip(separate, batched, strict=True)
                   for (a, b) in zip(_final_losses(s).values(), _final_losses(v).values(), strict=True)),
                  default=float("nan"))
        rows.append({"algo": algo, "seeds": seeds, "separate_s": separate_s, "vectorized_s": vectorized_s,
                     "speedup": separate_s / vectorized_s, "max_final_loss_gap": gap,
                     "finite": all(_finite(s) for s in batched)})
    return rows


def _vectorizable(algos: list[str]) -> list[str]:
    return [a for a in algos if get_algorithm(a).is_vectorizable(make_config(a))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to run the check on the CPU")
    p.add_argument("--steps", type=int, default=300, help="offline steps per run (online: half as many)")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the vectorisation comparison")
    p.add_argument("--updates", type=int, default=200, help="timed updates per repeat of the throughput table")
    p.add_argument("--algos", default=",".join(algorithm_names()))
    p.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = p.parse_args(argv)
    if args.steps < 4 or args.seeds < 2 or args.updates < 1:
        raise UserError(f"--steps >= 4, --seeds >= 2 and --updates >= 1 are accepted, got {args.steps}, "
                        f"{args.seeds}, {args.updates}")
    args.algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(args.algos) - set(algorithm_names()))
    if unknown:
        raise UserError(f"unknown algorithm(s) {unknown}; accepted: {', '.join(algorithm_names())}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise UserError(f"unknown device {args.device!r}; accepted: cuda, cuda:N, cpu")
    return args


def _main(argv: list[str] | None) -> None:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "nothing to check")
        return
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"gpu_check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="baq-gpu-check-") as tmp:
        write_random_d4rl_file(Path(tmp) / "hopper_medium-v2.hdf5")
        os.environ["D4RL_DATASET_DIR"] = tmp
        trained = training_rows(args.algos, args.steps, args.device)
        print(markdown_table(trained, tuple(trained[0])), flush=True)
        vectorized = vectorize_rows(_vectorizable(args.algos), args.steps, args.seeds, args.device)
        if vectorized:
            print(markdown_table(vectorized, tuple(vectorized[0])), flush=True)
    benchmarked = [a for a in args.algos if a in ALGOS]
    throughput = throughput_table(benchmarked, args.updates, max(1, args.updates // 5), repeats=3,
                                  with_d3rlpy=False, device=args.device)
    keys = ("algorithm", "updates", "ours_upd_s", "ours_upd_cpu_s")
    print(markdown_table(throughput, keys))
    ok = all(r["finite"] for r in trained + vectorized)
    print(f"gpu_check {'passed' if ok else 'FAILED (non-finite metrics above)'} in "
          f"{time.perf_counter() - start:.0f} s")
    if args.json:
        write_json(args.json, {"device": name, "torch": torch.__version__, "training": trained,
                               "vectorized": vectorized, "throughput": [{k: r[k] for k in keys} for r in throughput]})
    if not ok:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
