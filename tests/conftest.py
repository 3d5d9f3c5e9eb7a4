"""Shared fixtures: a tiny real dataset every training test can use, made once per session.

`tiny_dataset_id` is a `d4rl:` id backed by a small D4RL-layout HDF5 file of random-action Hopper-v4 episodes
written into a session temp dir; D4RL_DATASET_DIR is exported in os.environ so subprocesses see it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

TINY_TRANSITIONS = 3000
TINY_EPISODE_STEPS = 100


def write_tiny_d4rl_file(path: Path, n: int = TINY_TRANSITIONS, seed: int = 0) -> None:
    env = gym.make("Hopper-v4", max_episode_steps=TINY_EPISODE_STEPS)
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


@pytest.fixture(scope="session")
def tiny_dataset_id(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("d4rl")
    write_tiny_d4rl_file(root / "hopper_medium-v2.hdf5")
    os.environ["D4RL_DATASET_DIR"] = str(root)
    return "d4rl:hopper-medium-v2"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Parallelism comes from processes; one thread per test process keeps timings and results stable.
    torch.set_num_threads(1)
