"""The behaviour trainer end to end on a tiny budget: files `local:` loads, sha256 round trips, exact resume,
MLflow, the CLI. InvertedPendulum-v5 is the cheapest MuJoCo task (4-d observations, 1-d actions)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from suite.behavior import publish
from suite.behavior.sac import SACConfig
from suite.behavior.trainer import BehaviorConfig, train_behavior
from suite.cli import main
from suite.data import load_dataset
from suite.data.dataset import hash_arrays
from suite.data.local import build_local
from suite.errors import UserError

pytestmark = pytest.mark.xdist_group("behavior_trainer")

TINY = BehaviorConfig(env_id="InvertedPendulum-v5", steps=360, random_steps=100, eval_interval=120,
                      eval_episodes=2, checkpoint_interval=1000, log_interval=60,
                      sac=SACConfig(hidden=(32, 32), batch_size=64))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """One tiny run through launch_behavior (MLflow in a temp sqlite store): (out folder, entry, run dir)."""
    root = tmp_path_factory.mktemp("behavior-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    entry = publish.launch_behavior(TINY, root / "out", root / "run", tracking_uri=uri)
    return root / "out", entry, root / "run"


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: tuple[Path, dict, Path]) -> Path:
    """BAQ_BEHAVIOR_DIR: an empty-index folder first, then the trained one (two sources)."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.json").write_text("{}")
    monkeypatch.setenv("BAQ_BEHAVIOR_DIR", f"{other}:{trained[0]}")
    monkeypatch.setenv("BAQ_DATA_DIR", str(tmp_path / "data"))
    return trained[0]


def test_files_and_index_entry(trained: tuple[Path, dict, Path]) -> None:
    out, entry, _ = trained
    index = json.loads((out / "index.json").read_text())
    assert index == {"invertedpendulum": entry}
    assert set(entry["files"]) == {"medium_policy.npz", "expert_policy.npz", "medium_replay.npz"}
    for name, facts in entry["files"].items():
        assert facts["sha256"] == hashlib.sha256((out / "invertedpendulum" / name).read_bytes()).hexdigest()
    trainer = entry["trainer"]
    assert [row[0] for row in trainer["evaluations"]] == [120, 240, 360]
    means = [row[1] for row in trainer["evaluations"]]
    assert trainer["expert_step"] == 120 * (1 + int(np.argmax(means)))
    assert entry["files"]["expert_policy.npz"]["return_stochastic"]["mean"] == pytest.approx(max(means))
    assert trainer["config"]["seed"] == 0 and trainer["version"] == publish.TRAINER_VERSION
    assert "seed 0, step" in entry["files"]["medium_policy.npz"]["source"]
    # No D4RL reference for this task: the files' own random and expert returns, said so.
    assert entry["ref_scores"].startswith("own:") and "not D4RL" in entry["ref_scores"]
    assert (entry["ref_min_score"], entry["ref_max_score"]) == (entry["random_return"]["mean"], max(means))
    with np.load(out / "invertedpendulum" / "medium_policy.npz") as policy:
        assert policy["fc0/weight"].shape == (32, 4) and policy["last_fc_log_std/weight"].dtype == np.float32


def test_medium_replay_is_the_stream_up_to_the_medium_snapshot(sources: Path, trained: tuple[Path, dict, Path]) -> None:
    _, entry, _ = trained
    with np.load(sources / "invertedpendulum" / "medium_replay.npz") as stream:
        arrays = {key: stream[key] for key in stream.files}
    dataset = load_dataset("local:invertedpendulum-medium-replay")
    assert len(dataset) == entry["trainer"]["medium_step"] == entry["files"]["medium_replay.npz"]["transitions"]
    assert dataset.sha256 == hash_arrays(arrays)  # the file's arrays, byte for byte
    assert dataset.env_id == "InvertedPendulum-v5" and dataset.ref_min_score == entry["ref_min_score"]
    assert dataset.provenance["reference_scores"] == entry["ref_scores"]
    assert "baq-suite SAC" in dataset.provenance["behavior_sources"]
    assert np.array_equal(dataset.actions, arrays["actions"]) and np.all(np.abs(dataset.actions) <= 1)
    assert dataset.timeouts[-1] == 1.0 or dataset.terminals[-1] == 1.0
    again = load_dataset("local:invertedpendulum-medium-replay")
    assert again.sha256 == dataset.sha256


def test_policies_build_through_local(sources: Path) -> None:
    medium = build_local("invertedpendulum-medium", n_transitions=300, seed=0)
    assert len(medium) == 300 and medium.env_id == "InvertedPendulum-v5"
    assert medium.sha256 == build_local("invertedpendulum-medium", n_transitions=300, seed=0).sha256
    expert = build_local("invertedpendulum-expert", n_transitions=300, seed=0)
    assert len(expert) == 300 and "expert_policy.npz" in expert.provenance["behavior_files"]


def test_mlflow_run_records_the_training(trained: tuple[Path, dict, Path]) -> None:
    from mlflow.tracking import MlflowClient

    _, entry, run_dir = trained
    record = json.loads((run_dir / "run.json").read_text())
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    run = client.get_run(entry["trainer"]["mlflow_run"])
    assert run.info.status == "FINISHED" and run.data.tags["baq.status"] == "finished"
    assert run.data.params["env_id"] == "InvertedPendulum-v5" and run.data.params["sac.lr"] == "0.0003"
    evals = client.get_metric_history(run.info.run_id, "eval/return")
    assert [m.step for m in evals] == [120, 240, 360]
    assert "train/critic_loss" in run.data.metrics and "online/episode_return" in run.data.metrics


def test_resume_after_a_stop_gives_the_same_bytes(tmp_path: Path, trained: tuple[Path, dict, Path]) -> None:
    calls = []

    def stop_at_200() -> bool:
        calls.append(1)
        return len(calls) == 200

    with pytest.raises(KeyboardInterrupt, match="stopped on request after step 200"):
        train_behavior(TINY, run_dir=tmp_path / "run", stop_requested=stop_at_200)
    resumed = train_behavior(TINY, run_dir=tmp_path / "run")
    entry = publish.write_behavior_files(dataclasses.replace(resumed, run_id=trained[1]["trainer"]["mlflow_run"]),
                                         tmp_path / "out")
    original = trained[1]
    for name in original["files"]:
        assert entry["files"][name]["sha256"] == original["files"][name]["sha256"], name
    assert entry == original


def test_cli_if_missing_skips_a_task_that_exists(sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["behavior", "train", "InvertedPendulum-v5", "--if-missing", "--steps", "10"]) == 0
    assert f"behaviour files for invertedpendulum found in {sources}" in capsys.readouterr().out


def test_bad_requests_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["behavior", "train", "Hopper-v5", "--steps", "100", "--eval-interval", "500"]) == 2
    assert "eval_interval 500 exceeds steps 100" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"Humanoid-v5: action bounds \[-0.4, 0.4\] do not contain \[-1, 1\]"):
        train_behavior(BehaviorConfig(env_id="Humanoid-v5", steps=10, eval_interval=10))


def test_resume_may_change_steps_but_nothing_else(tmp_path: Path, trained: tuple[Path, dict, Path]) -> None:
    import shutil

    shutil.copytree(trained[2], tmp_path / "run")
    with pytest.raises(UserError, match=r"\(360 steps done\) was written by a different config; only --steps may"):
        train_behavior(dataclasses.replace(TINY, steps=300), run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="only --steps may change"):
        train_behavior(dataclasses.replace(TINY, random_steps=50), run_dir=tmp_path / "run")
    longer = train_behavior(dataclasses.replace(TINY, steps=480), run_dir=tmp_path / "run")
    assert [s.step for s in longer.snapshots] == [120, 240, 360, 480] and len(longer.stream["rewards"]) == 480
    original = trained[1]["trainer"]["evaluations"]
    assert [[s.step, float(s.returns.mean()), float(s.returns.std())] for s in longer.snapshots[:3]] == original
