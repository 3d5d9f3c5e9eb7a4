"""Seed vectorisation: N seeds as one batched network equal N separate runs (up to float rounding)."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
import torch

from suite import stop
from suite.algorithm import Batch, get_algorithm, make_config
from suite.checkpoint import load
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import CHECKPOINT, train
from suite.vectorize import SeedVectorizedStep, check_vectorizable_config, train_vectorized
from tests.suite.test_train import deterministic_metrics, tiny_cfg

# Batched matmuls sum in another order than N separate ones; 20–100 Adam steps keep the difference ~1e-6.
RTOL, ATOL = 1e-4, 1e-5


def _iql(seed: int):
    torch.manual_seed(seed)
    return get_algorithm("iql")(make_config("iql"), 5, 2)


def _batches(seed: int, n: int, size: int = 32) -> list[Batch]:
    g = torch.Generator().manual_seed(100 + seed)
    return [Batch(torch.randn(size, 5, generator=g), torch.rand(size, 2, generator=g) * 2 - 1,
                  torch.randn(size, generator=g), torch.randn(size, 5, generator=g),
                  (torch.rand(size, generator=g) < 0.1).float()) for _ in range(n)]


def test_vectorized_step_equals_separate_updates() -> None:
    seeds, steps = [0, 1, 2], 20
    data = [_batches(s, steps) for s in seeds]
    separate = [_iql(s) for s in seeds]
    separate_metrics = [[a.update(b) for b in bs] for a, bs in zip(separate, data, strict=True)]
    together = [_iql(s) for s in seeds]
    step = SeedVectorizedStep(together)
    together_metrics = [step.step([data[i][t] for i in range(len(seeds))]) for t in range(steps)]

    for i in range(len(seeds)):
        for name in ("critic", "critic_target", "value", "actor"):
            for p, q in zip(getattr(separate[i], name).parameters(), getattr(together[i], name).parameters(),
                            strict=True):
                torch.testing.assert_close(q, p, rtol=RTOL, atol=ATOL)
        for t in range(steps):
            assert together_metrics[t][i].keys() == separate_metrics[i][t].keys()
            for k, v in separate_metrics[i][t].items():
                torch.testing.assert_close(together_metrics[t][i][k], v, rtol=RTOL, atol=ATOL)
        # Each seed's optimiser holds its own moments (views of the stacked ones): checkpoints stay per seed.
        mine, ref = together[i].optim.state_dict()["state"], separate[i].optim.state_dict()["state"]
        assert mine.keys() == ref.keys()
        for j in ref:
            assert float(mine[j]["step"]) == float(ref[j]["step"]) == steps
            torch.testing.assert_close(mine[j]["exp_avg_sq"], ref[j]["exp_avg_sq"], rtol=RTOL, atol=1e-9)
    # The seeds really differ (distinct initialisations), so equality above is not trivial.
    assert not torch.allclose(together[0].value.net[0].weight, together[1].value.net[0].weight)


@pytest.mark.parametrize(("name", "params", "networks"), [
    # CQL with Lagrange, max-backup and BC warm-up: one summed loss with four kinds of draws.
    ("cql", {"max_target_backup": True, "cql_lagrange": True, "bc_steps": 3},
     ("critic", "critic_target", "actor", "temperatures")),
    # AWAC: two optimiser steps, the actor's loss reading the critic its own step has just changed.
    ("awac", {}, ("critic", "critic_target", "actor")),
])
def test_vectorized_step_takes_each_seeds_own_random_draws(name: str, params: dict, networks: tuple) -> None:
    """CQL and AWAC sample actions in their updates: each seed's draws (`update_inputs`, from its own RNG stream)
    go into the batched step, so the result equals separate runs."""
    seeds, steps = [0, 1], 8

    def make(seed: int):
        torch.manual_seed(seed)
        return get_algorithm(name)(make_config(name, params), 5, 2)

    data = [_batches(s, steps) for s in seeds]
    separate, separate_metrics = [make(s) for s in seeds], []
    for i, algo in enumerate(separate):
        torch.manual_seed(1000 + i)  # the seed's own stream, as in a separate process
        separate_metrics.append([algo.update(b) for b in data[i]])
    together, noises = [make(s) for s in seeds], []
    for i, algo in enumerate(together):
        torch.manual_seed(1000 + i)
        noises.append([algo.update_inputs(b) for b in data[i]])
    step = SeedVectorizedStep(together)
    assert len(step.steps) == len(together[0].loss_steps()) == (2 if name == "awac" else 1)
    together_metrics = [step.step([data[i][t] for i in range(2)], [noises[i][t] for i in range(2)])
                        for t in range(steps)]
    for i in range(2):
        assert getattr(together[i], "updates", steps) == getattr(separate[i], "updates", steps) == steps
        for net in networks:
            for p, q in zip(getattr(separate[i], net).parameters(), getattr(together[i], net).parameters(),
                            strict=True):
                torch.testing.assert_close(q, p, rtol=RTOL, atol=1e-4)
        for t in range(steps):
            assert together_metrics[t][i].keys() == separate_metrics[i][t].keys()
            for k, v in separate_metrics[i][t].items():
                torch.testing.assert_close(together_metrics[t][i][k], v, rtol=RTOL, atol=ATOL)
    # A draw inside the batched step would not be any seed's own: vmap is told to refuse it.
    with pytest.raises(RuntimeError, match="randomness"):
        step.step([data[0][0], data[1][0]], [{}, {}])


def test_vectorized_parameters_are_views_that_checkpoint_compactly(tmp_path: Path) -> None:
    algos = [_iql(0), _iql(1)]
    step = SeedVectorizedStep(algos)
    step.step([_batches(0, 1)[0], _batches(1, 1)[0]])
    weight = algos[1].critic.net[0].weight
    assert weight.untyped_storage().data_ptr() == step.params["nets.critic.net.0.weight"].untyped_storage().data_ptr()
    from suite import checkpoint

    checkpoint.save(tmp_path / "one.pt", {"algo": algos[1].state_dict()})
    state = load(tmp_path / "one.pt")["algo"]["critic"]["net.0.weight"]
    assert state.untyped_storage().nbytes() == state.numel() * state.element_size()  # its own slice only
    torch.testing.assert_close(state, weight.detach(), rtol=0, atol=0)


def test_training_vectorized_equals_separate_runs(tiny_dataset_id: str, tmp_path: Path) -> None:
    cfgs = [tiny_cfg(tiny_dataset_id, seed=s) for s in (0, 1)]
    separate = [MemorySink(), MemorySink()]
    separate_results = [train(c, sink) for c, sink in zip(cfgs, separate, strict=True)]
    together = [MemorySink(), MemorySink()]
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    results = train_vectorized(cfgs, together, dirs)

    for i in range(2):
        ref, got = deterministic_metrics(separate[i]), deterministic_metrics(together[i])
        assert got.keys() == ref.keys()
        for key, history in ref.items():
            assert got[key].keys() == history.keys(), key
            for s, v in history.items():
                assert got[key][s] == pytest.approx(v, rel=1e-3, abs=1e-3), (key, s)
        assert [e["step"] for e in results[i].evals] == [e["step"] for e in separate_results[i].evals]
        assert (dirs[i] / "final.pt").exists() and (dirs[i] / "eval.csv").exists()
    assert deterministic_metrics(together[0])["train/critic_loss"] != deterministic_metrics(together[1])[
        "train/critic_loss"]


@pytest.mark.parametrize(("algo", "params", "metric"), [
    ("cql", {}, "train/cql_gap"),
    ("awac", {}, "train/adv_mean"),
    # BAQ fits π_β offline (a third optimiser in the step), then freezes it at the switch: the stacked state is
    # rebuilt there. Online each seed has its own divergence scale.
    ("baq", {}, "train/critic_weight_mean"),
    # Prioritized batches (importance weights), the adaptive σ (each seed's own EMA of its critics'
    # disagreement), the NLL divergence and a frozen copy of the offline actor as π_β, on CQL.
    ("baq", {"base": "cql", "schedule": "adaptive", "priority": "bc_divergence", "divergence": "nll",
             "behavior_model": "offline_actor"}, "train/uncertainty"),
    # Cal-QL: batches carry returns-to-go (online ones filled in as episodes end), stacked with the rest.
    ("calql", {"cql_n_actions": 2}, "train/bound_rate"),
])
def test_training_vectorized_equals_separate_runs_for_every_kind_of_update(
    tiny_dataset_id: str, algo: str, params: dict, metric: str
) -> None:
    cfgs = [tiny_cfg(tiny_dataset_id, algo=algo, algo_params=params, seed=s, offline_steps=20, online_steps=20,
                     eval_interval=20, log_interval=10, batch_size=16) for s in (0, 1)]
    separate = [MemorySink(), MemorySink()]
    for c, sink in zip(cfgs, separate, strict=True):
        train(c, sink)
    together = [MemorySink(), MemorySink()]
    train_vectorized(cfgs, together, [None, None])
    for i in range(2):
        ref, got = deterministic_metrics(separate[i]), deterministic_metrics(together[i])
        assert got.keys() == ref.keys() and metric in got
        for key, history in ref.items():
            for s, v in history.items():
                assert got[key][s] == pytest.approx(v, rel=1e-3, abs=1e-3), (key, s)
    assert deterministic_metrics(together[0])[metric] != deterministic_metrics(together[1])[metric]


def test_vectorized_resume_continues_each_seed(tiny_dataset_id: str, tmp_path: Path) -> None:
    cfgs = [tiny_cfg(tiny_dataset_id, seed=s) for s in (0, 1)]
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    reference = [MemorySink(), MemorySink()]
    train_vectorized(cfgs, reference, [tmp_path / "r0", tmp_path / "r1"])

    class Interrupt(Exception):
        pass

    class StopAt(MemorySink):
        def log_metrics(self, metrics: dict, step: int) -> None:
            super().log_metrics(metrics, step)
            if step == 70:
                raise Interrupt

    first = [StopAt(), MemorySink()]
    with pytest.raises(Interrupt):
        train_vectorized(cfgs, first, dirs)
    assert all(load(d / CHECKPOINT)["step"] == 60 for d in dirs)
    resumed = [MemorySink(), MemorySink()]
    train_vectorized(cfgs, resumed, dirs)
    for i in range(2):
        ref, got = deterministic_metrics(reference[i]), deterministic_metrics(resumed[i])
        for key, history in got.items():
            for s, v in history.items():
                assert v == pytest.approx(ref[key][s], rel=1e-3, abs=1e-3), (key, s)
        assert 100 in got["train/critic_loss"] and 60 not in got["train/critic_loss"]


def test_vectorize_rejects_what_it_cannot_do(tiny_dataset_id: str) -> None:
    cfg = tiny_cfg(tiny_dataset_id)
    with pytest.raises(UserError, match="algorithm 'baq'.*accepted: iql .*, cql, calql, awac, baq on a base"):
        check_vectorizable_config(dataclasses.replace(cfg, algo="baq", algo_params={
            "base_params": {"actor_dropout": 0.1}}))
    with pytest.raises(UserError, match="accepted: iql"):
        check_vectorizable_config(dataclasses.replace(cfg, algo_params={"actor_dropout": 0.1}))
    with pytest.raises(UserError, match="--vectorize-seeds and --compile cannot be combined"):
        check_vectorizable_config(dataclasses.replace(cfg, compile=True))
    with pytest.raises(UserError, match=r"distinct seeds, got \[0, 0\]"):
        train_vectorized([cfg, cfg], [MemorySink(), MemorySink()], [None, None])
    with pytest.raises(UserError, match="every setting but the seed"):
        train_vectorized([cfg, dataclasses.replace(cfg, seed=1, batch_size=64)], [MemorySink(), MemorySink()],
                         [None, None])


def test_vectorized_stop_request_checkpoints_every_seed_at_one_step(tiny_dataset_id: str, tmp_path: Path) -> None:
    cfgs = [tiny_cfg(tiny_dataset_id, seed=s) for s in (0, 1)]
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    reference = [MemorySink(), MemorySink()]
    train_vectorized(cfgs, reference, [tmp_path / "r0", tmp_path / "r1"])

    def signal_at(info: dict) -> None:
        if info["step"] == 50:  # in the second seed's part of the step, after the first seed's stop check
            os.kill(os.getpid(), signal.SIGTERM)

    first = [MemorySink(), MemorySink()]
    with stop.graceful(), pytest.raises(stop.StopRequested):
        train_vectorized(cfgs, first, dirs, progress=[None, signal_at])
    assert [load(d / CHECKPOINT)["step"] for d in dirs] == [51, 51]  # the next step, for both seeds
    resumed = [MemorySink(), MemorySink()]
    train_vectorized(cfgs, resumed, dirs)
    for i in range(2):
        ref = deterministic_metrics(reference[i])
        for part in (first[i], resumed[i]):
            for key, history in deterministic_metrics(part).items():
                for s, v in history.items():
                    assert v == pytest.approx(ref[key][s], rel=1e-3, abs=1e-3), (key, s)
        assert min(s for s, _ in resumed[i].metrics["train/critic_loss"]) == 60  # resumed after step 51
