"""The one training loop: offline gradient steps, the switch hook, online env steps, evaluation, checkpoints.

Global step: offline gradient steps are 1..offline_steps, online env steps continue from offline_steps + 1.
Resuming from a checkpoint gives exactly the metrics of an uninterrupted run (RNG, env and buffer included).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite import checkpoint, stop
from suite.algorithm import Algorithm, apply_overrides, config_dict, get_algorithm, make_config
from suite.buffer import ReplayBuffer
from suite.data import Dataset, canonical_dataset_id, check_dataset_id, load_dataset
from suite.envs import evaluate, make_env
from suite.errors import UserError
from suite.tracking import MemorySink, MetricsSink, flatten

CHECKPOINT = "checkpoint.pt"
# Buffered metrics reach the store at every checkpoint and at least this often, so a live run shows its curves
# (a step flushed after the last checkpoint is re-logged on resume with the identical value; readers dedup).
FLUSH_SECONDS = 30.0


@dataclass
class TrainConfig:
    algo: str = "iql"
    dataset: str = "local:halfcheetah-medium"
    seed: int = 0
    # CORL's offline-to-online configs (`algorithms/finetune/*`, gym-mujoco): 1M offline + 1M online steps.
    offline_steps: int = 1_000_000
    online_steps: int = 1_000_000
    batch_size: int = 256  # IQL/CQL/AWAC papers and CORL
    utd: int = 1  # gradient updates per online env step (CORL's fine-tuning loop does one)
    eval_interval: int = 5_000  # CORL `eval_freq`
    eval_episodes: int = 10  # CORL `n_episodes`
    eval_at_start: bool = False
    log_interval: int = 1_000  # metrics are reduced (and `.item()`-ed) once per interval, never per step
    checkpoint_interval: int = 50_000
    normalize_obs: bool = True  # CORL `normalize: True`: z-score observations with the dataset's statistics
    max_episode_steps: int = 1_000  # Gymnasium MuJoCo's (and D4RL's) time limit
    env_id: str | None = None  # None: the dataset's own env
    device: str = "cpu"
    # Opt-in torch.compile of the networks (Algorithm.compile). Off by default: it costs tens of seconds of
    # compilation and measured no faster on one CPU core at these sizes (docs/performance.md).
    compile: bool = False
    algo_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        for name in ("offline_steps", "online_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "utd", "eval_interval", "eval_episodes", "log_interval",
                     "checkpoint_interval", "max_episode_steps"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise UserError(f"unknown device {self.device!r}; accepted: cpu, cuda, cuda:N")
        make_config(self.algo, self.algo_params)  # unknown algorithm / parameter -> UserError
        check_dataset_id(self.dataset)
        # One spelling per dataset, so `?a=1&b=2` and `?b=2&a=1` resume the same checkpoint and hash to one cell
        # (ids without variants are unchanged, and so are their cells).
        self.dataset = canonical_dataset_id(self.dataset)
        return self

    def resolved(self) -> dict[str, Any]:
        """The whole config with the algorithm's defaults filled in (what MLflow records)."""
        d = dataclasses.asdict(self)
        d["algo_params"] = config_dict(make_config(self.algo, self.algo_params))
        if not self.compile:
            # Recorded only when on, so that configs written before the option existed keep their identity
            # (matrix cell hashes, checkpoint resume).
            del d["compile"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown training key(s) {sorted(unknown)}; accepted: {', '.join(sorted(known))}")
        return apply_overrides(cls(), d, where="training config")


@dataclass
class TrainResult:
    run_id: str | None
    evals: list[dict[str, float]]
    offline_score: float | None
    online_score: float | None


class _ObsNormalizer:
    def __init__(self, dataset: Dataset, enabled: bool) -> None:
        if enabled:
            self.mean = dataset.observations.mean(0)
            self.std = dataset.observations.std(0) + 1e-3  # CORL `compute_mean_std(..., eps=1e-3)`
        else:
            self.mean = np.zeros(dataset.obs_dim, np.float32)
            self.std = np.ones(dataset.obs_dim, np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.mean) / self.std).astype(np.float32)


class _MetricWindow:
    """Sums detached metric tensors over `log_interval` steps; one host sync per interval. Counts are per key:
    a key that appears mid-window (e.g. an online-only term after the switch) is averaged over its own steps."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def reduce(self, step: int) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] / self.counts[k] for k in keys]).tolist()
        self.sums, self.counts = {}, {}
        out = {f"train/{k}": v for k, v in zip(keys, values, strict=True)}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}")
        return out


def keep_freed_memory() -> None:
    """glibc hands large freed blocks back to the OS and page-faults fresh ones in on the next update (CQL's
    big temporaries spent most of their time there); raised mmap/trim thresholds keep them in the heap.
    Measured: CQL 4.3 → 5.6 updates/CPU-s (docs/performance.md). No-op outside glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 1 << 28)  # M_MMAP_THRESHOLD: 256 MiB
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: 1 GiB


Progress = Callable[[dict[str, Any]], None]


def train(
    cfg: TrainConfig,
    sink: MetricsSink | None = None,
    run_dir: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train one (algorithm, dataset, seed) offline then online. With `run_dir`, checkpoints go there and an
    existing checkpoint is resumed."""
    run = training_loop(cfg, sink, run_dir, progress)
    algo, _ = next(run)
    try:
        batch = next(run)
        while True:
            batch = run.send(algo.update(batch))
    except StopIteration as finished:
        return finished.value



def training_loop(
    cfg: TrainConfig, sink: MetricsSink | None, run_dir: Path | None, progress: Progress | None,
    stop_requested: Callable[[], bool] = stop.requested,
) -> Generator[Any, dict[str, torch.Tensor] | None, TrainResult]:
    """The loop as a generator, so that one driver can run several seeds in lockstep (suite.vectorize): it
    yields (algorithm, step it resumes from) once set up, then every batch to update on, and takes back the update's
    metrics. Everything else (envs, evaluation, logging, checkpoints) stays here, once per run.

    `stop_requested` is read after every step; when it is true the loop checkpoints that step and raises
    suite.stop.StopRequested (see suite.stop for the signals that set it)."""
    cfg.validate()
    keep_freed_memory()
    sink = sink or MemorySink()
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    dataset = load_dataset(cfg.dataset)
    env_id = cfg.env_id or dataset.env_id
    sink.set_tags({"dataset.sha256": dataset.sha256, "dataset.env_id": env_id,
                   **{f"dataset.{k}": str(v) for k, v in dataset.provenance.items()}})
    algo_cls = get_algorithm(cfg.algo)
    algo: Algorithm = algo_cls(make_config(cfg.algo, cfg.algo_params), dataset.obs_dim, dataset.act_dim, device)
    if cfg.compile:
        algo.compile()
    norm = _ObsNormalizer(dataset, cfg.normalize_obs)
    r_scale, r_bias = algo.reward_transform(dataset.episode_returns())

    n_offline = len(dataset)
    buffer = ReplayBuffer(n_offline + cfg.online_steps, dataset.obs_dim, dataset.act_dim, device)
    buffer.add_batch(
        norm(dataset.observations), dataset.actions, r_scale * dataset.rewards + r_bias,
        norm(dataset.next_observations), dataset.terminals,
    )
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    total = cfg.offline_steps + cfg.online_steps
    window = _MetricWindow()
    evals: list[dict[str, float]] = []
    env = None
    obs = None
    episode = {"return": 0.0, "length": 0}
    start = 0

    ckpt_path = run_dir / CHECKPOINT if run_dir else None
    if ckpt_path and ckpt_path.exists():
        state = checkpoint.load(ckpt_path)
        if state["config"] != cfg.resolved():
            raise UserError(f"checkpoint {ckpt_path} was written by a different config; delete it or use --force")
        start = state["step"]
        algo.load_state_dict(state["algo"])
        if start > cfg.offline_steps:  # the switch happened before this checkpoint
            algo.on_online_start(buffer)  # reinstalls hook-made state (e.g. samplers) ...
            algo.load_state_dict(state["algo"])  # ... then the saved values win
            if state.get("buffer") is not None:
                buffer.load_state_dict(state["buffer"])
            env = make_env(env_id, cfg.seed, cfg.max_episode_steps)
            env.reset(seed=cfg.seed)
            checkpoint.restore_env_state(env, state["env"])
            obs, episode = state["obs"], state["episode"]
        evals = state["evals"]
        window.sums, window.counts = state["window"]["sums"], state["window"]["counts"]
        torch.set_rng_state(state["rng"]["torch"])
        gen.set_state(state["rng"]["sampler"])

    def policy(o: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(norm(o), device=device).unsqueeze(0)
        return algo.act(t, deterministic=True)[0].cpu().numpy()

    def run_eval(step: int) -> None:
        returns = evaluate(policy, env_id, cfg.eval_episodes, seed=cfg.seed + 10_000,
                           max_episode_steps=cfg.max_episode_steps)
        scores = np.array([dataset.normalized_score(r) for r in returns])
        row = {"step": step, "phase": "offline" if step <= cfg.offline_steps else "online",
               "return": float(returns.mean()), "return_std": float(returns.std()),
               "normalized_score": float(scores.mean()), "normalized_score_std": float(scores.std())}
        evals.append(row)
        sink.log_metrics({f"eval/{k}": v for k, v in row.items() if k not in ("step", "phase")}, step)

    def save_checkpoint(step: int) -> None:
        if not ckpt_path:
            return
        sink.flush()  # metrics up to `step` are stored before the checkpoint that would skip them on resume
        online = step > cfg.offline_steps
        checkpoint.save(ckpt_path, {
            "config": cfg.resolved(), "step": step, "algo": algo.state_dict(),
            "buffer": buffer.state_dict(start=n_offline) if online else None,
            "env": checkpoint.env_state(env) if online and env is not None else None,
            "obs": obs, "episode": dict(episode), "evals": evals,
            "window": {"sums": window.sums, "counts": window.counts},
            "rng": {"torch": torch.get_rng_state(), "sampler": gen.get_state()},
        })

    if start == 0:
        sink.log_params(flatten(cfg.resolved()))
        if cfg.eval_at_start:
            run_eval(0)
    clock, clock_step = time.perf_counter(), start
    last_flush = clock
    last_score = evals[-1]["normalized_score"] if evals else float("nan")

    yield algo, start
    for step in range(start + 1, total + 1):
        online = step > cfg.offline_steps
        if online:
            if env is None:  # the switch
                algo.on_online_start(buffer)
                env = make_env(env_id, cfg.seed, cfg.max_episode_steps)
                obs, _ = env.reset(seed=cfg.seed)
            algo.on_online_step(step - cfg.offline_steps)
            act = algo.act(torch.as_tensor(norm(obs), device=device).unsqueeze(0), deterministic=False)
            act = act[0].cpu().numpy()
            next_obs, rew, terminated, truncated, _ = env.step(act)
            buffer.add(norm(obs), act, r_scale * rew + r_bias, norm(next_obs), terminated)
            episode["return"] += float(rew)
            episode["length"] += 1
            obs = next_obs
            if terminated or truncated:
                sink.log_metrics({"online/episode_return": episode["return"],
                                  "online/episode_normalized_score": dataset.normalized_score(episode["return"]),
                                  "online/episode_length": episode["length"]}, step)
                episode = {"return": 0.0, "length": 0}
                obs, _ = env.reset()
        for _ in range(cfg.utd if online else 1):
            window.add((yield buffer.sample(cfg.batch_size, gen)))

        if step % cfg.log_interval == 0 or step == total:
            now = time.perf_counter()
            metrics = window.reduce(step)
            metrics["perf/updates_per_s"] = (step - clock_step) * (cfg.utd if online else 1) / (now - clock)
            clock, clock_step = now, step
            sink.log_metrics(metrics, step)
            if now - last_flush >= FLUSH_SECONDS:
                sink.flush()
                last_flush = now
        if step % cfg.eval_interval == 0 or step == cfg.offline_steps or step == total:
            run_eval(step)
            last_score = evals[-1]["normalized_score"]
        saved = step % cfg.checkpoint_interval == 0 and step != total
        if saved:
            save_checkpoint(step)
        if progress and (step % cfg.log_interval == 0 or step == total):
            progress({"phase": "online" if online else "offline", "step": step, "total": total,
                      "updates_per_s": metrics["perf/updates_per_s"], "score": last_score})
        if step != total and stop_requested():
            # Between steps the state is whole: the checkpoint resumes exactly here (the test compares the
            # resumed run with an uninterrupted one).
            if not saved:
                save_checkpoint(step)
            raise stop.StopRequested(step, checkpointed=ckpt_path is not None)

    if total == 0 and not evals:
        run_eval(0)
    sink.flush()
    if run_dir:
        _write_outputs(run_dir, cfg, algo, norm, evals, sink)
    offline = [e for e in evals if e["phase"] == "offline" and e["step"] == cfg.offline_steps]
    online = [e for e in evals if e["step"] == total and cfg.online_steps]
    return TrainResult(
        run_id=sink.run_id, evals=evals,
        offline_score=offline[-1]["normalized_score"] if offline else None,
        online_score=online[-1]["normalized_score"] if online else None,
    )


def _write_outputs(
    run_dir: Path, cfg: TrainConfig, algo: Algorithm, norm: _ObsNormalizer, evals: list, sink: MetricsSink
) -> None:
    """Final checkpoint (policy + normaliser), the resolved config and the eval table, as run artifacts."""
    final = run_dir / "final.pt"
    checkpoint.save(final, {"config": cfg.resolved(), "algo": algo.state_dict(),
                            "obs_mean": norm.mean, "obs_std": norm.std})
    config_file = run_dir / "config.json"
    checkpoint.atomic_write_text(config_file, json.dumps(cfg.resolved(), indent=2))
    lines = ["step,phase,return,return_std,normalized_score,normalized_score_std"]
    lines += [f"{e['step']},{e['phase']},{e['return']},{e['return_std']},{e['normalized_score']},"
              f"{e['normalized_score_std']}" for e in evals]
    eval_file = run_dir / "eval.csv"
    checkpoint.atomic_write_text(eval_file, "\n".join(lines) + "\n")
    sink.log_artifact(config_file)
    sink.log_artifact(eval_file)
    sink.log_artifact(final, "checkpoints")
