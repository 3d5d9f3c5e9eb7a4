"""Gradient-update throughput of the suite's algorithms, against d3rlpy and against a matmul roofline, and the
training loop's end-to-end overhead (method and results: docs/performance.md).

    python -m benchmarks.throughput [--repeats 5] [--updates 300] [--warmup 50] [--algos iql,cql,awac,baq]
                                    [--no-d3rlpy] [--no-e2e] [--json out.json]

`--algos` also takes calql and rebrac: timed on their own defaults, without a d3rlpy peer (benchmarks.common).

Rates are medians over repeats (ours and d3rlpy's interleaved, so load changes hit both), after warm-up, by
wall clock and by process CPU time; on a shared machine only the CPU-time rate is stable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    ALGOS,
    N_TRANSITIONS,
    OWN_DEFAULTS,
    UPDATE_SCALE,
    benchmark_batch,
    markdown_table,
    measure,
    our_config,
    our_stepper,
    run_cli,
    synthetic_transitions,
    training_process,
    update_period,
    write_json,
)
from benchmarks.e2e import E2EConfig, e2e_report, end_to_end
from benchmarks.flops import matmul_peak, roofline, update_matmuls
from benchmarks.peer import d3rlpy_steppers, import_d3rlpy
from benchmarks.vectorized import vectorize_table
from suite.algorithm import get_algorithm
from suite.errors import UserError

ROW_KEYS = ("algorithm", "updates", "batch", "ours_upd_s", "ours_upd_cpu_s", "d3rlpy_upd_s", "d3rlpy_upd_cpu_s",
            "ratio", "ratio_cpu", "d3rlpy_update_only_upd_cpu_s", "mflop_per_update", "achieved_gflop_s",
            "roofline_gflop_s", "roofline_fraction")


def throughput_table(algos: list[str], updates: int = 300, warmup: int = 50, repeats: int = 5,
                     with_d3rlpy: bool = True, n_transitions: int = N_TRANSITIONS,
                     with_compile: bool = False, device: str = "cpu") -> list[dict[str, Any]]:
    """One row per algorithm. On a GPU (`device` cuda) only our own rates are measured: d3rlpy's peer and the
    roofline are CPU measures."""
    training_process()
    data = synthetic_transitions(n_transitions)
    gemm_cache: dict = {}
    rows = []
    for name in algos:
        steppers = {"ours": our_stepper(name, data, device=device)}
        on_cpu = device == "cpu"
        if with_d3rlpy and name not in ("baq", *OWN_DEFAULTS) and on_cpu:
            steppers.update(d3rlpy_steppers(name, data))
        if with_compile:
            steppers["ours_compiled"] = our_stepper(name, data, compile=True)
        scale = UPDATE_SCALE.get(name, 1.0)
        n_updates, n_warmup = max(1, round(updates * scale)), round(warmup * scale)
        rates = measure(steppers, n_updates, n_warmup, repeats)
        if on_cpu and torch.get_num_threads() != 1:  # neither side may have changed it
            raise RuntimeError(f"torch runs {torch.get_num_threads()} threads, expected 1")
        ours, peer = rates["ours"], rates.get("d3rlpy")
        rows.append({
            "algorithm": name + (" (ours)" if name == "baq" else ""), "updates": n_updates,
            "batch": benchmark_batch(name),
            "ours_upd_s": ours["wall"], "ours_upd_cpu_s": ours["cpu"],
            "d3rlpy_upd_s": peer["wall"] if peer else None, "d3rlpy_upd_cpu_s": peer["cpu"] if peer else None,
            "ratio": ours["wall"] / peer["wall"] if peer else None,
            "ratio_cpu": ours["cpu"] / peer["cpu"] if peer else None,
            "d3rlpy_update_only_upd_cpu_s": rates["d3rlpy_update_only"]["cpu"] if peer else None,
            **(_roofline_fields(steppers["ours"], update_period(name), ours["cpu"], gemm_cache, repeats)
               if on_cpu else {}),
            "compiled_upd_s": rates["ours_compiled"]["wall"] if with_compile else None,
            "compiled_ratio": rates["ours_compiled"]["wall"] / ours["wall"] if with_compile else None,
            "repeats": rates,
        })
    return rows


def _roofline_fields(step: Any, period: int, updates_per_cpu_s: float, cache: dict, repeats: int
                     ) -> dict[str, float]:
    """FLOPs of one update (its matmuls recorded from `period` real calls, averaged), the GFLOP/s achieved,
    the roofline's (FLOPs over the summed matmul time, the same for one call or a period)."""
    roof = roofline(update_matmuls(step, period), cache, repeats)
    flops = roof["flops"] / period
    achieved = flops * updates_per_cpu_s / 1e9
    return {"mflop_per_update": flops / 1e6, "achieved_gflop_s": achieved,
            "roofline_gflop_s": roof["gflop_s"], "roofline_fraction": achieved / roof["gflop_s"]}


# --- command line -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--updates", type=int, default=300, help="timed updates per repeat")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--no-d3rlpy", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="also time our update with the networks torch.compile'd (columns compiled_*)")
    p.add_argument("--vectorize-seeds", type=int, default=0, metavar="N",
                   help="also time N seeds as one batched network against N separate updates (iql, cql)")
    p.add_argument("--device", default="cpu", help="device of the --vectorize-seeds comparison (cpu, cuda)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end overhead run")
    p.add_argument("--e2e-algo", default=E2EConfig.algo)
    p.add_argument("--e2e-dataset", default=E2EConfig.dataset)
    p.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = p.parse_args(argv)
    for key in ("repeats", "updates"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key} must be a positive integer, got {getattr(args, key)}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.vectorize_seeds == 1 or args.vectorize_seeds < 0:
        raise UserError(f"--vectorize-seeds must be >= 2, got {args.vectorize_seeds}")
    args.algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    for name in args.algos:
        our_config(name)  # unknown names -> UserError
    return args


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    args = parse_args(argv)
    if not args.no_d3rlpy:
        import_d3rlpy()
    training_process()
    load_before = os.getloadavg()
    rows = throughput_table(args.algos, args.updates, args.warmup, args.repeats, not args.no_d3rlpy,
                            with_compile=args.compile)
    print(markdown_table(rows, ROW_KEYS + (("compiled_upd_s", "compiled_ratio") if args.compile else ())))
    vec_rows = None
    if args.vectorize_seeds:
        vec_algos = [a for a in args.algos if get_algorithm(a).is_vectorizable(our_config(a))]
        vec_rows = vectorize_table(vec_algos, args.vectorize_seeds, args.updates // args.vectorize_seeds,
                                   args.warmup, args.repeats, args.device)
        print(markdown_table(vec_rows, tuple(vec_rows[0]) if vec_rows else ()))
    peak = matmul_peak(args.repeats)
    print("matmul GFLOP/s for scale: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    e2e = None if args.no_e2e else end_to_end(E2EConfig(algo=args.e2e_algo, dataset=args.e2e_dataset))
    if e2e:
        print(e2e_report(e2e))
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    if args.json:
        write_json(args.json, {"argv": sys.argv[1:] if argv is None else argv, "rows": rows,
                               "vectorized": vec_rows, "e2e": e2e,
                               "matmul_peak_gflop_s": peak, "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "load_before": load_before,
                               "load_after": load_after})


if __name__ == "__main__":
    sys.exit(main())
