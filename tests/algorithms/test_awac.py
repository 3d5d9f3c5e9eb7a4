"""AWAC: advantage weights, the target without entropy, CORL's update order.

The update contract and training are in test_contract.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from algo_testkit import ACT, OBS, KnownQ, make_algo, make_batch

from algorithms.awac import AWAC
from suite.algorithm import Batch


def make_awac(seed: int = 0, **overrides) -> AWAC:
    return make_algo("awac", seed, **overrides)


def known_min_q(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    return np.minimum(obs[:, 0] + act.sum(-1), 2 * act.sum(-1) - obs[:, 1])


OBS_2 = np.array([[0.5, -1.0, 0, 0, 0], [2.0, 0.3, 0, 0, 0]], dtype=np.float32)
ACT_2 = np.array([[0.1, 0.2, -0.3], [0.9, -0.9, 0.4]], dtype=np.float32)
PI_2 = np.array([[0.5, 0.5, 0.5], [-1.0, 0.2, 0.3]], dtype=np.float32)


def fixed_policy_sample(obs: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(PI_2), torch.zeros(2)


def test_weights_are_exp_advantage_over_lambda_clipped() -> None:
    algo = make_awac(awac_lambda=0.5, max_weight=20.0)
    adv = torch.tensor([-1.0, 0.0, 0.7, 1.4, 5.0])
    expected = [min(math.exp(a / 0.5), 20.0) for a in adv.tolist()]  # exp(2.8) = 16.4 < 20 < exp(10)
    np.testing.assert_allclose(algo.weights(adv).numpy(), expected, rtol=1e-6)


def test_advantage_with_a_known_critic(monkeypatch) -> None:
    algo = make_awac()
    algo.critic = KnownQ()
    # The advantage draws ã from the actor pass that log π(a|s) also uses (`action_from`).
    monkeypatch.setattr(algo.actor, "action_from", lambda dist, noise=None: fixed_policy_sample(dist.loc, noise)[0])
    batch = Batch(torch.from_numpy(OBS_2), torch.from_numpy(ACT_2), torch.zeros(2), torch.zeros(2, OBS),
                  torch.zeros(2))
    expected = known_min_q(OBS_2, ACT_2) - known_min_q(OBS_2, PI_2)
    np.testing.assert_allclose(algo.advantage(batch).numpy(), expected, rtol=1e-6)


def test_actor_loss_is_weighted_negative_log_likelihood(monkeypatch) -> None:
    algo = make_awac(awac_lambda=2.0, max_weight=1.5)
    adv = torch.tensor([0.4, -2.0, 3.0])
    log_prob = torch.tensor([-1.0, -0.5, -2.0])
    monkeypatch.setattr(algo, "advantage", lambda batch, noise=None, dist=None: adv)

    class KnownLogProb:  # per-dimension log-densities whose sum over the action is `log_prob`
        def log_prob(self, act: torch.Tensor) -> torch.Tensor:
            return torch.stack([log_prob, torch.zeros(3)], dim=-1)

    monkeypatch.setattr(algo.actor, "distribution", lambda obs: KnownLogProb())
    loss, returned_adv = algo.actor_loss(make_batch(3))
    weights = [math.exp(0.2), math.exp(-1.0), 1.5]  # exp(1.5) clipped to 1.5
    assert loss.item() == pytest.approx(-(weights[0] * -1.0 + weights[1] * -0.5 + weights[2] * -2.0) / 3)
    assert torch.equal(returned_adv, adv)


def test_td_target_has_no_entropy_term(monkeypatch) -> None:
    algo = make_awac(gamma=0.9)
    algo.critic_target = KnownQ()
    # The TD target draws a' without its log-probability (AWAC has no entropy term).
    monkeypatch.setattr(algo.actor, "action_from", lambda dist, noise=None: torch.from_numpy(PI_2))
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
