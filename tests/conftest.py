"""Shared fixtures: a tiny real dataset every training test can use, made once per session.

`tiny_dataset_id` is a `d4rl:` id backed by a small D4RL-layout HDF5 file of random-action Hopper-v4 episodes
written into a session temp dir; D4RL_DATASET_DIR is exported in os.environ so subprocesses see it too.
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.common import write_random_d4rl_file

TINY_TRANSITIONS = 3000
TINY_EPISODE_STEPS = 100


@pytest.fixture(scope="session")
def tiny_dataset_id(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("d4rl")
    write_random_d4rl_file(root / "hopper_medium-v2.hdf5", TINY_TRANSITIONS, TINY_EPISODE_STEPS)
    os.environ["D4RL_DATASET_DIR"] = str(root)
    return "d4rl:hopper-medium-v2"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Parallelism comes from processes; one thread per test process keeps timings and results stable.
    torch.set_num_threads(1)
