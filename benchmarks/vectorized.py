"""N seeds trained one after another against N seeds as one batched network (suite.vectorize)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import (
    N_TRANSITIONS,
    UPDATE_SCALE,
    Transitions,
    benchmark_batch,
    device_sync,
    measure,
    our_config,
    synthetic_extras,
    synthetic_transitions,
)
from suite.algorithm import Algorithm, get_algorithm
from suite.buffer import ReplayBuffer


def vectorized_steppers(name: str, data: Transitions, seeds: int, device: str = "cpu"
                        ) -> dict[str, Callable[[], Any]]:
    """`seeds` seeds' updates per call: one after another (`separate`) or as one batched network
    (`vectorized`, suite.vectorize), on the same batches."""
    from suite.vectorize import SeedVectorizedStep

    def build(seed: int) -> Algorithm:
        torch.manual_seed(seed)
        return get_algorithm(name)(our_config(name), data.obs.shape[1], data.act.shape[1], device)

    separate = [build(s) for s in range(seeds)]
    fields, batch = separate[0].batch_fields, benchmark_batch(name)
    buffer = ReplayBuffer(len(data.obs), data.obs.shape[1], data.act.shape[1], torch.device(device), extras=fields)
    buffer.add_batch(data.obs, data.act, data.rew, data.next_obs, data.terminals, **synthetic_extras(data, fields))
    gen = torch.Generator(device=device).manual_seed(0)
    vectorized = SeedVectorizedStep([build(s) for s in range(seeds)])
    sync = device_sync(device)

    def one_by_one() -> None:
        for algo in separate:
            algo.update(buffer.sample(batch, gen))
        sync()

    def batched() -> None:
        vectorized.step([buffer.sample(batch, gen) for _ in range(seeds)])
        sync()

    return {"separate": one_by_one, "vectorized": batched}


def vectorize_table(algos: list[str], seeds: int, updates: int, warmup: int, repeats: int, device: str = "cpu",
                    n_transitions: int = N_TRANSITIONS) -> list[dict[str, Any]]:
    """Seed-updates/s of N seeds trained one after another against N seeds as one batched network."""
    data = synthetic_transitions(n_transitions)
    rows = []
    for name in algos:
        scale = UPDATE_SCALE.get(name, 1.0)
        n_calls = max(1, round(updates * scale))
        rates = measure(vectorized_steppers(name, data, seeds, device), n_calls, round(warmup * scale), repeats)
        rows.append({"algo": name, "seeds": seeds, "device": device, "calls": n_calls,
                     "separate_seed_upd_s": seeds * rates["separate"]["wall"],
                     "vectorized_seed_upd_s": seeds * rates["vectorized"]["wall"],
                     "ratio": rates["vectorized"]["wall"] / rates["separate"]["wall"]})
    return rows
