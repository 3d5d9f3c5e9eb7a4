"""AWAC: advantage weights, the target without entropy, CORL's update order, the contract, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from algo_testkit import ACT, OBS, KnownQ, make_batch, params, same
from torch import nn

from algorithms.awac import AWAC
from suite import checkpoint
from suite.algorithm import Batch, make_config
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import TrainConfig, train

SMALL = {"hidden": (32, 32)}


def make_awac(seed: int = 0, **overrides) -> AWAC:
    torch.manual_seed(seed)
    return AWAC(make_config("awac", {**SMALL, **overrides}), OBS, ACT)


def known_min_q(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    return np.minimum(obs[:, 0] + act.sum(-1), 2 * act.sum(-1) - obs[:, 1])


OBS_2 = np.array([[0.5, -1.0, 0, 0, 0], [2.0, 0.3, 0, 0, 0]], dtype=np.float32)
ACT_2 = np.array([[0.1, 0.2, -0.3], [0.9, -0.9, 0.4]], dtype=np.float32)
PI_2 = np.array([[0.5, 0.5, 0.5], [-1.0, 0.2, 0.3]], dtype=np.float32)


def fixed_policy_sample(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(PI_2), torch.zeros(2)


def test_weights_are_exp_advantage_over_lambda_clipped() -> None:
    algo = make_awac(awac_lambda=0.5, max_weight=20.0)
    adv = torch.tensor([-1.0, 0.0, 0.7, 1.4, 5.0])
    expected = [min(math.exp(a / 0.5), 20.0) for a in adv.tolist()]  # exp(2.8) = 16.4 < 20 < exp(10)
    np.testing.assert_allclose(algo.weights(adv).numpy(), expected, rtol=1e-6)


def test_advantage_with_a_known_critic(monkeypatch) -> None:
    algo = make_awac()
    algo.critic = KnownQ()
    monkeypatch.setattr(algo.actor, "sample", fixed_policy_sample)
    batch = Batch(torch.from_numpy(OBS_2), torch.from_numpy(ACT_2), torch.zeros(2), torch.zeros(2, OBS),
                  torch.zeros(2))
    expected = known_min_q(OBS_2, ACT_2) - known_min_q(OBS_2, PI_2)
    np.testing.assert_allclose(algo.advantage(batch).numpy(), expected, rtol=1e-6)


def test_actor_loss_is_weighted_negative_log_likelihood(monkeypatch) -> None:
    algo = make_awac(awac_lambda=2.0, max_weight=1.5)
    adv = torch.tensor([0.4, -2.0, 3.0])
    log_prob = torch.tensor([-1.0, -0.5, -2.0])
    monkeypatch.setattr(algo, "advantage", lambda batch: adv)
    monkeypatch.setattr(algo.actor, "log_prob", lambda obs, act: log_prob)
    loss, returned_adv = algo.actor_loss(make_batch(3))
    weights = [math.exp(0.2), math.exp(-1.0), 1.5]  # exp(1.5) clipped to 1.5
    assert loss.item() == pytest.approx(-(weights[0] * -1.0 + weights[1] * -0.5 + weights[2] * -2.0) / 3)
    assert torch.equal(returned_adv, adv)


def test_td_target_has_no_entropy_term(monkeypatch) -> None:
    algo = make_awac(gamma=0.9)
    algo.critic_target = KnownQ()
    monkeypatch.setattr(algo.actor, "sample", lambda obs: (torch.from_numpy(PI_2), torch.tensor([-5.0, 7.0])))
    batch = Batch(torch.zeros(2, OBS), torch.zeros(2, ACT), torch.tensor([1.0, -1.0]),
                  torch.from_numpy(OBS_2), torch.tensor([0.0, 1.0]))
    next_q = known_min_q(OBS_2, PI_2)
    np.testing.assert_allclose(algo.td_target(batch).numpy(), [1.0 + 0.9 * next_q[0], -1.0], rtol=1e-6)


def test_actor_step_uses_the_updated_critic() -> None:
    """CORL's order: critic step, then the advantage from the critic after that step."""
    batch = make_batch()
    algo, manual = make_awac(seed=3), make_awac(seed=3)
    torch.manual_seed(8)
    metrics = algo.update(batch)
    torch.manual_seed(8)
    loss, _ = manual.critic_loss(batch)
    manual.critic_optim.zero_grad()
    loss.backward()
    manual.critic_optim.step()
    assert metrics["adv_mean"].item() == manual.advantage(batch).mean().item()
    manual_stale = make_awac(seed=3)
    torch.manual_seed(8)
    manual_stale.critic_loss(batch)
    assert metrics["adv_mean"].item() != manual_stale.advantage(batch).mean().item()


def test_bad_config_is_a_user_error() -> None:
    with pytest.raises(UserError, match="awac_lambda"):
        make_config("awac", {"awac_lambda": 0.0})


def test_update_changes_every_network_and_returns_finite_detached_scalars() -> None:
    algo = make_awac()
    before = {name: params(m) for name, m in algo.modules().items() if isinstance(m, nn.Module)}
    metrics = algo.update(make_batch())
    for name, old in before.items():
        assert not same(old, params(algo.modules()[name])), name
    assert set(metrics) >= {"critic_loss", "actor_loss", "q_mean", "adv_mean"}
    for key, value in metrics.items():
        assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value), key


def test_same_seed_same_metrics_and_parameters() -> None:
    runs = []
    for _ in range(2):
        algo = make_awac(seed=4)
        torch.manual_seed(5)
        metrics = [algo.update(make_batch(seed=s)) for s in range(3)]
        values = [{k: v.item() for k, v in m.items()} for m in metrics]
        runs.append((values, params(algo.critic) + params(algo.actor)))
    assert runs[0][0] == runs[1][0]
    assert same(runs[0][1], runs[1][1])


def test_state_dict_round_trip_gives_same_actions_and_next_update(tmp_path: Path) -> None:
    algo = make_awac()
    for s in range(2):
        algo.update(make_batch(seed=s))
    checkpoint.save(tmp_path / "algo.pt", algo.state_dict())
    clone = make_awac(seed=123)
    clone.load_state_dict(checkpoint.load(tmp_path / "algo.pt"))
    obs = make_batch(seed=7).obs
    assert torch.equal(algo.act(obs, deterministic=True), clone.act(obs, deterministic=True))
    batch = make_batch(seed=8)
    torch.manual_seed(11)
    m1 = algo.update(batch)
    torch.manual_seed(11)
    m2 = clone.update(batch)
    assert {k: v.item() for k, v in m1.items()} == {k: v.item() for k, v in m2.items()}
    assert same(params(algo.critic) + params(algo.actor), params(clone.critic) + params(clone.actor))


def test_critic_weight_of_ones_equals_no_weight() -> None:
    batch = make_batch()
    results = []
    for weight in (None, torch.ones(16)):
        algo = make_awac(seed=2)
        torch.manual_seed(6)
        metrics = algo.update(batch, critic_weight=weight)
        results.append(({k: v.item() for k, v in metrics.items()}, params(algo.critic)))
    assert results[0][0] == results[1][0]
    assert same(results[0][1], results[1][1])


def test_zero_critic_weight_removes_the_sample_from_the_gradient() -> None:
    algo = make_awac()
    batch = make_batch()
    changed = batch._replace(rew=batch.rew.clone().index_fill_(0, torch.tensor([3]), 1e3))

    def grad(b: Batch, weight: torch.Tensor) -> list[torch.Tensor]:
        algo.critic.zero_grad()
        torch.manual_seed(0)
        algo.critic_loss(b, weight)[0].backward()
        return [p.grad.clone() for p in algo.critic.parameters()]

    zero_at_3 = torch.ones(16).index_fill_(0, torch.tensor([3]), 0.0)
    assert same(grad(batch, zero_at_3), grad(changed, zero_at_3))
    assert not same(grad(batch, torch.ones(16)), grad(changed, torch.ones(16)))


def test_actor_penalty_changes_only_the_actor() -> None:
    batch = make_batch()
    results = []
    for penalty in (None, lambda obs, actor: 10.0 * actor.deterministic(obs).pow(2).sum(-1)):
        algo = make_awac(seed=2)
        torch.manual_seed(6)
        metrics = algo.update(batch, actor_penalty=penalty)
        results.append((metrics, params(algo.critic), params(algo.actor)))
    assert results[1][0]["actor_penalty"].item() > 0
    assert same(results[0][1], results[1][1])
    assert not same(results[0][2], results[1][2])


def test_offline_to_online_training_checkpoint_and_resume(tiny_dataset_id: str, tmp_path: Path) -> None:
    cfg = TrainConfig(algo="awac", dataset=tiny_dataset_id, offline_steps=50, online_steps=50, batch_size=32,
                      eval_interval=1000, eval_episodes=1, log_interval=25, checkpoint_interval=75,
                      max_episode_steps=50, algo_params={"hidden": [32, 32]})
    full_sink = MemorySink()
    result = train(cfg, full_sink, run_dir=tmp_path / "full")
    assert [e["step"] for e in result.evals] == [50, 100]
    assert all(np.isfinite(e["return"]) for e in result.evals)
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "checkpoint.pt").write_bytes((tmp_path / "full" / "checkpoint.pt").read_bytes())
    resumed_sink = MemorySink()
    assert train(cfg, resumed_sink, run_dir=tmp_path / "resumed").evals == result.evals
    for key in ("train/critic_loss", "train/actor_loss"):
        assert [step for step, _ in full_sink.metrics[key]] == [25, 50, 75, 100]
        assert resumed_sink.metrics[key] == full_sink.metrics[key][-1:]
    saved = checkpoint.load(tmp_path / "full" / "final.pt")
    algo = AWAC(make_config("awac", SMALL), saved["obs_mean"].shape[0], 3)
    algo.load_state_dict(saved["algo"])
    obs = torch.randn(4, saved["obs_mean"].shape[0])
    assert torch.isfinite(algo.act(obs)).all() and algo.act(obs).abs().max() <= 1.0
