"""Where one update's time goes: its matmuls as they run inside the update against the same matrix shapes run
alone (the roofline of throughput.py), and the rest, at several batch sizes (project issue "Performance";
results in docs/performance.md, "Why IQL, AWAC and BAQ stay below 80% of the roofline").

    python -m benchmarks.update_profile [--algos iql,awac,baq,cql] [--batches 16,64,256] [--updates 100]
                                        [--json out.json]

Per algorithm and batch size: the update's CPU time over `--updates` calls without the profiler; the self
time of its matmul kernels (aten::mm/addmm/bmm/baddbmm) under torch's profiler over `--updates` more (three
such pairs interleaved, medians); and the summed time of the same shapes run alone (`flops.roofline`).
`rest_ms` is everything but the matmuls (elementwise ops, autograd, Adam, sampling, Python); `ceiling` =
isolated matmul time / in-situ matmul time is the roofline fraction the update would reach if the rest cost
nothing. The rest at a small batch is the update's fixed per-call cost, which one update cannot amortise;
`ops_per_update` counts the ATen ops one update dispatches (a TorchDispatchMode), each a share of that cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks import common
from benchmarks.flops import roofline, update_matmuls
from suite.errors import UserError

MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})
KEYS = ("algorithm", "batch", "update_ms", "matmul_in_situ_ms", "rest_ms", "matmul_isolated_ms",
        "roofline_fraction", "ceiling", "ops_per_update")


def matmul_seconds_in_situ(step: Callable[[], Any], n: int) -> float:
    """Mean self CPU time per call of `step` spent in matmul kernels, by torch's profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATMUL_OPS) / n / 1e6


class _OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched to kernels (forward, autograd backward and optimiser alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.count += 1
        return func(*args, **(kwargs or {}))


def dispatched_ops(step: Callable[[], Any], calls: int = 1) -> float:
    """ATen ops one call of `step` dispatches, averaged over `calls` calls: each op costs a fixed
    dispatcher/autograd/Python overhead."""
    with _OpCounter() as counter:
        for _ in range(calls):
            step()
    return counter.count / calls


def profile_row(name: str, batch: int, data: common.Transitions, updates: int, cache: dict) -> dict[str, Any]:
    step, period = common.our_stepper(name, data, batch=batch), common.update_period(name)
    for _ in range(max(1, updates // 2)):  # warm-up
        step()
    timed, profiled = [], []
    for _ in range(3):  # interleaved, so a load change hits both
        timed.append(1.0 / common.time_calls(step, updates)[1])  # CPU seconds per call
        profiled.append(matmul_seconds_in_situ(step, updates))
    update, in_situ = statistics.median(timed), statistics.median(profiled)
    isolated = roofline(update_matmuls(step, period), cache)["matmul_seconds"] / period
    return {"algorithm": name, "batch": batch, "update_ms": 1e3 * update, "matmul_in_situ_ms": 1e3 * in_situ,
            "rest_ms": 1e3 * (update - in_situ), "matmul_isolated_ms": 1e3 * isolated,
            "roofline_fraction": isolated / update, "ceiling": isolated / in_situ,
            "ops_per_update": dispatched_ops(step, period)}


def profile_table(algos: list[str], batches: list[int], updates: int = 100,
                  n_transitions: int = common.N_TRANSITIONS) -> list[dict[str, Any]]:
    common.training_process()
    data = common.synthetic_transitions(n_transitions)
    cache: dict = {}
    # CQL's update costs ~14 IQL updates: it runs a tenth of the calls, as in throughput.py
    return [profile_row(name, batch, data, max(2, round(updates * common.UPDATE_SCALE.get(name, 1.0))), cache)
            for name in algos for batch in batches]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", default="iql,awac,baq,cql")
    p.add_argument("--batches", default="16,64,256")
    p.add_argument("--updates", type=int, default=100, help="calls per timing (CQL: a tenth)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    args.algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    for name in args.algos:
        common.our_config(name)  # unknown names -> UserError
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        raise UserError(f"--batches must be comma-separated positive integers, got {args.batches!r}") from None
    if not args.batches or min(args.batches) < 1:
        raise UserError(f"--batches must be comma-separated positive integers, got {args.batches}")
    if args.updates < 2:
        raise UserError(f"--updates must be >= 2, got {args.updates}")
    return args


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        rows = profile_table(args.algos, args.batches, args.updates)
        print(common.markdown_table(rows, KEYS))
        if args.json:
            common.write_json(args.json, {"argv": sys.argv[1:] if argv is None else argv, "rows": rows})

    return common.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
