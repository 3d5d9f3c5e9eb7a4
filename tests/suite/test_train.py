"""The shared training loop: determinism, exact resume, phases, evaluation bookkeeping, bad input."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from suite import checkpoint, stop
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import CHECKPOINT, TrainConfig, train


def tiny_cfg(dataset: str, **kw) -> TrainConfig:
    base = dict(algo="iql", dataset=dataset, seed=0, offline_steps=40, online_steps=60, eval_interval=20,
                eval_episodes=1, log_interval=10, checkpoint_interval=20, max_episode_steps=30, batch_size=32)
    base.update(kw)
    return TrainConfig(**base)


def deterministic_metrics(sink: MemorySink) -> dict[str, dict[int, float]]:
    """Metric histories without wall-clock metrics, deduplicated by step (a resume may re-log a step)."""
    out: dict[str, dict[int, float]] = {}
    for key, history in sink.metrics.items():
        if key.startswith("perf/"):
            continue
        by_step: dict[int, float] = {}
        for step, value in history:
            assert by_step.get(step, value) == value, f"{key} logged twice at step {step} with different values"
            by_step[step] = value
        out[key] = by_step
    return out


def test_same_seed_same_metrics_and_phases(tiny_dataset_id: str) -> None:
    a, b, c = MemorySink(), MemorySink(), MemorySink()
    ra = train(tiny_cfg(tiny_dataset_id), a)
    train(tiny_cfg(tiny_dataset_id), b)
    train(tiny_cfg(tiny_dataset_id, seed=1), c)
    assert deterministic_metrics(a) == deterministic_metrics(b)
    assert deterministic_metrics(a)["train/critic_loss"] != deterministic_metrics(c)["train/critic_loss"]
    # Evaluations at every interval, at the switch and at the end, labelled by phase.
    assert [(e["step"], e["phase"]) for e in ra.evals] == [
        (20, "offline"), (40, "offline"), (60, "online"), (80, "online"), (100, "online")]
    assert ra.offline_score == ra.evals[1]["normalized_score"]
    assert ra.online_score == ra.evals[-1]["normalized_score"]
    # Online episodes were played (30-step time limit) and logged at the step they ended.
    ends = [s for s, _ in a.metrics["online/episode_return"]]
    assert ends and all(40 < s <= 100 for s in ends)
    assert [s for s, _ in a.metrics["train/value_loss"]] == list(range(10, 101, 10))


@pytest.mark.parametrize("stop_at", [30, 50, 70, 80])  # mid-offline, from the switch, mid-online, at a checkpoint
def test_resume_after_interruption_is_identical(tiny_dataset_id: str, tmp_path: Path, stop_at: int) -> None:
    reference = MemorySink()
    train(tiny_cfg(tiny_dataset_id), reference, tmp_path / "ref")

    class Interrupt(Exception):
        pass

    def stop(info: dict) -> None:
        if info["step"] == stop_at:
            raise Interrupt

    first, second = MemorySink(), MemorySink()
    with pytest.raises(Interrupt):
        train(tiny_cfg(tiny_dataset_id), first, tmp_path / "run", progress=stop)
    assert (tmp_path / "run" / CHECKPOINT).exists()
    result = train(tiny_cfg(tiny_dataset_id), second, tmp_path / "run")
    assert min(s for s, _ in second.metrics["train/critic_loss"]) > 20  # it resumed, it did not restart
    merged = MemorySink()
    for sink in (first, second):
        for key, history in sink.metrics.items():
            merged.metrics[key].extend(history)
    assert deterministic_metrics(merged) == deterministic_metrics(reference)
    assert result.online_score == train(tiny_cfg(tiny_dataset_id), MemorySink()).online_score


@pytest.mark.parametrize("stop_at", [30, 50])  # mid-offline, mid-online; neither is a checkpoint step
def test_stop_request_checkpoints_that_step_and_resumes_with_nothing_redone(
    tiny_dataset_id: str, tmp_path: Path, stop_at: int
) -> None:
    reference = MemorySink()
    train(tiny_cfg(tiny_dataset_id), reference)

    def signal_at(info: dict) -> None:
        if info["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a cluster's preemption sends

    first, second = MemorySink(), MemorySink()
    with stop.graceful(), pytest.raises(stop.StopRequested) as stopped:
        train(tiny_cfg(tiny_dataset_id), first, tmp_path, progress=signal_at)
    assert stopped.value.step == stop_at and stopped.value.checkpointed
    assert checkpoint.load(tmp_path / CHECKPOINT)["step"] == stop_at
    train(tiny_cfg(tiny_dataset_id), second, tmp_path)
    # Nothing after the stop was lost, so nothing is logged twice: the two parts are the reference, split.
    for key, history in reference.metrics.items():
        if not key.startswith("perf/"):
            assert first.metrics[key] + second.metrics[key] == history, key
            assert all(s <= stop_at for s, _ in first.metrics[key]), key


def test_outputs_written(tiny_dataset_id: str, tmp_path: Path) -> None:
    sink = MemorySink()
    train(tiny_cfg(tiny_dataset_id, online_steps=0), sink, tmp_path)
    lines = (tmp_path / "eval.csv").read_text().splitlines()
    assert lines[0] == "step,phase,return,return_std,normalized_score,normalized_score_std"
    assert [line.split(",")[:2] for line in lines[1:]] == [["20", "offline"], ["40", "offline"]]
    assert {p.name for p, _ in sink.artifacts} == {"config.json", "eval.csv", "final.pt"}
    assert sink.params["algo"] == "iql" and sink.params["algo_params.expectile"] == "0.7"
    assert sink.tags["dataset.sha256"] and sink.tags["dataset.env_id"] == "Hopper-v4"


def test_changed_config_refuses_foreign_checkpoint(tiny_dataset_id: str, tmp_path: Path) -> None:
    def stop(info: dict) -> None:
        if info["step"] == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tiny_dataset_id), MemorySink(), tmp_path, progress=stop)
    with pytest.raises(UserError, match="different config"):
        train(tiny_cfg(tiny_dataset_id, seed=3), MemorySink(), tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algo": "nope"}, "unknown algorithm 'nope'"),
        ({"offline_steps": -1}, "offline_steps must be >= 0"),
        ({"eval_episodes": 0}, "eval_episodes must be a positive integer"),
        ({"algo_params": {"expectile_typo": 0.9}}, "unknown parameter 'expectile_typo'"),
        ({"algo_params": {"expectile": "high"}}, "parameter 'expectile' .* must be float"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_config_is_one_line_error(change: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        TrainConfig(**change).validate()
    assert "\n" not in str(err.value)


def test_compile_is_opt_in_and_matches_eager(tiny_dataset_id: str, tmp_path: Path, monkeypatch) -> None:
    compiled_modules = []
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: (compiled_modules.append(type(self).__name__), original(self, **kw)))
    eager_cfg = tiny_cfg(tiny_dataset_id, offline_steps=20, online_steps=0, log_interval=5)
    assert "compile" not in eager_cfg.resolved()  # off: configs keep the identity they had before the option
    compiled_cfg = tiny_cfg(tiny_dataset_id, offline_steps=20, online_steps=0, log_interval=5, compile=True)
    assert compiled_cfg.resolved()["compile"] is True
    eager, compiled = MemorySink(), MemorySink()
    train(eager_cfg, eager)
    assert compiled_modules == []
    train(compiled_cfg, compiled, tmp_path)
    assert sorted(compiled_modules) == ["CriticEnsemble", "CriticEnsemble", "GaussianPolicy", "ValueNet"]
    a, b = deterministic_metrics(eager), deterministic_metrics(compiled)
    assert a.keys() == b.keys()
    # Fused kernels reorder float sums, so equal up to rounding, not bit for bit.
    for key in ("train/critic_loss", "train/value_loss", "train/actor_loss"):
        assert a[key].keys() == b[key].keys()
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), key
    # The checkpoint holds the eager modules' keys, so a compiled run's checkpoint loads without compiling.
    state = torch.load(tmp_path / "final.pt", weights_only=False)
    assert not any("_orig_mod" in k for k in state["algo"]["actor"])
