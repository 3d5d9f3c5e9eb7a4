"""Gymnasium environments for online steps and deterministic evaluation."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from suite.errors import UserError

log = logging.getLogger(__name__)
_shown_mujoco_warnings: set[str] = set()


def _log_mujoco_warning_once(message: str) -> None:
    if message not in _shown_mujoco_warnings:
        _shown_mujoco_warnings.add(message)
        log.warning("MuJoCo: %s (shown once per process)", message)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to this module's logger, each distinct one once per process.

    MuJoCo's default handler prints every warning and appends it to MUJOCO_LOG.TXT in the working directory;
    the HalfCheetah models warn (a deprecated compiler attribute) each time one is built, i.e. at every
    evaluation, which floods the runner's logs. A handler the user installed is left in place.
    """
    try:
        import mujoco
    except ImportError:  # no MuJoCo envs to build
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_log_mujoco_warning_once)


def _mujoco_ids() -> list[str]:
    return sorted(
        env_id
        for env_id, spec in gym.registry.items()
        if isinstance(spec.entry_point, str) and "mujoco" in spec.entry_point
    )


def make_env(env_id: str, seed: int, max_episode_steps: int = 1000) -> gym.Env:
    """A Gymnasium env with a time limit, its RNG and action space seeded from `seed`.

    The env is reset once with `seed`; later `reset()` calls without a seed continue that RNG, so a
    run's sequence of initial states depends on `seed` only.
    """
    if max_episode_steps < 1:
        raise UserError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    route_mujoco_warnings()
    try:
        with warnings.catch_warnings():
            # The -v4 MuJoCo envs are chosen on purpose for D4RL data (docs/datasets.md).
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            env = gym.make(env_id, max_episode_steps=max_episode_steps)
    except gym.error.Error as err:
        raise UserError(
            f"unknown env id {env_id!r} ({err}); MuJoCo ids: {', '.join(_mujoco_ids())}"
        ) from None
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
    return env


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """One reset seed per evaluation episode, derived from `seed` only (numpy SeedSequence)."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(episodes)]


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    seed: int,
    max_episode_steps: int = 1000,
) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes of `policy` on a fresh env, as float64.

    Every episode's reset is seeded from `seed`, so the same policy and seed give identical returns,
    independent of any training env. `policy` maps one float32 observation to one action; actions are
    clipped to the action space (tanh policies are already inside it).
    """
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, seed, max_episode_steps)
    low, high = env.action_space.low, env.action_space.high
    returns = np.zeros(episodes, dtype=np.float64)
    try:
        for index, episode_seed in enumerate(episode_seeds(seed, episodes)):
            obs, _ = env.reset(seed=episode_seed)
            total, done = 0.0, False
            while not done:
                action = np.clip(np.asarray(policy(obs.astype(np.float32, copy=False))), low, high)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns[index] = total
    finally:
        env.close()
    return returns
