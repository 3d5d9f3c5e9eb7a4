"""`baq behavior train`: SAC on a Gymnasium task, evaluated periodically, ending in behaviour files.

One run: a random-policy reference return, then `steps` environment steps (uniform random actions for the first
`random_steps`, the SAC actor's stochastic actions after), one SAC gradient step per env step once the pool holds
a minibatch, and every `eval_interval` steps a snapshot of the actor in the policy-file format, evaluated with
stochastic actions. At the end suite.behavior.snapshots picks the expert and medium snapshots and
suite.behavior.files writes them, the medium-replay stream (every transition up to the medium snapshot) and the
task's index.json entry. Checkpoints (atomic) make the run resumable with identical results; a SIGINT/SIGTERM
checkpoints the current step and stops (suite.stop), like `baq train`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite import checkpoint, stop
from suite.behavior.sac import SAC, SACBatch, SACConfig
from suite.envs import evaluate, make_env
from suite.errors import UserError
from suite.tracking import MemorySink, MetricsSink, flatten

CHECKPOINT = "checkpoint.pt"
EVAL_SEED_OFFSET = 10_000  # evaluation episodes are seeded apart from the training env (as suite/train.py)
Progress = Callable[[dict[str, Any]], None]


@dataclass
class BehaviorConfig:
    env_id: str
    steps: int = 1_000_000  # 1812.05905 Fig. 1: Hopper-v1 and Walker2d-v1 are trained for 1M env steps
    seed: int = 0
    # Uniform random actions before the actor acts: Spinning Up's SAC `start_steps=10000`; the shared
    # behaviour files' SAC runs used the same 10k (d3rlpy). 1812.05905 does not state a value.
    random_steps: int = 10_000
    eval_interval: int = 5_000  # CORL `eval_freq` (every snapshot is a medium/expert candidate)
    eval_episodes: int = 10  # CORL `n_episodes`; also the episodes of the random reference return
    checkpoint_interval: int = 25_000
    log_interval: int = 1_000
    max_episode_steps: int = 1_000  # Gymnasium MuJoCo's (and D4RL's) time limit
    sac: SACConfig = field(default_factory=SACConfig)

    def validate(self) -> BehaviorConfig:
        for name in ("steps", "eval_interval", "eval_episodes", "checkpoint_interval", "log_interval",
                     "max_episode_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.random_steps < 0 or self.seed < 0:
            raise UserError(f"random_steps and seed must be >= 0, got {self.random_steps} and {self.seed}")
        if self.eval_interval > self.steps:
            raise UserError(f"eval_interval {self.eval_interval} exceeds steps {self.steps}: no snapshot to keep")
        return self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Snapshot:
    step: int
    arrays: dict[str, np.ndarray]
    returns: np.ndarray  # stochastic evaluation returns


@dataclass
class BehaviorResult:
    """What one finished run produced: the snapshots and the random reference, ready to be written out."""

    config: BehaviorConfig
    random_returns: np.ndarray
    snapshots: list[Snapshot]
    stream: dict[str, np.ndarray]  # every transition of the run, in order
    run_id: str | None = None


def numpy_policy(arrays: dict[str, np.ndarray], rng: np.random.Generator | None) -> Callable[[np.ndarray], Any]:
    """One observation -> one action of a policy file's arrays: stochastic with `rng`, else tanh(mean)."""
    from suite.data.rollouts import TanhGaussianPolicy

    policy = TanhGaussianPolicy(arrays)

    def act(obs: np.ndarray) -> np.ndarray:
        noise = None if rng is None else rng.standard_normal((1, policy.b["last_fc"].shape[0]), dtype=np.float32)
        return policy(obs[None], noise)[0]

    return act


def evaluate_arrays(cfg: BehaviorConfig, arrays: dict[str, np.ndarray] | None, episodes: int, salt: int,
                    stochastic: bool = True) -> np.ndarray:
    """Returns of a policy file's arrays (None: uniform random actions over the action space), seeded by the
    run's seed and `salt` only, so a snapshot's evaluation is the same on resume."""
    rng = np.random.default_rng([cfg.seed, salt])
    if arrays is None:
        probe = make_env(cfg.env_id, cfg.seed, cfg.max_episode_steps)
        space = probe.action_space
        probe.close()
        policy: Callable[[np.ndarray], Any] = lambda obs: rng.uniform(space.low, space.high)  # noqa: E731
    else:
        policy = numpy_policy(arrays, rng if stochastic else None)
    return evaluate(policy, cfg.env_id, episodes, seed=cfg.seed + EVAL_SEED_OFFSET,
                    max_episode_steps=cfg.max_episode_steps)


class _Pool:
    """Every transition of the run in order (SAC samples from the newest `replay_size` of them)."""

    def __init__(self, size: int, obs_dim: int, act_dim: int) -> None:
        self.arrays = {"observations": np.zeros((size, obs_dim), np.float32),
                       "actions": np.zeros((size, act_dim), np.float32), "rewards": np.zeros(size, np.float32),
                       "next_observations": np.zeros((size, obs_dim), np.float32),
                       "terminals": np.zeros(size, bool), "timeouts": np.zeros(size, bool)}
        self.n = 0

    def add(self, **row: Any) -> None:
        for key, value in row.items():
            self.arrays[key][self.n] = value
        self.n += 1

    def sample(self, rng: np.random.Generator, batch_size: int, replay_size: int) -> SACBatch:
        index = rng.integers(max(0, self.n - replay_size), self.n, size=batch_size)
        pick = {k: torch.from_numpy(v[index]) for k, v in self.arrays.items() if k != "timeouts"}
        return SACBatch(pick["observations"], pick["actions"], pick["rewards"], pick["next_observations"],
                        pick["terminals"].float())

    def prefix(self, n: int) -> dict[str, np.ndarray]:
        return {k: v[:n].copy() for k, v in self.arrays.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.n = len(arrays["rewards"])
        for key, value in arrays.items():
            self.arrays[key][: self.n] = value


class _Run:
    """The state of one training: SAC, the env, the pool, the snapshots; checkpointed as a whole."""

    def __init__(self, cfg: BehaviorConfig, sink: MetricsSink, run_dir: Path | None) -> None:
        self.cfg, self.sink = cfg, sink
        self.ckpt = run_dir / CHECKPOINT if run_dir else None
        torch.manual_seed(cfg.seed)
        self.env = make_env(cfg.env_id, cfg.seed, cfg.max_episode_steps)
        space = self.env.action_space
        if len(space.shape) != 1 or np.any(space.low > -1.0) or np.any(space.high < 1.0):
            bounds = f"[{float(np.min(space.low)):g}, {float(np.max(space.high)):g}]"
            raise UserError(f"{cfg.env_id}: action bounds {bounds} do not contain [-1, 1], where "
                            "the policy files' tanh actions lie; accepted: tasks with continuous actions in a box "
                            "around [-1, 1] (Hopper, Walker2d, HalfCheetah, Ant, Swimmer, InvertedPendulum, ...)")
        obs_dim, act_dim = self.env.observation_space.shape[0], space.shape[0]
        self.sac = SAC(cfg.sac, obs_dim, act_dim)
        self.pool = _Pool(cfg.steps, obs_dim, act_dim)
        self.rng = np.random.default_rng(np.random.SeedSequence(cfg.seed))
        self.obs = self.env.reset(seed=cfg.seed)[0]
        self.episode = {"return": 0.0, "length": 0}
        self.snapshots: list[Snapshot] = []
        self.random_returns = np.zeros(0)
        self.sums: dict[str, float] = {}
        self.step = 0

    def resume_or_start(self) -> None:
        if self.ckpt and self.ckpt.exists():
            self._restore(checkpoint.load(self.ckpt))
            return
        self.sink.log_params(flatten(self.cfg.as_dict()))
        self.random_returns = evaluate_arrays(self.cfg, None, self.cfg.eval_episodes, salt=0)
        self.sink.log_metrics({"eval/random_return": float(self.random_returns.mean())}, 0)

    def _restore(self, state: dict[str, Any]) -> None:
        # `steps` may change on resume (to no fewer than are done): nothing before the last step depends on it.
        saved, ours = dict(state["config"]), self.cfg.as_dict()
        if {**saved, "steps": 0} != {**ours, "steps": 0} or state["step"] > self.cfg.steps:
            raise UserError(f"checkpoint {self.ckpt} ({state['step']} steps done) was written by a different config; "
                            "only --steps may change, to no fewer than are done; delete it or change --run-dir")
        self.step, self.random_returns, self.episode = state["step"], state["random_returns"], state["episode"]
        self.sac.load_state_dict(state["sac"])
        self.pool.load(state["pool"])
        self.snapshots = [Snapshot(**s) for s in state["snapshots"]]
        self.obs, self.sums = state["obs"], state["sums"]
        checkpoint.restore_env_state(self.env, state["env"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])

    def save(self) -> None:
        if not self.ckpt:
            return
        self.sink.flush()
        checkpoint.save(self.ckpt, {
            "config": self.cfg.as_dict(), "step": self.step, "sac": self.sac.state_dict(),
            "pool": self.pool.prefix(self.pool.n), "snapshots": [dataclasses.asdict(s) for s in self.snapshots],
            "random_returns": self.random_returns, "episode": dict(self.episode), "obs": self.obs,
            "sums": dict(self.sums), "env": checkpoint.env_state(self.env),
            "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        })

    def env_step(self) -> None:
        cfg = self.cfg
        if self.step <= cfg.random_steps:  # `step` is already the 1-based number of this env step
            action = self.rng.uniform(-1.0, 1.0, self.pool.arrays["actions"].shape[1]).astype(np.float32)
        else:
            action = self.sac.act(self.obs)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.pool.add(observations=self.obs, actions=action, rewards=reward, next_observations=next_obs,
                      terminals=terminated, timeouts=truncated and not terminated)
        self.episode["return"] += float(reward)
        self.episode["length"] += 1
        self.obs = next_obs
        if terminated or truncated:
            self.sink.log_metrics({"online/episode_return": self.episode["return"],
                                   "online/episode_length": self.episode["length"]}, self.step)
            self.episode = {"return": 0.0, "length": 0}
            self.obs = self.env.reset()[0]

    def learn(self) -> None:
        sac_cfg = self.cfg.sac
        if self.pool.n < sac_cfg.batch_size:
            return
        metrics = self.sac.update(self.pool.sample(self.rng, sac_cfg.batch_size, sac_cfg.replay_size))
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.sums["_count"] = self.sums.get("_count", 0.0) + 1.0

    def log_window(self, steps_per_s: float) -> None:
        count = self.sums.pop("_count", 0.0)
        metrics = {f"train/{k}": v / count for k, v in self.sums.items()} if count else {}
        self.sink.log_metrics({**metrics, "perf/steps_per_s": steps_per_s}, self.step)
        self.sums = {}

    def snapshot(self) -> float:
        arrays = self.sac.policy_arrays()
        returns = evaluate_arrays(self.cfg, arrays, self.cfg.eval_episodes, salt=self.step)
        self.snapshots.append(Snapshot(self.step, arrays, returns))
        self.sink.log_metrics({"eval/return": float(returns.mean()), "eval/return_std": float(returns.std())},
                              self.step)
        return float(returns.mean())


def train_behavior(cfg: BehaviorConfig, sink: MetricsSink | None = None, run_dir: Path | None = None,
                   progress: Progress | None = None,
                   stop_requested: Callable[[], bool] = stop.requested) -> BehaviorResult:
    """Train SAC for `cfg.steps` env steps (resuming `run_dir`'s checkpoint if there is one)."""
    cfg.validate()
    run = _Run(cfg, sink or MemorySink(), run_dir)
    run.resume_or_start()
    clock, clock_step = time.perf_counter(), run.step
    last = run.snapshots[-1].returns.mean() if run.snapshots else float("nan")
    while run.step < cfg.steps:
        run.step += 1
        run.env_step()
        run.learn()
        step = run.step
        if step % cfg.log_interval == 0 or step == cfg.steps:
            now = time.perf_counter()
            rate = (step - clock_step) / max(now - clock, 1e-9)
            clock, clock_step = now, step
            run.log_window(rate)
            if progress:
                progress({"phase": "sac", "step": step, "total": cfg.steps, "updates_per_s": rate, "score": last})
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            last = run.snapshot()
        saved = step % cfg.checkpoint_interval == 0 and step != cfg.steps
        if saved:
            run.save()
        if step != cfg.steps and stop_requested():
            if not saved:
                run.save()
            raise stop.StopRequested(step, checkpointed=run.ckpt is not None)
    run.save()
    run.sink.flush()
    return BehaviorResult(cfg, run.random_returns, run.snapshots, run.pool.prefix(run.pool.n), run.sink.run_id)
