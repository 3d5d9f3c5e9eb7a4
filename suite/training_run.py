"""One training run as named steps: set up (and resume), begin a step (the online env step; how many updates
it takes), the next batch, record an update's metrics, end the step (log, evaluate, checkpoint, stop), finish.
`suite.train.train` drives one run; `suite.vectorize` drives N seeds' runs in lockstep through the same steps.

Global step: offline gradient steps are 1..offline_steps, online env steps continue from offline_steps + 1.
Resuming from a checkpoint gives exactly the metrics of an uninterrupted run (RNG, env and buffer included).
"""

from __future__ import annotations

import ctypes
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite import checkpoint, stop
from suite.algorithm import Algorithm, Batch, get_algorithm
from suite.config import TrainConfig
from suite.data import Dataset, load_dataset
from suite.envs import evaluate, make_env
from suite.errors import UserError
from suite.files import atomic_write_text
from suite.nets import critic_layer_norm
from suite.replay import Replay
from suite.tracking import MemorySink, MetricsSink, flatten

CHECKPOINT = "checkpoint.pt"
# Buffered metrics reach the store at every checkpoint and at least this often, so a live run shows its curves
# (a step flushed after the last checkpoint is re-logged on resume with the identical value; readers dedup).
FLUSH_SECONDS = 30.0
Progress = Callable[[dict[str, Any]], None]


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


class TrainingRun:
    """One (algorithm, dataset, seed) trained offline then online. Set up on construction, resuming the
    checkpoint in `run_dir` if there is one; `stop_requested` is read at the end of every step, and when true
    the run checkpoints that step and raises suite.stop.StopRequested."""

    def __init__(self, cfg: TrainConfig, sink: MetricsSink | None = None, run_dir: Path | None = None,
                 progress: Progress | None = None, stop_requested: Callable[[], bool] = stop.requested) -> None:
        cfg.validate()
        keep_freed_memory()
        self.cfg, self.sink, self.progress, self.stop_requested = cfg, sink or MemorySink(), progress, stop_requested
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.dataset = load_dataset(cfg.dataset)
        self.env_id = cfg.env_id or self.dataset.env_id
        self.sink.set_tags({"dataset.sha256": self.dataset.sha256, "dataset.env_id": self.env_id,
                            **{f"dataset.{k}": str(v) for k, v in self.dataset.provenance.items()}})
        with critic_layer_norm(cfg.critic_layernorm):
            self.algo: Algorithm = get_algorithm(cfg.algo)(cfg.algo_config(), self.dataset.obs_dim,
                                                           self.dataset.act_dim, self.device)
        if cfg.compile:
            self.algo.compile()
        self._load_data()
        self.total, self.batch_size, self.protocol = cfg.offline_steps + cfg.online_steps, cfg.batch, cfg.protocol()
        self.window = _MetricWindow()
        self.evals: list[dict[str, float]] = []
        self.env: Any = None
        self.obs: np.ndarray | None = None
        self.episode = {"return": 0.0, "length": 0}
        self.step = 0
        self.ckpt_path = run_dir / CHECKPOINT if run_dir else None
        self.run_dir = run_dir
        if self.ckpt_path and self.ckpt_path.exists():
            self._resume(checkpoint.load(self.ckpt_path))
        if self.step == 0:
            self.sink.log_params(flatten(cfg.resolved()))
            if cfg.eval_at_start:
                self.evaluate(0)
        self._clock, self._clock_step = time.perf_counter(), self.step
        self._last_flush = self._clock
        self._last_metrics: dict[str, float] = {}
        self.last_score = self.evals[-1]["normalized_score"] if self.evals else float("nan")

    def _load_data(self) -> None:
        """The observation normaliser, the reward transform, and the offline data in the replay."""
        cfg, dataset = self.cfg, self.dataset
        self.norm = _ObsNormalizer(dataset, cfg.normalize_obs)
        self.r_scale, self.r_bias = self.algo.reward_transform(dataset.episode_returns())
        self.n_offline = len(dataset)
        self.replay = Replay(self.algo, self.n_offline + cfg.online_steps, dataset.obs_dim, dataset.act_dim,
                             self.device, cfg.protocol())
        self.replay.load_offline(
            self.norm(dataset.observations), dataset.actions, self.r_scale * dataset.rewards + self.r_bias,
            self.norm(dataset.next_observations), dataset.terminals, dataset.timeouts,
        )
        self.buffer = self.replay.buffer
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)

    def _resume(self, state: dict[str, Any]) -> None:
        if state["config"] != self.cfg.resolved():
            raise UserError(f"checkpoint {self.ckpt_path} was written by a different config; delete it or use "
                            "--force")
        self.step = state["step"]
        if self.step > self.cfg.offline_steps:  # the switch happened before this checkpoint
            self.algo.resume_online(self.buffer, state["algo"])
            if state.get("buffer") is not None:
                self.buffer.load_state_dict(state["buffer"])
            self.env = make_env(self.env_id, self.cfg.seed, self.cfg.max_episode_steps)
            self.env.reset(seed=self.cfg.seed)
            checkpoint.restore_env_state(self.env, state["env"])
            self.obs, self.episode = state["obs"], state["episode"]
        else:
            self.algo.load_state_dict(state["algo"])
        self.evals = state["evals"]
        self.window.sums, self.window.counts = state["window"]["sums"], state["window"]["counts"]
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["sampler"])

    @property
    def done(self) -> bool:
        return self.step >= self.total

    @property
    def online(self) -> bool:
        return self.step > self.cfg.offline_steps

    def begin_step(self) -> int:
        """Advance to the next step (online: one env step of the current policy); returns how many updates
        the step takes."""
        self.step += 1
        if not self.online:
            return 1
        self._env_step()
        return self.protocol.updates(self.step - self.cfg.offline_steps, self.cfg.utd)

    def _env_step(self) -> None:
        cfg, algo = self.cfg, self.algo
        if self.env is None:  # the switch
            algo.on_online_start(self.buffer)
            self.env = make_env(self.env_id, cfg.seed, cfg.max_episode_steps)
            self.obs, _ = self.env.reset(seed=cfg.seed)
        algo.on_online_step(self.step - cfg.offline_steps)
        act = algo.act(torch.as_tensor(self.norm(self.obs), device=self.device).unsqueeze(0), deterministic=False)
        act = act[0].cpu().numpy()
        next_obs, rew, terminated, truncated, _ = self.env.step(act)
        self.replay.add(self.norm(self.obs), act, self.r_scale * rew + self.r_bias, self.norm(next_obs), terminated)
        self.episode["return"] += float(rew)
        self.episode["length"] += 1
        self.obs = next_obs
        if terminated or truncated:
            self.replay.end_episode(self.episode["length"], terminated)
            ret = self.episode["return"]
            self.sink.log_metrics({"online/episode_return": ret,
                                   "online/episode_normalized_score": self.dataset.normalized_score(ret),
                                   "online/episode_length": self.episode["length"]}, self.step)
            self.episode = {"return": 0.0, "length": 0}
            self.obs, _ = self.env.reset()

    def next_batch(self) -> Batch:
        return self.replay.sample(self.batch_size, self.gen, self.online)

    def record(self, metrics: dict[str, torch.Tensor]) -> None:
        """An update's metrics (detached tensors), averaged over the log interval."""
        self.window.add(metrics)

    def end_step(self) -> None:
        """Log, evaluate, checkpoint and report the step as due; then stop here if a stop was requested."""
        cfg, step = self.cfg, self.step
        logged = step % cfg.log_interval == 0 or step == self.total
        if logged:
            self._log(step)
        if step % cfg.eval_interval == 0 or step == cfg.offline_steps or step == self.total:
            self.evaluate(step)
            self.last_score = self.evals[-1]["normalized_score"]
        saved = step % cfg.checkpoint_interval == 0 and step != self.total
        if saved:
            self.save_checkpoint()
        if self.progress and logged:
            self.progress({"phase": "online" if self.online else "offline", "step": step, "total": self.total,
                           "updates_per_s": self._last_metrics["perf/updates_per_s"], "score": self.last_score})
        if step != self.total and self.stop_requested():
            # Between steps the state is whole: the checkpoint resumes exactly here (the test compares the
            # resumed run with an uninterrupted one).
            if not saved:
                self.save_checkpoint()
            raise stop.StopRequested(step, checkpointed=self.ckpt_path is not None)

    def _log(self, step: int) -> None:
        now = time.perf_counter()
        metrics = self.window.reduce(step)
        metrics["perf/updates_per_s"] = ((step - self._clock_step) * (self.cfg.utd if self.online else 1)
                                         / (now - self._clock))
        self._clock, self._clock_step, self._last_metrics = now, step, metrics
        self.sink.log_metrics(metrics, step)
        if now - self._last_flush >= FLUSH_SECONDS:
            self.sink.flush()
            self._last_flush = now

    def policy(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action of the current policy for one raw observation."""
        t = torch.as_tensor(self.norm(obs), device=self.device).unsqueeze(0)
        return self.algo.act(t, deterministic=True)[0].cpu().numpy()

    def evaluate(self, step: int) -> None:
        cfg = self.cfg
        returns = evaluate(self.policy, self.env_id, cfg.eval_episodes, seed=cfg.seed + 10_000,
                           max_episode_steps=cfg.max_episode_steps)
        scores = np.array([self.dataset.normalized_score(r) for r in returns])
        row = {"step": step, "phase": "offline" if step <= cfg.offline_steps else "online",
               "return": float(returns.mean()), "return_std": float(returns.std()),
               "normalized_score": float(scores.mean()), "normalized_score_std": float(scores.std())}
        self.evals.append(row)
        self.sink.log_metrics({f"eval/{k}": v for k, v in row.items() if k not in ("step", "phase")}, step)

    def save_checkpoint(self) -> None:
        if not self.ckpt_path:
            return
        self.sink.flush()  # metrics up to this step are kept (store or spool) before the checkpoint that skips them
        online = self.online
        checkpoint.save(self.ckpt_path, {
            "config": self.cfg.resolved(), "step": self.step, "algo": self.algo.state_dict(),
            "buffer": self.buffer.state_dict(start=self.n_offline) if online else None,
            "env": checkpoint.env_state(self.env) if online and self.env is not None else None,
            "obs": self.obs, "episode": dict(self.episode), "evals": self.evals,
            "window": {"sums": self.window.sums, "counts": self.window.counts},
            "rng": {"torch": torch.get_rng_state(), "sampler": self.gen.get_state()},
        })

    def finish(self) -> TrainResult:
        """Flush, write the run's outputs (with `run_dir`) and return the scores at the end of each phase."""
        cfg = self.cfg
        if self.total == 0 and not self.evals:
            self.evaluate(0)
        self.sink.flush()
        if self.run_dir:
            _write_outputs(self.run_dir, cfg, self.algo, self.norm, self.evals, self.sink)
        offline = [e for e in self.evals if e["phase"] == "offline" and e["step"] == cfg.offline_steps]
        online = [e for e in self.evals if e["step"] == self.total and cfg.online_steps]
        return TrainResult(
            run_id=self.sink.run_id, evals=self.evals,
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
    atomic_write_text(config_file, json.dumps(cfg.resolved(), indent=2))
    lines = ["step,phase,return,return_std,normalized_score,normalized_score_std"]
    lines += [f"{e['step']},{e['phase']},{e['return']},{e['return_std']},{e['normalized_score']},"
              f"{e['normalized_score_std']}" for e in evals]
    eval_file = run_dir / "eval.csv"
    atomic_write_text(eval_file, "\n".join(lines) + "\n")
    sink.log_artifact(config_file)
    sink.log_artifact(eval_file)
    sink.log_artifact(final, "checkpoints")
