"""`local:` D4RL-protocol builds from a synthetic behaviour folder (conftest), tiny sizes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from suite.data import Dataset, build_local, dataset_info, list_datasets, load_dataset, local, sources
from suite.errors import UserError


def policy_moments(weights_path: Path, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the pre-tanh Gaussian, written out from the behaviour README's formula."""
    w = dict(np.load(weights_path))
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    h = relu(obs.astype(np.float64) @ w["fc0/weight"].T + w["fc0/bias"])
    h = relu(h @ w["fc1/weight"].T + w["fc1/bias"])
    mean = h @ w["last_fc/weight"].T + w["last_fc/bias"]
    log_std = np.clip(h @ w["last_fc_log_std/weight"].T + w["last_fc_log_std/bias"], -20, 2)
    return mean, np.exp(log_std)


def check_episode_structure(dataset: Dataset) -> None:
    """Every episode: at most 1000 steps, one end flag on its last row only, next obs chained."""
    ends = (dataset.terminals + dataset.timeouts) > 0
    assert not np.any(dataset.terminals * dataset.timeouts), "a row is both terminal and time-out"
    starts, stops = dataset.episode_bounds()
    assert np.all(stops - starts <= 1000)
    assert ends[-1], "the final (cut) episode must end with a flag"
    inner = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(dataset.next_observations[inner], dataset.observations[inner + 1])
    # A time-out before the final row is a time-limit truncation: its episode has exactly 1000 steps.
    for stop in np.flatnonzero(dataset.timeouts[:-1]) + 1:
        assert stop - starts[starts < stop][-1] == 1000


def test_medium_build_follows_d4rl_protocol(behavior_root: Path) -> None:
    dataset = build_local("hopper-medium", n_transitions=2000, seed=0)
    assert len(dataset) == 2000 and (dataset.obs_dim, dataset.act_dim) == (11, 3)
    assert dataset.id == "local:hopper-medium" and dataset.env_id == "Hopper-v5"
    assert (dataset.ref_min_score, dataset.ref_max_score) == (-20.272305, 3234.3)
    check_episode_structure(dataset)
    # Hopper-v5 terminates when the torso falls (z <= 0.7) or tilts (|angle| >= 0.2): obs[0], obs[1].
    z, angle = dataset.next_observations[:, 0], dataset.next_observations[:, 1]
    healthy = (z > 0.7) & (np.abs(angle) < 0.2)
    assert dataset.terminals.sum() >= 1
    assert not np.any(healthy[dataset.terminals == 1]) and np.all(healthy[dataset.terminals == 0])
    # Actions are stochastic samples tanh(mu + std * eps): the implied eps is standard normal.
    mean, std = policy_moments(behavior_root / "hopper" / "medium_policy.npz", dataset.observations)
    eps = (np.arctanh(np.clip(dataset.actions.astype(np.float64), -1 + 1e-6, 1 - 1e-6)) - mean) / std
    assert abs(eps.mean()) < 0.1 and 0.9 < eps.std() < 1.1
    provenance = dataset.provenance
    assert provenance["protocol"] == "d4rl" and provenance["source"] == "local behaviour files"
    assert "not the D4RL dataset" in provenance["note"] and provenance["n_transitions"] == "2000"


def test_random_build_uses_uniform_actions() -> None:
    dataset = build_local("hopper-random", n_transitions=1500, seed=4)
    assert len(dataset) == 1500
    check_episode_structure(dataset)
    assert dataset.actions.min() >= -1 and dataset.actions.max() <= 1
    assert np.all(np.abs(dataset.actions.mean(axis=0)) < 0.05)
    np.testing.assert_allclose(dataset.actions.var(axis=0), 1 / 3, atol=0.03)  # var of U(-1, 1)


def test_rebuild_is_reused_and_force_rebuilds_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_local("hopper-medium", n_transitions=1200, seed=0)
    stored = Path(first.provenance["store"]) / "data" / "main_data.hdf5"
    mtime = stored.stat().st_mtime_ns
    calls = []
    original = local.collect

    def counting_collect(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(local, "collect", counting_collect)
    again = build_local("hopper-medium", n_transitions=1200, seed=0)
    assert calls == [] and stored.stat().st_mtime_ns == mtime and again.sha256 == first.sha256
    forced = build_local("hopper-medium", n_transitions=1200, seed=0, force=True)
    assert len(calls) == 1 and forced.sha256 == first.sha256


def test_same_seed_same_data_other_seed_other_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = build_local("hopper-expert", n_transitions=1000, seed=7)
    monkeypatch.setenv("BAQ_DATA_DIR", str(tmp_path / "elsewhere"))
    repeat = build_local("hopper-expert", n_transitions=1000, seed=7)
    assert repeat.provenance["store"] != first.provenance["store"]
    assert repeat.sha256 == first.sha256
    assert build_local("hopper-expert", n_transitions=1000, seed=8).sha256 != first.sha256


def test_medium_replay_is_the_recorded_stream_as_given(behavior_root: Path) -> None:
    stream = dict(np.load(behavior_root / "hopper" / "medium_replay.npz"))
    dataset = load_dataset("local:hopper-medium-replay")
    for key in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_array_equal(getattr(dataset, key), stream[key])
    np.testing.assert_array_equal(dataset.terminals, stream["terminals"].astype(np.float32))
    np.testing.assert_array_equal(dataset.timeouts, stream["timeouts"].astype(np.float32))
    assert dataset.provenance["n_transitions"] == "as given"


def test_medium_expert_is_medium_then_expert() -> None:
    combined = build_local("hopper-medium-expert", n_transitions=800, seed=1)
    medium = build_local("hopper-medium", n_transitions=800, seed=1)
    expert = build_local("hopper-expert", n_transitions=800, seed=1)
    assert len(combined) == 1600
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(combined, key)[:800], getattr(medium, key))
        np.testing.assert_array_equal(getattr(combined, key)[800:], getattr(expert, key))
    assert combined.terminals[799] + combined.timeouts[799] == 1  # the medium part ends an episode
    assert medium.sha256 in combined.provenance["parts"] and expert.sha256 in combined.provenance["parts"]


def test_missing_behaviour_file_is_named_with_what_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_behavior_dir
) -> None:
    root = make_behavior_dir(tmp_path / "partial", files=("medium_policy.npz",))
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", str(root))
    with pytest.raises(UserError, match="hopper/expert_policy.npz .*index.json; hopper has: medium_policy"):
        build_local("hopper-expert", n_transitions=500)
    with pytest.raises(UserError, match="hopper/medium_replay.npz"):
        load_dataset("local:hopper-medium-replay")


def test_behaviour_file_with_wrong_sha256_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_behavior_dir
) -> None:
    root = make_behavior_dir(tmp_path / "tampered", files=("medium_policy.npz",))
    index = json.loads((root / "index.json").read_text())
    index["hopper"]["files"]["medium_policy.npz"]["sha256"] = "0" * 64
    (root / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", str(root))
    with pytest.raises(UserError, match="medium_policy.npz has sha256 .*index.json says 0000"):
        build_local("hopper-medium", n_transitions=500)


def test_bad_names_are_user_errors() -> None:
    with pytest.raises(UserError, match="env 'ant' is not in .*index.json; it has: hopper"):
        load_dataset("local:ant-medium")
    with pytest.raises(UserError, match="quality one of random, medium, medium-replay, medium-expert"):
        load_dataset("local:hopper-great")


def test_behaviour_dirs_default_to_shared_beside_the_checkout_and_the_trainer_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, behavior_root: Path
) -> None:
    monkeypatch.delenv("BAQ_BEHAVIOR_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "__file__", str(tmp_path / "checkout" / "suite" / "data" / "sources.py"))
    with pytest.raises(UserError, match="set BAQ_BEHAVIOR_DIR"):
        sources.behavior_dirs()
    shutil.copytree(behavior_root, tmp_path / "shared" / "behavior")
    assert sources.behavior_dirs() == [tmp_path / "shared" / "behavior"]
    trained = tmp_path / "home" / ".cache" / "baq-suite" / "behavior"
    trained.mkdir(parents=True)
    (trained / "index.json").write_text(json.dumps({"swimmer": {}}))
    assert sources.behavior_dirs() == [tmp_path / "shared" / "behavior", trained]
    assert sources.known_tasks() == ["hopper", "swimmer"]


def test_several_behaviour_dirs_first_one_with_the_task_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_behavior_dir, behavior_root: Path
) -> None:
    other = make_behavior_dir(tmp_path / "other", files=("medium_replay.npz",))
    index = json.loads((other / "index.json").read_text())
    index["walker"] = index["hopper"]
    (other / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", os.pathsep.join([str(behavior_root), str(other)]))
    assert sources.task("hopper")[0] == behavior_root and sources.task("walker")[0] == other
    assert local.local_names()[-1] == "walker-expert"
    assert load_dataset("local:hopper-medium-replay").provenance["behavior_dir"] == str(behavior_root)
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", os.pathsep.join([str(behavior_root), str(tmp_path / "nowhere")]))
    with pytest.raises(UserError, match=r"BAQ_BEHAVIOR_DIR entry .*nowhere has no index.json"):
        load_dataset("local:hopper-medium-replay")


def test_list_and_info_report_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DEFAULT_TRANSITIONS", 1500)
    listed = {entry["id"]: entry for entry in list_datasets()}
    assert set(listed) == {f"local:hopper-{q}" for q in local.QUALITIES}
    assert not any(entry["built"] for entry in listed.values())
    info = dataset_info("local:hopper-medium")
    dataset = build_local("hopper-medium")
    returns = dataset.episode_returns()
    assert info["transitions"] == 1500 and info["episodes"] == len(returns)
    assert (info["obs_dim"], info["act_dim"], info["sha256"]) == (11, 3, dataset.sha256)
    assert info["return"]["mean"] == pytest.approx(returns.mean())
    assert info["normalized_return"]["max"] == pytest.approx(100 * (returns.max() + 20.272305) / 3254.572305)
    listed = {entry["id"]: entry for entry in list_datasets()}
    assert listed["local:hopper-medium"]["built"] and listed["local:hopper-medium"]["transitions"] == 1500
    assert not listed["local:hopper-medium-expert"]["built"]


REAL = Path(__file__).resolve().parents[3].parent / "shared" / "behavior"


@pytest.mark.skipif(not (REAL / "index.json").is_file(), reason="real behaviour files not on this machine")
def test_real_medium_replay_stream_matches_its_index() -> None:
    facts = json.loads((REAL / "index.json").read_text())["hopper"]["files"]["medium_replay.npz"]
    episodes = local._episodes_from_stream(REAL / "hopper" / "medium_replay.npz")
    assert len(episodes) == facts["episodes"]
    assert sum(len(e["rewards"]) for e in episodes) == facts["transitions"]
    mean_return = np.mean([e["rewards"].sum(dtype=np.float64) for e in episodes])
    assert mean_return == pytest.approx(facts["episode_return_mean"], rel=1e-5)
    policy = local.TanhGaussianPolicy.load(REAL / "hopper" / "medium_policy.npz")
    actions = policy(episodes[0]["observations"][:5], None)
    assert actions.shape == (5, 3) and np.all(np.abs(actions) < 1)
