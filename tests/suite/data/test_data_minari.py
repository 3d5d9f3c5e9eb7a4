"""`minari:` datasets made here with minari.create_dataset_from_buffers in a tmp Minari root."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from suite.cli import main
from suite.data import list_datasets, load_dataset, minari_source
from suite.errors import UserError

LENGTHS = (5, 7, 4)  # episode 0 terminates, 1 is truncated, 2 is both (counts as a termination)


def episodes(obs_dim: int, act_dim: int) -> list[EpisodeBuffer]:
    rng = np.random.default_rng(5)
    ends = [(True, False), (False, True), (True, True)]
    buffers = []
    for index, (length, (terminated, truncated)) in enumerate(zip(LENGTHS, ends, strict=True)):
        terminations = np.zeros(length, dtype=bool)
        truncations = np.zeros(length, dtype=bool)
        terminations[-1], truncations[-1] = terminated, truncated
        buffers.append(EpisodeBuffer(
            id=index,
            observations=rng.standard_normal((length + 1, obs_dim)).astype(np.float32),
            actions=rng.uniform(-1, 1, (length, act_dim)).astype(np.float32),
            rewards=rng.standard_normal(length).astype(np.float32),
            terminations=terminations,
            truncations=truncations,
        ))
    return buffers


def create(dataset_id: str, env_id: str, **refs: float) -> list[EpisodeBuffer]:
    env = gym.make(env_id)
    buffers = episodes(env.observation_space.shape[0], env.action_space.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari warns about missing author/permalink metadata
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, algorithm_name="test", **refs)
    return buffers


def test_minari_dataset_is_flattened_with_its_own_reference_scores() -> None:
    buffers = create("test/hopper/tiny-v0", "Hopper-v5", ref_min_score=-5.0, ref_max_score=15.0)
    dataset = load_dataset("minari:test/hopper/tiny-v0")
    assert len(dataset) == sum(LENGTHS) and (dataset.obs_dim, dataset.act_dim) == (11, 3)
    stacked_obs = [b.observations for b in buffers]
    np.testing.assert_array_equal(dataset.observations, np.concatenate([obs[:-1] for obs in stacked_obs]))
    np.testing.assert_array_equal(dataset.next_observations, np.concatenate([obs[1:] for obs in stacked_obs]))
    np.testing.assert_array_equal(dataset.actions, np.concatenate([b.actions for b in buffers]))
    ends = np.cumsum(LENGTHS) - 1
    expected_terminals = np.zeros(sum(LENGTHS))
    expected_terminals[[ends[0], ends[2]]] = 1.0
    expected_timeouts = np.zeros(sum(LENGTHS))
    expected_timeouts[ends[1]] = 1.0
    np.testing.assert_array_equal(dataset.terminals, expected_terminals)
    np.testing.assert_array_equal(dataset.timeouts, expected_timeouts)
    returns = [np.sum(b.rewards, dtype=np.float64) for b in buffers]
    np.testing.assert_allclose(dataset.episode_returns(), returns, rtol=1e-6)
    assert dataset.env_id == "Hopper-v5" and dataset.id == "minari:test/hopper/tiny-v0"
    assert (dataset.ref_min_score, dataset.ref_max_score) == (-5.0, 15.0)
    assert dataset.normalized_score(10.0) == pytest.approx(75.0)
    assert dataset.provenance["ref_scores"] == "dataset metadata"
    listed = {entry["id"]: entry for entry in list_datasets()}
    assert listed["minari:test/hopper/tiny-v0"]["transitions"] == sum(LENGTHS)


def test_reference_scores_fall_back_to_d4rl_by_env_name() -> None:
    create("test/walker2d/norefs-v0", "Walker2d-v5")
    dataset = load_dataset("minari:test/walker2d/norefs-v0")
    assert (dataset.ref_min_score, dataset.ref_max_score) == (1.629008, 4592.3)
    assert dataset.env_id == "Walker2d-v5"


def test_no_reference_scores_anywhere_is_a_user_error() -> None:
    create("test/pendulum/norefs-v0", "Pendulum-v1")
    with pytest.raises(UserError, match="no ref_min_score/ref_max_score and env Pendulum-v1 has no D4RL"):
        load_dataset("minari:test/pendulum/norefs-v0")


def test_missing_dataset_without_download_says_what_to_do() -> None:
    with pytest.raises(UserError, match="not found in .*`baq datasets download minari:mujoco/hopper/medium-v0`"):
        load_dataset("minari:mujoco/hopper/medium-v0")


def test_malformed_id_is_a_user_error() -> None:
    with pytest.raises(UserError, match="malformed Minari id 'bad id!'"):
        load_dataset("minari:bad id!")


def test_offline_download_fails_in_under_two_seconds(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(minari_source, "REMOTE_ADDRESS", ("127.0.0.1", closed_port))

    def must_not_run(*args, **kwargs):
        raise AssertionError("minari's download must not start when the remote is unreachable")

    monkeypatch.setattr(minari, "download_dataset", must_not_run)
    started = time.monotonic()
    with pytest.raises(UserError, match=f"127.0.0.1:{closed_port} is unreachable.*`baq datasets download minari:"):
        load_dataset("minari:mujoco/hopper/medium-v0", download=True)
    assert time.monotonic() - started < 2.0
    # The same through the command the message names: one line, as fast.
    started = time.monotonic()
    assert main(["datasets", "download", "minari:mujoco/hopper/medium-v0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("baq: error: cannot download Minari dataset mujoco/hopper/medium-v0: ")
    assert err.count("\n") == 1 and time.monotonic() - started < 2.0
