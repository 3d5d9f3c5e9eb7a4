"""IQL: expectile loss, advantage weights, reward scaling (values by hand), the update contract, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from algo_testkit import ACT, OBS, KnownQ, make_batch, params, same
from torch import nn

from algorithms.iql import IQL
from suite import checkpoint
from suite.algorithm import Batch, make_config
from suite.losses import advantage_weights, expectile_loss
from suite.tracking import MemorySink
from suite.train import TrainConfig, train

SMALL = {"hidden": (32, 32)}


def make_iql(seed: int = 0, **overrides) -> IQL:
    torch.manual_seed(seed)
    return IQL(make_config("iql", {**SMALL, **overrides}), OBS, ACT)


class KnownV(nn.Module):
    """V(s) = s_2 − 0.5 (with one parameter so that the value loss has something to differentiate)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(-0.5))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 2] + self.shift


def test_expectile_loss_by_hand() -> None:
    diff = torch.tensor([-2.0, 1.0, 3.0, -0.5])
    # |τ − 1(u < 0)|·u² with τ = 0.7: weights 0.3, 0.7, 0.7, 0.3
    expected = (0.3 * 4.0 + 0.7 * 1.0 + 0.7 * 9.0 + 0.3 * 0.25) / 4
    assert expectile_loss(diff, 0.7).item() == pytest.approx(expected)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1 + 9 + 0.25) / 4)  # τ = ½: half MSE


def test_value_loss_on_a_hand_made_batch() -> None:
    algo = make_iql(expectile=0.8)
    algo.critic_target = KnownQ()
    algo.value = KnownV()
    obs = torch.tensor([[0.5, -1.0, 2.0, 0, 0], [2.0, 0.3, -1.0, 0, 0], [0.0, 0.0, 0.0, 0, 0]])
    act = torch.tensor([[0.1, 0.2, -0.3], [0.9, -0.9, 0.4], [0.2, 0.2, 0.2]])
    batch = Batch(obs, act, torch.zeros(3), torch.zeros(3, OBS), torch.zeros(3))
    # min_i Q̄_i: [min(0.5, 1.0), min(2.4, 0.5), min(0.6, 1.2)] = [0.5, 0.5, 0.6]; V = [1.5, -1.5, -0.5]
    q, v = [0.5, 0.5, 0.6], [1.5, -1.5, -0.5]
    expected = (0.2 * 1.0**2 + 0.8 * 2.0**2 + 0.8 * 1.1**2) / 3  # u = q − v = [−1, 2, 1.1], τ = 0.8
    loss, target_q, value = algo.value_loss(batch)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(target_q.numpy(), q, rtol=1e-6)
    np.testing.assert_allclose(value.detach().numpy(), v, rtol=1e-6)


def test_advantage_weights_by_hand() -> None:
    adv = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    expected = [math.exp(-3.0), 1.0, math.exp(1.5), 100.0]  # exp(3·2) = 403 is clipped at 100
    np.testing.assert_allclose(advantage_weights(adv, 3.0, 100.0).numpy(), expected, rtol=1e-6)


def test_actor_loss_weights_log_likelihood_by_hand(monkeypatch) -> None:
    algo = make_iql(temperature=2.0, max_weight=5.0)
    log_prob = torch.tensor([-1.0, -0.5, -2.0], requires_grad=True)
    monkeypatch.setattr(algo.actor, "log_prob", lambda obs, act: log_prob)
    adv = torch.tensor([0.25, -1.0, 3.0], requires_grad=True)
    loss = algo.actor_loss(make_batch(3), adv)
    weights = [math.exp(0.5), math.exp(-2.0), 5.0]  # exp(6) clipped at 5
    assert loss.item() == pytest.approx(-(weights[0] * -1.0 + weights[1] * -0.5 + weights[2] * -2.0) / 3)
    loss.backward()
    assert adv.grad is None  # the weights are constants for the actor
    np.testing.assert_allclose(log_prob.grad.numpy(), [-w / 3 for w in weights], rtol=1e-6)


def test_reward_scaling_divides_by_the_return_range() -> None:
    algo = make_iql()
    assert algo.reward_transform(np.array([10.0, 30.0, 110.0])) == pytest.approx((1000.0 / 100.0, 0.0))
    assert algo.reward_transform(np.array([5.0])) == (1.0, 0.0)  # one episode: no range to divide by
    assert algo.reward_transform(np.array([7.0, 7.0])) == (1.0, 0.0)
    assert make_iql(scale_rewards=False).reward_transform(np.array([10.0, 110.0])) == (1.0, 0.0)


def test_update_changes_every_network_and_returns_finite_detached_scalars() -> None:
    algo = make_iql()
    before = {name: params(m) for name, m in algo.modules().items() if isinstance(m, nn.Module)}
    metrics = algo.update(make_batch())
    for name, old in before.items():
        assert not same(old, params(algo.modules()[name])), name
    for key, value in metrics.items():
        assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value), key


def test_same_seed_same_metrics_and_parameters() -> None:
    runs = []
    for _ in range(2):
        algo = make_iql(seed=4)
        metrics = [algo.update(make_batch(seed=s)) for s in range(3)]
        values = [{k: v.item() for k, v in m.items()} for m in metrics]
        runs.append((values, params(algo.critic) + params(algo.value) + params(algo.actor)))
    assert runs[0][0] == runs[1][0]
    assert same(runs[0][1], runs[1][1])


def test_state_dict_round_trip_gives_same_actions_and_next_update(tmp_path: Path) -> None:
    algo = make_iql()
    for s in range(2):
        algo.update(make_batch(seed=s))
    checkpoint.save(tmp_path / "algo.pt", algo.state_dict())
    clone = make_iql(seed=123)
    clone.load_state_dict(checkpoint.load(tmp_path / "algo.pt"))
    obs = make_batch(seed=7).obs
    assert torch.equal(algo.act(obs, deterministic=True), clone.act(obs, deterministic=True))
    batch = make_batch(seed=8)
    m1, m2 = algo.update(batch), clone.update(batch)
    assert {k: v.item() for k, v in m1.items()} == {k: v.item() for k, v in m2.items()}
    assert same(params(algo.critic) + params(algo.value), params(clone.critic) + params(clone.value))


def test_critic_weight_of_ones_equals_no_weight() -> None:
    batch = make_batch()
    results = []
    for weight in (None, torch.ones(16)):
        algo = make_iql(seed=2)
        metrics = algo.update(batch, critic_weight=weight)
        results.append(({k: v.item() for k, v in metrics.items()}, params(algo.critic)))
    assert results[0][0] == results[1][0]
    assert same(results[0][1], results[1][1])


def test_zero_critic_weight_removes_the_sample_from_the_gradient() -> None:
    algo = make_iql()
    batch = make_batch()
    changed = batch._replace(rew=batch.rew.clone().index_fill_(0, torch.tensor([3]), 1e3))

    def grad(b: Batch, weight: torch.Tensor) -> list[torch.Tensor]:
        algo.critic.zero_grad()
        algo.critic_loss(b, weight)[0].backward()
        return [p.grad.clone() for p in algo.critic.parameters()]

    zero_at_3 = torch.ones(16).index_fill_(0, torch.tensor([3]), 0.0)
    assert same(grad(batch, zero_at_3), grad(changed, zero_at_3))
    assert not same(grad(batch, torch.ones(16)), grad(changed, torch.ones(16)))


def test_actor_penalty_changes_only_the_actor() -> None:
    batch = make_batch()
    results = []
    for penalty in (None, lambda obs, actor: 10.0 * actor.deterministic(obs).pow(2).sum(-1)):
        algo = make_iql(seed=2)
        metrics = algo.update(batch, actor_penalty=penalty)
        results.append((metrics, params(algo.critic) + params(algo.value), params(algo.actor)))
    assert results[1][0]["actor_penalty"].item() > 0
    assert same(results[0][1], results[1][1])
    assert not same(results[0][2], results[1][2])


def test_offline_to_online_training_checkpoint_and_resume(tiny_dataset_id: str, tmp_path: Path) -> None:
    cfg = TrainConfig(algo="iql", dataset=tiny_dataset_id, offline_steps=50, online_steps=50, batch_size=32,
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
    for key in ("train/critic_loss", "train/value_loss", "train/actor_loss"):
        assert [step for step, _ in full_sink.metrics[key]] == [25, 50, 75, 100]
        assert resumed_sink.metrics[key] == full_sink.metrics[key][-1:]
    saved = checkpoint.load(tmp_path / "full" / "final.pt")
    algo = IQL(make_config("iql", SMALL), saved["obs_mean"].shape[0], 3)
    algo.load_state_dict(saved["algo"])
    obs = torch.randn(4, saved["obs_mean"].shape[0])
    assert torch.isfinite(algo.act(obs)).all() and algo.act(obs).abs().max() <= 1.0
