"""make_env and deterministic evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from suite import envs
from suite.envs import episode_seeds, evaluate, make_env
from suite.errors import UserError

STEPS = 40  # short episodes keep the module fast


def linear_policy(obs: np.ndarray) -> np.ndarray:
    assert obs.dtype == np.float32 and obs.shape == (17,)
    return np.tanh(np.resize(obs, 6) * 0.5)


def test_make_env_applies_time_limit_and_seed() -> None:
    env = make_env("HalfCheetah-v5", seed=3, max_episode_steps=STEPS)
    assert env.spec is not None and env.spec.max_episode_steps == STEPS
    first = env.reset()[0]
    other = make_env("HalfCheetah-v5", seed=3, max_episode_steps=STEPS).reset()[0]
    np.testing.assert_array_equal(first, other)  # unseeded resets continue the seeded RNG
    assert not np.array_equal(first, make_env("HalfCheetah-v5", seed=4).reset()[0])
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(6, dtype=np.float32))
        steps += 1
        assert not terminated
    assert steps == STEPS


def test_d4rl_evaluation_envs_exist() -> None:
    for env_id in ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4"):
        assert make_env(env_id, seed=0).observation_space.shape[0] in (11, 17)


def test_unknown_env_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown env id 'Cheetah-v9'.*MuJoCo ids: .*HalfCheetah-v5"):
        make_env("Cheetah-v9", seed=0)
    with pytest.raises(UserError, match="max_episode_steps must be >= 1"):
        make_env("Hopper-v5", seed=0, max_episode_steps=0)


def test_evaluate_is_deterministic_and_matches_a_manual_rollout() -> None:
    returns = evaluate(linear_policy, "HalfCheetah-v5", episodes=3, seed=11, max_episode_steps=STEPS)
    assert returns.shape == (3,) and returns.dtype == np.float64
    np.testing.assert_array_equal(
        returns, evaluate(linear_policy, "HalfCheetah-v5", episodes=3, seed=11, max_episode_steps=STEPS)
    )
    assert len(set(returns.tolist())) == 3  # each episode starts from its own seeded state
    other = evaluate(linear_policy, "HalfCheetah-v5", episodes=3, seed=12, max_episode_steps=STEPS)
    assert not np.array_equal(returns, other)
    # The same episodes, stepped by hand from the documented per-episode seeds.
    env = gym.make("HalfCheetah-v5", max_episode_steps=STEPS)
    manual = []
    for episode_seed in episode_seeds(11, 3):
        obs, _ = env.reset(seed=episode_seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(linear_policy(obs.astype(np.float32)))
            total += reward
            done = terminated or truncated
        manual.append(total)
    np.testing.assert_allclose(returns, manual, rtol=0, atol=1e-9)


def test_evaluate_clips_actions_to_the_action_space() -> None:
    huge = evaluate(lambda obs: np.full(3, 50.0), "Hopper-v5", episodes=1, seed=0, max_episode_steps=STEPS)
    ones = evaluate(lambda obs: np.ones(3), "Hopper-v5", episodes=1, seed=0, max_episode_steps=STEPS)
    np.testing.assert_array_equal(huge, ones)


def test_episode_seeds_depend_only_on_the_seed() -> None:
    assert episode_seeds(5, 4) == episode_seeds(5, 4)
    assert episode_seeds(5, 4)[:2] == episode_seeds(5, 2)
    assert episode_seeds(5, 4) != episode_seeds(6, 4)
    with pytest.raises(UserError, match="episodes must be >= 1"):
        evaluate(linear_policy, "HalfCheetah-v5", episodes=0, seed=0)


def test_mujoco_warnings_are_logged_once_and_not_written_to_the_working_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """HalfCheetah's model warns about a deprecated compiler attribute each time it is built (every
    evaluation): the suite logs each distinct MuJoCo warning once, and MuJoCo's MUJOCO_LOG.TXT is not written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(envs, "_shown_mujoco_warnings", set())
    with caplog.at_level(logging.WARNING, logger="suite.envs"):
        for seed in range(3):
            make_env("HalfCheetah-v5", seed=seed)
    messages = [r.getMessage() for r in caplog.records if r.name == "suite.envs"]
    assert len(messages) == 1 and messages[0].startswith("MuJoCo: compiler attribute 'settotalmass'")
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
