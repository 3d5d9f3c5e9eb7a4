"""FLOPs and the matmul roofline, recorded from the real update: a dispatch mode notes the shape of every
matmul one update runs (forward, autograd backward and optimiser alike), so the table can never drift from
the code. The roofline is torch's own matmul speed on this core at exactly those shapes, run alone."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# (members, rows, inner, cols): `members` > 1 for the batched products of ensembles (EnsembleLinear: bmm).
Gemm = tuple[int, int, int, int]
_aten = torch.ops.aten
_TWO_D = {_aten.mm.default: (0, 1), _aten.addmm.default: (1, 2)}
_BATCHED = {_aten.bmm.default: (0, 1), _aten.baddbmm.default: (1, 2)}


class MatmulRecorder(TorchDispatchMode):
    """Records the shape of every matrix product dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.gemms: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _TWO_D:
            a, b = (args[i] for i in _TWO_D[func])
            self.gemms.append((1, a.shape[0], a.shape[1], b.shape[1]))
        elif func in _BATCHED:
            a, b = (args[i] for i in _BATCHED[func])
            self.gemms.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
        return func(*args, **(kwargs or {}))


def update_matmuls(step: Callable[[], Any], calls: int = 1) -> list[Gemm]:
    """The matmuls of `calls` consecutive calls of `step` (updates), in the order they ran. Updates that
    differ in kind (ReBRAC steps its actor on every `policy_freq`-th one) need one whole period: see
    `benchmarks.common.update_period`."""
    with MatmulRecorder() as recorder:
        for _ in range(calls):
            step()
    return recorder.gemms


def gemm_flops(shape: Gemm) -> int:
    m, rows, k, cols = shape
    return 2 * m * rows * k * cols


def update_flops(gemms: list[Gemm]) -> int:
    """Matmul FLOPs of one update (Adam and elementwise work are memory-bound and not counted)."""
    return sum(gemm_flops(g) for g in gemms)


def gemm_seconds(shape: Gemm, repeats: int = 5, min_seconds: float = 0.01) -> float:
    """Median CPU seconds of one matmul of this shape (torch.bmm for ensembles, as EnsembleLinear runs)."""
    m, rows, k, cols = shape
    a, b = torch.randn(m, rows, k), torch.randn(m, k, cols)
    if m == 1:
        a, b = a[0], b[0]
    op = torch.bmm if m > 1 else torch.mm
    out = op(a, b)
    start, iters = time.process_time(), 0
    while time.process_time() - start < min_seconds / 4 or iters < 3:  # calibrate the loop length
        op(a, b, out=out)
        iters += 1
    iters = max(3, 4 * iters)
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(iters):
            op(a, b, out=out)
        samples.append((time.process_time() - start) / iters)
    return statistics.median(samples)


def roofline(gemms: list[Gemm], cache: dict, repeats: int = 5) -> dict[str, float]:
    """FLOPs per update, and the GFLOP/s torch's matmuls reach on this core at exactly the update's shapes
    (total FLOPs over the summed time of the update's matmuls run alone): the rate if nothing but the
    matmuls cost time."""
    flops, seconds = 0, 0.0
    for g in gemms:
        if g not in cache:
            cache[g] = gemm_seconds(g, repeats)
        flops += gemm_flops(g)
        seconds += cache[g]
    return {"flops": flops, "gflop_s": flops / seconds / 1e9, "matmul_seconds": seconds}


def matmul_peak(repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of square single-matrix products, for scale: what this core reaches on friendlier shapes."""
    return {f"{n}^3": gemm_flops((1, n, n, n)) / gemm_seconds((1, n, n, n), repeats) / 1e9 for n in (256, 1024)}
