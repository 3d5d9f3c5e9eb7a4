"""D4RL-protocol rollouts of a behaviour policy (or uniform random actions) in a Gymnasium MuJoCo task: the
transitions a `local:` dataset is built from (suite.data.local). Numpy only: no torch here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from suite.envs import route_mujoco_warnings
from suite.errors import UserError

MAX_EPISODE_STEPS = 1000  # D4RL: episodes of at most 1000 steps
# At most this many envs step in lockstep, with one batched policy forward per step. The count shapes
# the data (which episodes finish first), so it depends only on n_transitions (never on the CPU count)
# and is part of the build key.
ROLLOUT_ENVS = 32


def rollout_envs(n_transitions: int) -> int:
    """Lockstep env count: enough to fill `n_transitions` with whole episodes, at most ROLLOUT_ENVS."""
    return int(np.clip(-(-n_transitions // MAX_EPISODE_STEPS), 1, ROLLOUT_ENVS))


class TanhGaussianPolicy:
    """The behaviour policy of a `*_policy.npz` file (D4RL's rlkit layout, weights as (out, in))."""

    LAYERS = ("fc0", "fc1", "last_fc", "last_fc_log_std")

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = {name: weights[f"{name}/weight"].astype(np.float32).T for name in self.LAYERS}
        self.b = {name: weights[f"{name}/bias"].astype(np.float32) for name in self.LAYERS}

    @classmethod
    def load(cls, path: Path) -> TanhGaussianPolicy:
        with np.load(path) as archive:
            weights = {key: archive[key] for key in archive.files}
        missing = [f"{name}/{part}" for name in cls.LAYERS for part in ("weight", "bias")
                   if f"{name}/{part}" not in weights]
        if missing:
            raise UserError(f"policy file {path} lacks {', '.join(missing)}")
        return cls(weights)

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Batched actions: tanh(mu + std * noise), or tanh(mu) when `noise` is None."""
        hidden = np.maximum(obs @ self.w["fc0"] + self.b["fc0"], 0.0)
        hidden = np.maximum(hidden @ self.w["fc1"] + self.b["fc1"], 0.0)
        mean = hidden @ self.w["last_fc"] + self.b["last_fc"]
        if noise is None:
            return np.tanh(mean)
        # log-std clip range (-20, 2) as in rlkit's TanhGaussianPolicy (behaviour README).
        log_std = np.clip(hidden @ self.w["last_fc_log_std"] + self.b["last_fc_log_std"], -20.0, 2.0)
        return np.tanh(mean + np.exp(log_std) * noise)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run BLAS single-threaded while collecting.

    Determinism: OpenBLAS's multi-threaded sgemm rounds differently from its single-threaded one, and
    the dynamics amplify one ulp into a different dataset (measured: 40k halfcheetah transitions hash
    differently with 1 and 2 threads, identically across 1-thread runs). Speed: on a busy 2-core machine
    threaded 32x256 matmuls took 4 ms per forward against 0.3 ms single-threaded.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def collect(
    env_id: str, policy: TanhGaussianPolicy | None, n_transitions: int, seed: int, label: str
) -> list[dict[str, np.ndarray]]:
    """D4RL-protocol rollouts: exactly `n_transitions` transitions in whole episodes, the last one cut.

    `policy` None means uniform random actions. `rollout_envs(n_transitions)` envs step in lockstep;
    finished episodes are kept in the order they finish (ties by env index) until they hold
    `n_transitions`; the last kept episode is cut there and marked as a time-out, as in D4RL.
    Episodes still running then are dropped.
    """
    import gymnasium as gym
    from rich.console import Console
    from rich.progress import Progress

    n_envs = rollout_envs(n_transitions)
    env_seeds, action_seed = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(action_seed)
    route_mujoco_warnings()
    envs = [gym.make(env_id, max_episode_steps=MAX_EPISODE_STEPS) for _ in range(n_envs)]
    reset_seeds = env_seeds.generate_state(n_envs)
    first_obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, reset_seeds, strict=True)]
    obs_dim, act_dim = len(first_obs[0]), int(np.prod(envs[0].action_space.shape))
    low, high = envs[0].action_space.low, envs[0].action_space.high
    obs_buf = np.zeros((n_envs, MAX_EPISODE_STEPS + 1, obs_dim), dtype=np.float32)
    act_buf = np.zeros((n_envs, MAX_EPISODE_STEPS, act_dim), dtype=np.float32)
    rew_buf = np.zeros((n_envs, MAX_EPISODE_STEPS), dtype=np.float32)
    obs_buf[:, 0] = np.stack(first_obs)
    steps = np.zeros(n_envs, dtype=np.int64)
    episodes: list[dict[str, np.ndarray]] = []
    kept = 0
    with Progress(transient=True, console=Console(stderr=True)) as bar, _one_blas_thread():
        task = bar.add_task(f"build {label}", total=n_transitions)
        while kept < n_transitions:
            current = obs_buf[np.arange(n_envs), steps]
            if policy is None:
                actions = rng.uniform(low, high, size=(n_envs, act_dim)).astype(np.float32)
            else:
                actions = policy(current, rng.standard_normal((n_envs, act_dim), dtype=np.float32))
                actions = actions.astype(np.float32)
            for i, env in enumerate(envs):
                t = steps[i]
                next_obs, reward, terminated, truncated, _ = env.step(actions[i])
                act_buf[i, t], rew_buf[i, t], obs_buf[i, t + 1] = actions[i], reward, next_obs
                steps[i] = t + 1
                if not (terminated or truncated):
                    continue
                if kept < n_transitions:
                    length = min(t + 1, n_transitions - kept)
                    cut = length < t + 1
                    episodes.append(_episode(obs_buf[i], act_buf[i], rew_buf[i], length,
                                             terminated=bool(terminated) and not cut))
                    kept += length
                    bar.update(task, completed=kept)
                obs_buf[i, 0], steps[i] = env.reset()[0], 0
    for env in envs:
        env.close()
    return episodes


def _episode(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, length: int,
             terminated: bool) -> dict[str, np.ndarray]:
    """Copy the first `length` steps of an env's buffers; the last step ends by termination or time-out."""
    terminations = np.zeros(length, dtype=bool)
    truncations = np.zeros(length, dtype=bool)
    (terminations if terminated else truncations)[-1] = True
    return {
        "observations": obs[: length + 1].copy(),
        "actions": actions[:length].copy(),
        "rewards": rewards[:length].copy(),
        "terminations": terminations,
        "truncations": truncations,
    }
