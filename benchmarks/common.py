"""What every benchmark shares: the process set-up, the synthetic data, our configured update, timing and
tables. Every rate is measured on one thread with 17-dim observations and 6-dim actions (HalfCheetah's and
Walker2d's shapes) on a synthetic 100k-transition buffer; one timed update is
`algo.update(buffer.sample(batch, generator))`, sampling included as in `suite.train`. The algorithms compared
with d3rlpy (ALGOS) run batch 256 and 2×256 MLPs; Cal-QL and ReBRAC, which have no peer here, run their own
defaults (3×256 networks; ReBRAC's batch 1024), so their rates are what a training run of theirs costs."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
OWN_DEFAULTS = ("calql", "rebrac")  # timed on their own networks and batch size (no d3rlpy peer here)
HIDDEN = [256, 256]
# The benchmarked configs: each algorithm's defaults with 2×256 networks (CQL's and AWAC's CORL defaults are
# 3×256). d3rlpy's configs are derived from these objects, so both sides train the identical config.
OVERRIDES: dict[str, dict[str, Any]] = {
    "iql": {"hidden": HIDDEN},
    "cql": {"hidden": HIDDEN},
    "awac": {"hidden": HIDDEN},
    "baq": {"base": "iql", "base_params": {"hidden": HIDDEN}, "behavior_hidden": HIDDEN},
    **{name: {} for name in OWN_DEFAULTS},
}
# One CQL update costs ~14× an IQL update (31·B critic rows: the dataset action and 3·10 proposals per state),
# so CQL times this fraction of --updates and --warmup per repeat; the table's `updates` column says how many.
UPDATE_SCALE = {"cql": 0.1, "calql": 0.1}


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


def benchmark_batch(name: str) -> int:
    """The minibatch size `name` is timed with: the algorithm's own for OWN_DEFAULTS, else BATCH."""
    return get_algorithm(name).batch_size if name in OWN_DEFAULTS else BATCH


def update_period(name: str) -> int:
    """Updates after which `name`'s updates repeat in kind: ReBRAC's `policy_freq` (its actor and targets step
    on every such update), 1 for the others. Per-update counts (FLOPs, ops) average over one period."""
    return int(getattr(our_config(name), "policy_freq", 1))


def synthetic_extras(data: Transitions, fields: tuple[str, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Values for the optional batch fields an algorithm reads: a return-to-go per row (Cal-QL) and the
    dataset's next action (ReBRAC), the next row's action as s' is the next row's state."""
    rng = np.random.default_rng(seed)
    values = {"rtg": rng.standard_normal(len(data.obs), dtype=np.float32),
              "next_act": np.roll(data.act, -1, axis=0)}
    return {field: values[field] for field in fields}


def our_stepper(name: str, data: Transitions, seed: int = 0, compile: bool = False, batch: int | None = None,
                device: str = "cpu") -> Callable[[], Any]:
    """One call = one update of our algorithm `name` on a fresh minibatch (`batch` rows, default
    `benchmark_batch(name)`); on a GPU the call waits for the device, so that timing it times the work."""
    torch.manual_seed(seed)
    batch = benchmark_batch(name) if batch is None else batch
    algo: Algorithm = get_algorithm(name)(our_config(name), data.obs.shape[1], data.act.shape[1], device)
    if compile:
        algo.compile()  # the first (warm-up) calls pay the compilation
    buffer = ReplayBuffer(len(data.obs), data.obs.shape[1], data.act.shape[1], torch.device(device),
                          extras=algo.batch_fields)
    buffer.add_batch(data.obs, data.act, data.rew, data.next_obs, data.terminals,
                     **synthetic_extras(data, algo.batch_fields, seed))
    gen = torch.Generator(device=device).manual_seed(seed)
    sync = device_sync(device)

    def step() -> Any:
        out = algo.update(buffer.sample(batch, gen))
        sync()
        return out

    return step


def device_sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


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


def markdown_table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float)
                                                                         else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


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


def write_random_d4rl_file(path: Path, n: int = 3_000, episode_steps: int = 100, seed: int = 0) -> None:
    """A D4RL-layout HDF5 file of uniformly random-action Hopper-v4 episodes (`d4rl:hopper-medium-v2` when
    named `hopper_medium-v2.hdf5` in $D4RL_DATASET_DIR): real dynamics, no download, for tests and checks."""
    import gymnasium as gym
    import h5py

    env = gym.make("Hopper-v4", max_episode_steps=episode_steps)
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                               "terminals", "timeouts")}
    obs, _ = env.reset(seed=seed)
    while len(cols["rewards"]) < n:
        act = rng.uniform(-1, 1, size=3).astype(np.float32)
        next_obs, rew, term, trunc, _ = env.step(act)
        trunc = trunc or len(cols["rewards"]) == n - 1
        for k, v in zip(cols, (obs, act, rew, next_obs, term, trunc and not term), strict=True):
            cols[k].append(v)
        obs = env.reset()[0] if term or trunc else next_obs
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=np.asarray(v, dtype=bool if k in ("terminals", "timeouts") else np.float32))
