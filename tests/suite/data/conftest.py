"""Fixtures for the dataset tests: isolated data dirs and a tiny synthetic behaviour folder."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

HOPPER_OBS, HOPPER_ACT, HIDDEN = 11, 3, 16


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def policy_weights(seed: int, obs_dim: int = HOPPER_OBS, act_dim: int = HOPPER_ACT) -> dict[str, np.ndarray]:
    """A small tanh-Gaussian MLP in the behaviour files' rlkit layout (weights as (out, in))."""
    rng = np.random.default_rng(seed)
    shapes = {"fc0": (HIDDEN, obs_dim), "fc1": (HIDDEN, HIDDEN), "last_fc": (act_dim, HIDDEN),
              "last_fc_log_std": (act_dim, HIDDEN)}
    weights = {}
    for name, shape in shapes.items():
        weights[f"{name}/weight"] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        weights[f"{name}/bias"] = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
    weights["last_fc_log_std/bias"] = np.full(act_dim, -0.7, dtype=np.float32)
    return weights


def random_stream(env_id: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """A recorded transition stream like medium_replay.npz: random actions, last episode cut."""
    env = gym.make(env_id, max_episode_steps=1000)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                             "terminals", "timeouts")}
    for step in range(n):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        last = step == n - 1
        for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                           ("next_observations", next_obs), ("terminals", terminated),
                           ("timeouts", (truncated or last) and not terminated)):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return {
        key: np.asarray(value, dtype=bool if key in ("terminals", "timeouts") else np.float32)
        for key, value in rows.items()
    }


def write_behavior_dir(root: Path, files: tuple[str, ...] = ("medium_policy.npz", "expert_policy.npz",
                                                           "medium_replay.npz")) -> Path:
    """A behaviour folder for hopper holding `files`, with an index.json like the real one."""
    (root / "hopper").mkdir(parents=True)
    listed = {}
    for name in files:
        path = root / "hopper" / name
        if name == "medium_replay.npz":
            np.savez(path, **random_stream("Hopper-v5", 600, seed=3))
            listed[name] = {"kind": "transitions", "quality": "medium-replay", "source": "test stream"}
        else:
            quality = name.removesuffix("_policy.npz")
            np.savez(path, **policy_weights(1 if quality == "medium" else 2))
            listed[name] = {"kind": "policy", "quality": quality, "source": f"test {quality} weights"}
        listed[name]["sha256"] = sha256_of(path)
    index = {"hopper": {"env_id": "Hopper-v5", "ref_min_score": -20.272305, "ref_max_score": 3234.3,
                        "files": listed}}
    (root / "index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="session")
def behavior_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_behavior_dir(tmp_path_factory.mktemp("behavior"))


@pytest.fixture
def make_behavior_dir():
    """The factory itself, for tests that need a partial or tampered behaviour folder."""
    return write_behavior_dir


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behavior_root: Path) -> Path:
    """Every test gets empty data dirs and the synthetic behaviour folder; nothing touches ~."""
    monkeypatch.setenv("BAQ_DATA_DIR", str(tmp_path / "baq-data"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", str(behavior_root))
    return tmp_path


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
