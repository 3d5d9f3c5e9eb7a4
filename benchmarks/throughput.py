"""Gradient-update throughput of the suite's algorithms, against d3rlpy and against a matmul roofline, and the
training loop's end-to-end overhead (project issue "Performance"; results and method in docs/performance.md).

    python benchmarks/throughput.py [--repeats 5] [--updates 300] [--warmup 50] [--algos iql,cql,awac,baq]
                                    [--no-d3rlpy] [--no-e2e] [--json out.json]

Every rate is measured on one thread (torch.set_num_threads(1)) with batch 256, 2×256 MLPs, 17-dim
observations and 6-dim actions (HalfCheetah's and Walker2d's shapes) on a synthetic 100k-transition buffer.
One timed update is `algo.update(buffer.sample(256, generator))`, sampling included as in `suite.train`;
d3rlpy's is `algo.update(dataset.sample_transition_batch(256))`, as in its own `fitter` loop. Rates are
medians over repeats (ours and d3rlpy's interleaved, so load changes hit both), after warm-up, by wall
clock and by process CPU time; on a shared machine only the CPU-time rate is stable.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from suite.algorithm import Algorithm, get_algorithm, make_config
from suite.buffer import ReplayBuffer
from suite.errors import UserError
from suite.train import keep_freed_memory

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256
N_TRANSITIONS = 100_000
EPISODE_STEPS = 1_000  # D4RL's episode length; sets where d3rlpy's episodes (and our s' rows) end
ALGOS = ("iql", "cql", "awac", "baq")
HIDDEN = [256, 256]
# The benchmarked configs: each algorithm's defaults with 2×256 networks (CQL's and AWAC's CORL defaults are
# 3×256). d3rlpy's configs are derived from these objects, so both sides train the identical config.
OVERRIDES: dict[str, dict[str, Any]] = {
    "iql": {"hidden": HIDDEN},
    "cql": {"hidden": HIDDEN},
    "awac": {"hidden": HIDDEN},
    "baq": {"base": "iql", "base_params": {"hidden": HIDDEN}, "behavior_hidden": HIDDEN},
}
# One CQL update costs ~14× an IQL update (31·B critic rows: the dataset action and 3·10 proposals per state),
# so CQL times this fraction of --updates and --warmup per repeat; the table's `updates` column says how many.
UPDATE_SCALE = {"cql": 0.1}
ROW_KEYS = ("algorithm", "updates", "ours_upd_s", "ours_upd_cpu_s", "d3rlpy_upd_s", "d3rlpy_upd_cpu_s", "ratio",
            "ratio_cpu", "d3rlpy_update_only_upd_cpu_s", "mflop_per_update", "achieved_gflop_s",
            "roofline_gflop_s", "roofline_fraction")


def training_process() -> None:
    """Set this process up as `suite.train.train` sets up a training process: one intra-op thread for torch
    (ours and d3rlpy share this process), one inter-op thread, and glibc keeping freed memory in the heap
    (`keep_freed_memory`; without it CQL page-faults ~6,000 times per update here, d3rlpy's ~770)."""
    keep_freed_memory()
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op work
        torch.set_num_interop_threads(1)


# --- data ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transitions:
    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray


def synthetic_transitions(n: int = N_TRANSITIONS, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM,
                          seed: int = 0) -> Transitions:
    """Episodes of EPISODE_STEPS steps ending in a time-out; s' is the next row's s within an episode, the
    layout d3rlpy's episodes assume. Values are random: throughput does not depend on them."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[EPISODE_STEPS - 1 :: EPISODE_STEPS] = 1.0
    timeouts[-1] = 1.0
    next_obs = np.roll(obs, -1, axis=0)
    next_obs[timeouts == 1.0] = obs[timeouts == 1.0]  # no successor row: any state will do for timing
    return Transitions(obs, rng.uniform(-1.0, 1.0, (n, act_dim)).astype(np.float32),
                       rng.standard_normal(n, dtype=np.float32), next_obs, np.zeros(n, np.float32), timeouts)


def our_config(name: str) -> Any:
    if name not in OVERRIDES:
        raise UserError(f"unknown algorithm {name!r} for the benchmark; accepted: {', '.join(OVERRIDES)}")
    return make_config(name, OVERRIDES[name])


def our_stepper(name: str, data: Transitions, seed: int = 0, compile: bool = False, batch: int = BATCH
                ) -> Callable[[], Any]:
    torch.manual_seed(seed)
    algo: Algorithm = get_algorithm(name)(our_config(name), data.obs.shape[1], data.act.shape[1])
    if compile:
        algo.compile()  # the first (warm-up) calls pay the compilation
    buffer = ReplayBuffer(len(data.obs), data.obs.shape[1], data.act.shape[1])
    buffer.add_batch(data.obs, data.act, data.rew, data.next_obs, data.terminals)
    gen = torch.Generator().manual_seed(seed)
    return lambda: algo.update(buffer.sample(batch, gen))


def vectorized_steppers(name: str, data: Transitions, seeds: int, device: str = "cpu"
                        ) -> dict[str, Callable[[], Any]]:
    """`seeds` seeds' updates per call: one after another (`separate`) or as one batched network
    (`vectorized`, suite.vectorize), on the same batches."""
    from suite.vectorize import SeedVectorizedStep

    def build(seed: int) -> Algorithm:
        torch.manual_seed(seed)
        return get_algorithm(name)(our_config(name), data.obs.shape[1], data.act.shape[1], device)

    buffer = ReplayBuffer(len(data.obs), data.obs.shape[1], data.act.shape[1], torch.device(device))
    buffer.add_batch(data.obs, data.act, data.rew, data.next_obs, data.terminals)
    gen = torch.Generator(device=device).manual_seed(0)
    separate = [build(s) for s in range(seeds)]
    vectorized = SeedVectorizedStep([build(s) for s in range(seeds)])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def one_by_one() -> None:
        for algo in separate:
            algo.update(buffer.sample(BATCH, gen))
        sync()

    def batched() -> None:
        vectorized.step([buffer.sample(BATCH, gen) for _ in range(seeds)])
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


# --- d3rlpy -------------------------------------------------------------------------------------------------
def import_d3rlpy() -> Any:
    """d3rlpy, with its import-time gym notice and its info logs silenced (warnings still show)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy
    except ImportError:
        raise UserError("d3rlpy is not installed: `pip install d3rlpy`, or pass --no-d3rlpy") from None
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def d3rlpy_config(name: str, cfg: Any) -> Any:
    """d3rlpy's config of algorithm `name` with every setting that shapes the update taken from our `cfg`."""
    if name not in ("iql", "cql", "awac"):
        raise UserError(f"d3rlpy has no {name!r}; it is compared on: iql, cql, awac")
    d3rlpy = import_d3rlpy()
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden))
    common = {"batch_size": BATCH, "gamma": cfg.gamma, "tau": cfg.tau, "n_critics": cfg.n_critics,
              "actor_encoder_factory": encoder, "critic_encoder_factory": encoder}
    if name == "iql":  # d3rlpy trains V with the critic's optimiser and lr (ours: value_lr == critic_lr)
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.critic_lr, expectile=cfg.expectile,
            weight_temp=cfg.temperature, max_weight=cfg.max_weight, value_encoder_factory=encoder, **common)
    if name == "cql":
        if cfg.max_target_backup or cfg.cql_lagrange or not cfg.cql_importance_sample:
            raise UserError("the CQL benchmark covers max_target_backup=False, cql_lagrange=False, "
                            "cql_importance_sample=True only")
        # alpha_learning_rate=0 with initial_alpha=1: α' fixed at 1 (ours without the Lagrange variant);
        # temp_learning_rate: the SAC temperature (ours tunes log α with the policy lr).
        return d3rlpy.algos.CQLConfig(
            actor_learning_rate=cfg.policy_lr, critic_learning_rate=cfg.critic_lr,
            temp_learning_rate=cfg.policy_lr if cfg.auto_entropy else 0.0, alpha_learning_rate=0.0,
            initial_alpha=1.0, conservative_weight=cfg.cql_alpha, n_action_samples=cfg.cql_n_actions,
            soft_q_backup=cfg.backup_entropy, max_q_backup=False, **common)
    # AWAC: one policy action per state for the advantage's V(s), as ours.
    return d3rlpy.algos.AWACConfig(
        actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.critic_lr, lam=cfg.awac_lambda,
        n_action_samples=1, **common)


def d3rlpy_steppers(name: str, data: Transitions, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """d3rlpy's update on a fresh minibatch from its own replay buffer, and on pre-sampled minibatches (its
    update alone: d3rlpy samples transition by transition in Python)."""
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    dataset = d3rlpy.dataset.MDPDataset(data.obs, data.act, data.rew.reshape(-1, 1),
                                        data.terminals, data.timeouts)
    algo = d3rlpy_config(name, our_config(name)).create(device="cpu:0")
    algo.build_with_dataset(dataset)
    pool = [dataset.sample_transition_batch(BATCH) for _ in range(16)]
    count = iter(range(sys.maxsize))
    return {
        "d3rlpy": lambda: algo.update(dataset.sample_transition_batch(BATCH)),
        "d3rlpy_update_only": lambda: algo.update(pool[next(count) % len(pool)]),
    }


# --- timing -------------------------------------------------------------------------------------------------
def time_calls(step: Callable[[], Any], n: int) -> tuple[float, float]:
    """Calls per second of `step` over `n` calls: (wall clock, process CPU time)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


def measure(steppers: dict[str, Callable[[], Any]], updates: int, warmup: int, repeats: int
            ) -> dict[str, dict[str, Any]]:
    """Median rates per stepper; repeats interleave the steppers, so a load change hits all of them."""
    for step in steppers.values():
        for _ in range(warmup):
            step()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in steppers}
    for _ in range(repeats):
        for key, step in steppers.items():
            runs[key].append(time_calls(step, updates))
    return {k: {"wall": statistics.median(w for w, _ in r), "cpu": statistics.median(c for _, c in r),
                "wall_repeats": [w for w, _ in r], "cpu_repeats": [c for _, c in r]} for k, r in runs.items()}


# --- FLOPs and the roofline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pass:
    """One evaluation of one MLP over `rows`·B inputs. `grad`: "params" = trained (weight and input grads),
    "inputs" = gradients reach the inputs only (a critic under `call_detached`), "none" = no backward."""

    net: str
    in_dim: int
    out_dim: int
    hidden: tuple[int, ...]
    rows: int = 1
    members: int = 1
    grad: str = "none"


def network_passes(name: str, cfg: Any, o: int = OBS_DIM, a: int = ACT_DIM) -> list[Pass]:
    """Every network pass of one update of algorithm `name` (read off its `update`), by configuration."""
    if name == "baq":  # offline BAQ = its base's update + one maximum-likelihood step of π_β (baq.py)
        base = make_config(cfg.base, cfg.base_params)
        return [*network_passes(cfg.base, base, o, a),
                Pass("behaviour π_β(s) (BC fit)", o, a, tuple(cfg.behavior_hidden), grad="params")]
    h, n = tuple(cfg.hidden), cfg.n_critics
    if name == "iql":
        return [
            Pass("target critic Q̄(s,a)", o + a, 1, h, members=n),  # value_loss: expectile target
            Pass("value V(s)", o, 1, h, grad="params"),  # value_loss
            Pass("value V(s')", o, 1, h),  # critic_loss: TD target, no_grad
            Pass("critic Q(s,a)", o + a, 1, h, members=n, grad="params"),  # critic_loss
            Pass("actor π(s)", o, a, h, grad="params"),  # actor_loss: log π(a|s)
        ]
    if name == "cql":
        k = cfg.cql_n_actions  # the tanh-Gaussian trunk outputs mean and log-std: 2·|A|
        return [
            Pass("actor π(s)", o, 2 * a, h, grad="params"),  # actor_loss: ã ~ π(·|s)
            Pass("critic Q(s,ã), frozen", o + a, 1, h, members=n, grad="inputs"),  # actor_loss, call_detached
            Pass("actor π(s')", o, 2 * a, h),  # td_target: a' ~ π(·|s'), no_grad
            Pass("target critic Q̄(s',a')", o + a, 1, h, members=n),  # td_target
            # sample_ood_actions, no_grad: one pass over (s, s'), then K draws per state (sample_n)
            Pass("actor π(s), π(s')", o, 2 * a, h, rows=2),
            Pass("critic Q(s,a) + 3K proposals", o + a, 1, h, rows=1 + 3 * k, members=n, grad="params"),
        ]
    if name == "awac":
        return [
            Pass("actor π(s')", o, a, h),  # td_target: a' ~ π(·|s'), no_grad
            Pass("target critic Q̄(s',a')", o + a, 1, h, members=n),  # td_target
            Pass("critic Q(s,a)", o + a, 1, h, members=n, grad="params"),  # critic_loss
            # actor_loss: log π(a|s); the same pass gives the advantage's ã ~ π(·|s)
            Pass("actor π(s)", o, a, h, grad="params"),
            Pass("critic Q(s,a), Q(s,ã)", o + a, 1, h, rows=2, members=n),  # advantage, no_grad
        ]
    raise UserError(f"no FLOP table for {name!r}; accepted: {', '.join(ALGOS)}")


def pass_gemms(p: Pass, batch: int = BATCH) -> list[tuple[int, int, int, int]]:
    """The matmuls (members, M, K, N) of a pass: per layer the forward x·W; when trained, the weight
    gradient xᵀ·∂y and the input gradient ∂y·Wᵀ (none at the first layer: batch data needs no gradient);
    for "inputs", input gradients at every layer and no weight gradients."""
    dims, rows, out = [p.in_dim, *p.hidden, p.out_dim], p.rows * batch, []
    for layer, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        out.append((p.members, rows, d_in, d_out))
        if p.grad == "params":
            out.append((p.members, d_in, rows, d_out))
        if p.grad == "inputs" or (p.grad == "params" and layer > 0):
            out.append((p.members, rows, d_out, d_in))
    return out


def gemm_flops(shape: tuple[int, int, int, int]) -> int:
    m, rows, k, cols = shape
    return 2 * m * rows * k * cols


def update_flops(passes: list[Pass], batch: int = BATCH) -> int:
    """Matmul FLOPs of one update (Adam and elementwise work are memory-bound and not counted)."""
    return sum(gemm_flops(g) for p in passes for g in pass_gemms(p, batch))


def gemm_seconds(shape: tuple[int, int, int, int], repeats: int = 5, min_seconds: float = 0.01) -> float:
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


def roofline(passes: list[Pass], cache: dict, repeats: int = 5, batch: int = BATCH) -> dict[str, float]:
    """FLOPs per update, and the GFLOP/s torch's matmuls reach on this core at exactly the update's shapes
    (total FLOPs over the summed time of the update's matmuls run alone): the rate if nothing but the
    matmuls cost time."""
    flops, seconds = 0, 0.0
    for g in (g for p in passes for g in pass_gemms(p, batch)):
        if g not in cache:
            cache[g] = gemm_seconds(g, repeats)
        flops += gemm_flops(g)
        seconds += cache[g]
    return {"flops": flops, "gflop_s": flops / seconds / 1e9, "matmul_seconds": seconds}


def matmul_peak(repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of square single-matrix products, for scale: what this core reaches on friendlier shapes."""
    return {f"{n}^3": gemm_flops((1, n, n, n)) / gemm_seconds((1, n, n, n), repeats) / 1e9 for n in (256, 1024)}


# --- the throughput table -----------------------------------------------------------------------------------
def throughput_table(algos: list[str], updates: int = 300, warmup: int = 50, repeats: int = 5,
                     with_d3rlpy: bool = True, n_transitions: int = N_TRANSITIONS,
                     with_compile: bool = False) -> list[dict[str, Any]]:
    training_process()
    data = synthetic_transitions(n_transitions)
    gemm_cache: dict = {}
    rows = []
    for name in algos:
        steppers = {"ours": our_stepper(name, data)}
        if with_d3rlpy and name != "baq":
            steppers.update(d3rlpy_steppers(name, data))
        if with_compile:
            steppers["ours_compiled"] = our_stepper(name, data, compile=True)
        scale = UPDATE_SCALE.get(name, 1.0)
        n_updates, n_warmup = max(1, round(updates * scale)), round(warmup * scale)
        rates = measure(steppers, n_updates, n_warmup, repeats)
        if torch.get_num_threads() != 1:  # neither side may have changed it
            raise RuntimeError(f"torch runs {torch.get_num_threads()} threads, expected 1")
        roof = roofline(network_passes(name, our_config(name)), gemm_cache, repeats)
        ours, peer = rates["ours"], rates.get("d3rlpy")
        achieved = roof["flops"] * ours["cpu"] / 1e9
        rows.append({
            "algorithm": name + (" (ours)" if name == "baq" else ""), "updates": n_updates,
            "ours_upd_s": ours["wall"], "ours_upd_cpu_s": ours["cpu"],
            "d3rlpy_upd_s": peer["wall"] if peer else None, "d3rlpy_upd_cpu_s": peer["cpu"] if peer else None,
            "ratio": ours["wall"] / peer["wall"] if peer else None,
            "ratio_cpu": ours["cpu"] / peer["cpu"] if peer else None,
            "d3rlpy_update_only_upd_cpu_s": rates["d3rlpy_update_only"]["cpu"] if peer else None,
            "mflop_per_update": roof["flops"] / 1e6, "achieved_gflop_s": achieved,
            "roofline_gflop_s": roof["gflop_s"], "roofline_fraction": achieved / roof["gflop_s"],
            "compiled_upd_s": rates["ours_compiled"]["wall"] if with_compile else None,
            "compiled_ratio": rates["ours_compiled"]["wall"] / ours["wall"] if with_compile else None,
            "repeats": rates,
        })
    return rows


def markdown_table(rows: list[dict[str, Any]], keys: tuple[str, ...] = ROW_KEYS) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float)
                                                                         else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


# --- end-to-end overhead of the training loop ---------------------------------------------------------------
@dataclass(frozen=True)
class E2EConfig:
    """A short offline→online run. The intervals keep the default loop's densities where a 3,000-step run
    can: 2 eval episodes per 1,000 steps = TrainConfig's 10 per 5,000, logging every 1,000 steps as the
    default; checkpoints every 1,250 steps (one offline, one online) are 40× denser than the default
    50,000."""

    algo: str = "baq"
    dataset: str = "local:hopper-medium-replay"
    offline_steps: int = 2_000
    online_steps: int = 1_000
    eval_interval: int = 1_000
    eval_episodes: int = 2
    log_interval: int = 1_000
    checkpoint_interval: int = 1_250
    seed: int = 0


class TimedSink:
    """Forwards every call to `sink` and adds up the wall seconds spent in each method."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.run_id = sink, sink.run_id
        self.seconds: dict[str, float] = defaultdict(float)

    def _call(self, method: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(self.sink, method)(*args)
        finally:
            self.seconds[method] += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("log_params", params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", path, artifact_path)

    def flush(self) -> None:
        self._call("flush")

    def end(self, status: str, error: str | None = None) -> None:
        self._call("end", status, error)


def _timed(func: Callable[..., Any], seconds: dict[str, float], key: str,
           when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not when(*args, **kwargs):
            return func(*args, **kwargs)
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    return wrapper


def bare_updates(cfg: E2EConfig) -> dict[str, float]:
    """The run's gradient updates alone: same algorithm, data, batch and sampling, no env, eval, logging or
    checkpoints. The offline→online hook runs between the two phases (it is algorithm work: BAQ scores the
    offline data there)."""
    from suite.data import load_dataset
    from suite.train import TrainConfig

    training_process()
    train_cfg = TrainConfig(algo=cfg.algo, dataset=cfg.dataset)
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset)
    algo = get_algorithm(cfg.algo)(make_config(cfg.algo), dataset.obs_dim, dataset.act_dim)
    scale, bias = algo.reward_transform(dataset.episode_returns())
    mean, std = dataset.observations.mean(0), dataset.observations.std(0) + 1e-3
    buffer = ReplayBuffer(len(dataset) + cfg.online_steps, dataset.obs_dim, dataset.act_dim)
    buffer.add_batch((dataset.observations - mean) / std, dataset.actions, scale * dataset.rewards + bias,
                     (dataset.next_observations - mean) / std, dataset.terminals)
    gen = torch.Generator().manual_seed(cfg.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for steps in (cfg.offline_steps, cfg.online_steps):
        for _ in range(steps):
            algo.update(buffer.sample(train_cfg.batch, gen))
        if steps == cfg.offline_steps:
            algo.on_online_start(buffer)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def run_with_timers(cfg: E2EConfig, workdir: Path, tracking: str = "mlflow") -> dict[str, Any]:
    """One `suite.train.train` run with timers around evaluation, env stepping, checkpoints, final outputs,
    dataset loading and every tracking call (the sink is created before the clock starts)."""
    from suite import checkpoint
    from suite import train as loop
    from suite.tracking import MemorySink, MLflowSink

    training_process()
    if tracking == "mlflow":
        inner = MLflowSink("throughput", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    else:
        inner = MemorySink()
    sink = TimedSink(inner)
    seconds: dict[str, float] = defaultdict(float)
    train_cfg = loop.TrainConfig(
        algo=cfg.algo, dataset=cfg.dataset, seed=cfg.seed, offline_steps=cfg.offline_steps,
        online_steps=cfg.online_steps, eval_interval=cfg.eval_interval, eval_episodes=cfg.eval_episodes,
        log_interval=cfg.log_interval, checkpoint_interval=cfg.checkpoint_interval)

    make_env = loop.make_env  # the original: the patch below replaces the module attribute

    def timed_env(*args: Any, **kwargs: Any) -> Any:
        import gymnasium as gym

        class TimedEnv(gym.Wrapper):
            def step(self, action: Any) -> Any:
                return _timed(self.env.step, seconds, "env_steps")(action)

            def reset(self, **kw: Any) -> Any:
                return _timed(self.env.reset, seconds, "env_steps")(**kw)

        return TimedEnv(_timed(make_env, seconds, "env_steps")(*args, **kwargs))

    is_periodic = lambda path, state: Path(path).name == loop.CHECKPOINT  # noqa: E731
    algo_cls = get_algorithm(cfg.algo)
    with contextlib.ExitStack() as stack:
        # The bare-update work inside the run (sampling, updates, the offline→online hook), so that the loop's
        # overhead can also be read off this one run, immune to speed drift between separate runs.
        for owner, method in ((algo_cls, "update"), (algo_cls, "on_online_start"), (ReplayBuffer, "sample")):
            stack.enter_context(mock.patch.object(owner, method, _timed(getattr(owner, method), seconds, "updates")))
        stack.enter_context(mock.patch.object(loop, "evaluate", _timed(loop.evaluate, seconds, "evaluation")))
        stack.enter_context(mock.patch.object(loop, "make_env", timed_env))
        stack.enter_context(mock.patch.object(
            loop, "load_dataset", _timed(loop.load_dataset, seconds, "dataset")))
        stack.enter_context(mock.patch.object(
            loop, "_write_outputs", _timed(loop._write_outputs, seconds, "final_outputs")))
        stack.enter_context(mock.patch.object(
            checkpoint, "save", _timed(checkpoint.save, seconds, "checkpoints", is_periodic)))
        wall, cpu = time.perf_counter(), time.process_time()
        loop.train(train_cfg, sink, workdir / "run")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sink.end("FINISHED")
    seconds["final_outputs"] -= sink.seconds["log_artifact"]  # artifacts are counted under tracking
    return {"wall": wall, "cpu": cpu, "parts": dict(seconds), "sink": dict(sink.seconds),
            "flush_seconds": getattr(inner, "flush_seconds", None)}


def end_to_end(cfg: E2EConfig, tracking: str = "mlflow") -> dict[str, Any]:
    """Run wall time over bare-update time (measured before and after the run, averaged), with a breakdown."""
    with tempfile.TemporaryDirectory(prefix="baq-throughput-") as tmp:
        before = bare_updates(cfg)
        run = run_with_timers(cfg, Path(tmp), tracking)
        after = bare_updates(cfg)
    bare = {k: (before[k] + after[k]) / 2 for k in ("wall", "cpu")}
    parts, sink = run["parts"], run["sink"]
    tracking_s = sum(v for k, v in sink.items() if k != "end")
    metrics_s = sink.get("log_metrics", 0.0) + sink.get("flush", 0.0)
    one_off = (parts.get("dataset", 0.0) + parts.get("final_outputs", 0.0) + sink.get("log_params", 0.0)
               + sink.get("set_tags", 0.0) + sink.get("log_artifact", 0.0))
    breakdown = {
        "evaluation": parts.get("evaluation", 0.0), "env_steps": parts.get("env_steps", 0.0),
        "checkpoints": parts.get("checkpoints", 0.0), "tracking": tracking_s,
        "dataset_load": parts.get("dataset", 0.0), "final_outputs": parts.get("final_outputs", 0.0),
    }
    breakdown["other"] = run["wall"] - bare["wall"] - sum(breakdown.values())
    in_run = parts.get("updates", 0.0)
    return {
        "config": cfg.__dict__, "run_wall_s": run["wall"], "run_cpu_s": run["cpu"],
        "bare_wall_s": bare["wall"], "bare_cpu_s": bare["cpu"], "bare_repeats_wall_s": [before["wall"],
                                                                                          after["wall"]],
        "overhead": run["wall"] / bare["wall"] - 1, "overhead_cpu": run["cpu"] / bare["cpu"] - 1,
        "overhead_recurring": (run["wall"] - one_off) / bare["wall"] - 1,
        "updates_in_run_s": in_run, "overhead_in_run": run["wall"] / in_run - 1 if in_run else None,
        "metrics_logging_share": metrics_s / run["wall"], "tracking_share": tracking_s / run["wall"],
        "flush_seconds": run["flush_seconds"], "breakdown_s": breakdown,
    }


def e2e_report(e2e: dict[str, Any]) -> str:
    c = e2e["config"]
    lines = [
        f"end to end: {c['algo']} on {c['dataset']}, {c['offline_steps']} offline + "
        f"{c['online_steps']} online steps: run {e2e['run_wall_s']:.1f} s wall vs "
        f"{e2e['bare_wall_s']:.1f} s of bare updates "
        f"(repeats {', '.join(f'{s:.1f}' for s in e2e['bare_repeats_wall_s'])} s)",
        f"  overhead {100 * e2e['overhead']:.1f}% wall, {100 * e2e['overhead_cpu']:.1f}% CPU time; "
        "without one-off costs (dataset load, params/tags, final outputs) "
        f"{100 * e2e['overhead_recurring']:.1f}%",
        f"  in the same run: {e2e['updates_in_run_s']:.1f} s of sampling, updates and the offline→online hook; "
        f"everything else {100 * e2e['overhead_in_run']:.1f}% on top of them",
        f"  metrics logging {100 * e2e['metrics_logging_share']:.2f}% of the run (MLflow flush_seconds "
        f"{e2e['flush_seconds'] if e2e['flush_seconds'] is None else round(e2e['flush_seconds'], 3)} s); "
        f"all tracking calls {100 * e2e['tracking_share']:.2f}%",
        "  breakdown (s): " + ", ".join(f"{k} {v:.2f}" for k, v in e2e["breakdown_s"].items()),
    ]
    return "\n".join(lines)


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


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)


def run_cli(body: Callable[[], None]) -> int:
    """Run a benchmark script's `body`: exit status 0, or 2 with the one-line message of a UserError."""
    try:
        body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


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
        vec_algos = [a for a in args.algos if get_algorithm(a)(our_config(a), 1, 1).vectorizable]
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
