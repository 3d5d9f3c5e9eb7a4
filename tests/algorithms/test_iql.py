"""IQL: expectile loss, advantage weights, reward scaling (values by hand).

The update contract and training are in test_contract.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from algo_testkit import OBS, KnownQ, make_algo, make_batch
from torch import nn

from algorithms.iql import IQL
from suite.algorithm import Batch
from suite.losses import advantage_weights, expectile_loss


def make_iql(seed: int = 0, **overrides) -> IQL:
    return make_algo("iql", seed, **overrides)


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
