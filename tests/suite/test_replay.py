"""Fine-tuning protocols: the mixing ratio's batch composition, the no-retain buffer after a warm-up, exact resume,
and bad values as one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from suite.buffer import ReplayBuffer
from suite.errors import UserError
from suite.matrix import cell_hash
from suite.tracking import MemorySink
from suite.train import TrainConfig, TrainingRun, train
from tests.suite.test_train import deterministic_metrics, tiny_cfg


def _marked_buffer(n_offline: int, n_online: int) -> ReplayBuffer:
    """obs[:, 0] = 0 for offline rows and 1 for online rows; obs[:, 1] = the row's index."""
    buf = ReplayBuffer(n_offline + n_online, 2, 1)
    buf.add_batch(torch.stack([torch.zeros(n_offline), torch.arange(n_offline).float()], 1).numpy(),
                  torch.zeros(n_offline, 1).numpy(), torch.zeros(n_offline).numpy(),
                  torch.zeros(n_offline, 2).numpy(), torch.zeros(n_offline).numpy())
    for i in range(n_online):
        buf.add([1.0, float(n_offline + i)], [0.0], 0.0, [0.0, 0.0], False)
    return buf


@pytest.mark.parametrize(("batch_size", "ratio", "n_offline"), [
    (256, 0.5, 128), (10, 0.3, 3), (100, 0.29, 29), (7, 0.5, 3), (16, 1.0, 16), (16, 0.0, 0)])
def test_mixing_ratio_draws_exactly_its_share_from_the_offline_data(batch_size: int, ratio: float,
                                                                    n_offline: int) -> None:
    buf = _marked_buffer(50, 5)
    batch = buf.sample_split(batch_size, torch.Generator().manual_seed(0), 50, ratio)
    source = batch.obs[:, 0]
    assert source.tolist() == [0.0] * n_offline + [1.0] * (batch_size - n_offline)  # offline rows first
    assert set(batch.obs[n_offline:, 1].tolist()) <= set(range(50, 55))


def test_sampling_the_online_part_before_any_online_transition_fails() -> None:
    with pytest.raises(RuntimeError, match="holds none yet"):
        _marked_buffer(5, 0).sample_split(4, torch.Generator(), 5, 0.5)


def test_no_retain_buffer_holds_exactly_the_warmup_transitions_at_the_first_update(tiny_dataset_id: str) -> None:
    cfg = tiny_cfg(tiny_dataset_id, offline_steps=10, online_steps=30, retain_offline=False, warmup_steps=12,
                   utd=2, batch_size=64)
    run = TrainingRun(cfg, MemorySink())
    algo = run.algo
    seen = {}
    switch = algo.on_online_start
    algo.on_online_start = lambda buffer: (seen.setdefault("buffer", buffer), switch(buffer))
    batches = _batches(run, 11)  # the 10 offline updates and the first online one
    buffer = seen["buffer"]
    n_offline = 3000  # the tiny dataset (tests/conftest.py)
    # The first online update comes after the 12 warm-up steps and the 13th env step: 13 online transitions.
    assert buffer.size == n_offline + 13
    online_rows = buffer.obs[n_offline:buffer.size]
    first_online = batches[-1]
    assert all((online_rows == row).all(-1).any() for row in first_online.obs)  # every row an online one
    assert len({tuple(r.tolist()) for r in first_online.obs}) > 1


def _batches(run: TrainingRun, n: int) -> list:
    """The first `n` batches the run hands out for updates (the updates themselves left out)."""
    out: list = []
    while True:
        for _ in range(run.begin_step()):
            out.append(run.next_batch())
            run.record({})
            if len(out) == n:
                return out
        run.end_step()


def _updates(cfg: TrainConfig) -> int:
    run, count = TrainingRun(cfg, MemorySink()), 0
    while not run.done:
        for _ in range(run.begin_step()):
            run.next_batch()
            run.record({})
            count += 1
        run.end_step()
    return count


def test_warmup_steps_make_no_updates_and_utd_follows_them(tiny_dataset_id: str) -> None:
    cfg = tiny_cfg(tiny_dataset_id, offline_steps=10, online_steps=30, retain_offline=False, warmup_steps=12,
                   utd=2, eval_interval=1000)
    assert _updates(cfg) == 10 + (30 - 12) * 2
    assert _updates(dataclasses.replace(cfg, retain_offline=True, warmup_steps=0, mixing_ratio=0.5)) == 10 + 30 * 2


@pytest.mark.parametrize(("algo", "protocol"), [
    ("iql", {"mixing_ratio": 0.5, "utd": 2}),
    ("calql", {"retain_offline": False, "warmup_steps": 15, "critic_layernorm": True}),
])
def test_protocols_resume_exactly(tiny_dataset_id: str, tmp_path: Path, algo: str, protocol: dict) -> None:
    params = {"hidden": [32, 32], "cql_n_actions": 2} if algo == "calql" else {}
    cfg = tiny_cfg(tiny_dataset_id, algo=algo, algo_params=params, **protocol)
    reference = MemorySink()
    train(cfg, reference, tmp_path / "ref")
    (tmp_path / "resumed").mkdir()
    # tiny_cfg checkpoints every 20 steps: the one at 80 is mid-online (40 offline + 60 online steps).
    (tmp_path / "resumed" / "checkpoint.pt").write_bytes((tmp_path / "ref" / "checkpoint.pt").read_bytes())
    resumed = MemorySink()
    train(cfg, resumed, tmp_path / "resumed")
    ref, got = deterministic_metrics(reference), deterministic_metrics(resumed)
    for key, history in got.items():
        for step, value in history.items():
            assert value == ref[key][step], (key, step)
    assert 100 in got["train/critic_loss"]


def test_protocol_keys_left_unset_keep_the_cell_hash_and_show_when_set() -> None:
    base = TrainConfig(algo="iql", dataset="local:hopper-medium")
    assert "mixing_ratio" not in base.resolved() and base.resolved()["batch_size"] == 256
    assert cell_hash(base) == cell_hash(dataclasses.replace(base, batch_size=256))
    mixed = dataclasses.replace(base, mixing_ratio=0.5)
    assert mixed.resolved()["mixing_ratio"] == 0.5 and cell_hash(mixed) != cell_hash(base)
    assert TrainConfig.from_dict({"mixing_ratio": 1}).mixing_ratio == 1.0  # an int from TOML is the same value


@pytest.mark.parametrize(("changes", "match"), [
    ({"mixing_ratio": 1.5}, r"mixing_ratio must be a number in \[0, 1\] \(or unset: one uniform buffer\), got 1.5"),
    ({"mixing_ratio": -0.1}, r"mixing_ratio must be a number in \[0, 1\].*got -0.1"),
    ({"mixing_ratio": "half"}, r"mixing_ratio must be a number in \[0, 1\].*got 'half'"),
    ({"retain_offline": False, "warmup_steps": -5}, r"warmup_steps must be an integer in \[0, online_steps = 60\], "
                                                    "got -5"),
    ({"warmup_steps": 10}, "warmup_steps = 10 needs retain_offline = false"),
    ({"retain_offline": False, "mixing_ratio": 0.5}, "mixing_ratio = 0.5 draws from the offline data, which "
                                                     "retain_offline = false keeps out"),
    ({"algo": "baq", "mixing_ratio": 0.5}, "baq's prioritized replay decides itself .* set priority = \"none\""),
    ({"algo": "baq", "retain_offline": False}, "baq's prioritized replay"),
])
def test_bad_protocol_values_are_one_line_user_errors(tiny_dataset_id: str, changes: dict, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        dataclasses.replace(tiny_cfg(tiny_dataset_id), **changes).validate()
    assert "\n" not in str(err.value)


def test_baq_without_priorities_composes_with_the_mixing_ratio(tiny_dataset_id: str) -> None:
    cfg = tiny_cfg(tiny_dataset_id, algo="baq", mixing_ratio=0.5, algo_params={"priority": "none"})
    assert cfg.validate() is cfg
