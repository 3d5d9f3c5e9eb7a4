"""SAC (suite/behavior/sac.py): losses against values computed by hand, one update, the policy-file export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from suite.behavior.sac import SAC, SACBatch, SACConfig
from suite.data.rollouts import TanhGaussianPolicy
from suite.errors import UserError


def _constant_sac(mean: float, log_std: float, q: tuple[float, float], q_target: tuple[float, float],
                  alpha: float) -> SAC:
    """A 1-d SAC whose networks ignore their inputs: all weights 0, so every output is its last bias."""
    sac = SAC(SACConfig(hidden=(4, 4), init_log_alpha=math.log(alpha)), obs_dim=2, act_dim=1)
    with torch.no_grad():
        for net in (sac.actor, sac.critic, sac.critic_target):
            for p in net.parameters():
                p.zero_()
        last = sac.actor.trunk[-1]
        last.bias.copy_(torch.tensor([mean, log_std]))
        sac.critic.net[-1].bias.copy_(torch.tensor(q).view(2, 1, 1))
        sac.critic_target.net[-1].bias.copy_(torch.tensor(q_target).view(2, 1, 1))
    return sac


def _log_prob(mean: float, log_std: float, eps: float) -> tuple[float, float]:
    """tanh-Gaussian action and log-density, by hand: log N(u; mean, std) − log(1 − tanh(u)²)."""
    std = math.exp(log_std)
    u = mean + std * eps
    gaussian = -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)
    return math.tanh(u), gaussian - math.log(1 - math.tanh(u) ** 2)


def test_losses_match_hand_computed_values() -> None:
    mean, log_std, alpha, gamma = 0.3, -0.5, 0.2, 0.99
    q, q_target = (1.5, 2.0), (3.0, 2.5)
    sac = _constant_sac(mean, log_std, q, q_target, alpha)
    batch = SACBatch(observations=torch.tensor([[0.1, -0.2], [0.4, 0.5]]), actions=torch.tensor([[0.2], [-0.7]]),
                     rewards=torch.tensor([1.0, -0.5]), next_observations=torch.tensor([[0.0, 1.0], [2.0, 0.3]]),
                     terminals=torch.tensor([0.0, 1.0]))
    noise, next_noise = [0.5, -1.0], [1.2, 0.1]
    total, metrics = sac.losses(batch, torch.tensor(noise).view(2, 1), torch.tensor(next_noise).view(2, 1))

    # Critic: y = r + γ(1 − d)(min Q̄ − α log π(a'|s')), loss = mean over both critics and the batch.
    targets = []
    for r, d, e in zip([1.0, -0.5], [0.0, 1.0], next_noise, strict=True):
        _, next_log_prob = _log_prob(mean, log_std, e)
        targets.append(r + gamma * (1 - d) * (min(q_target) - alpha * next_log_prob))
    critic = sum((qi - y) ** 2 for qi in q for y in targets) / 4
    # Actor: mean of α log π(ã|s) − min Q(s, ã); temperature: −log α (log π + H̄), H̄ = −|A| = −1.
    log_probs = [_log_prob(mean, log_std, e)[1] for e in noise]
    actor = sum(alpha * lp - min(q) for lp in log_probs) / 2
    temperature = sum(-math.log(alpha) * (lp - 1.0) for lp in log_probs) / 2

    assert metrics["critic_loss"].item() == pytest.approx(critic, rel=1e-5)
    assert metrics["actor_loss"].item() == pytest.approx(actor, rel=1e-5)
    assert metrics["alpha_loss"].item() == pytest.approx(temperature, rel=1e-5)
    assert metrics["entropy"].item() == pytest.approx(-sum(log_probs) / 2, rel=1e-5)
    assert total.item() == pytest.approx(critic + actor + temperature, rel=1e-5)


def test_one_update_steps_every_part_and_polyak_averages_the_targets() -> None:
    torch.manual_seed(0)
    sac = SAC(SACConfig(hidden=(8, 8)), obs_dim=3, act_dim=2)
    before = {name: p.detach().clone() for name, p in sac.critic.named_parameters()}
    target_before = {name: p.detach().clone() for name, p in sac.critic_target.named_parameters()}
    actor_before = [p.detach().clone() for p in sac.actor.parameters()]
    gen = torch.Generator().manual_seed(1)
    batch = SACBatch(torch.randn(16, 3, generator=gen), torch.rand(16, 2, generator=gen) * 2 - 1,
                     torch.randn(16, generator=gen), torch.randn(16, 3, generator=gen), torch.zeros(16))
    sac.update(batch)
    assert sac.log_alpha.item() != 0.0
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, sac.actor.parameters(), strict=True))
    for name, p in sac.critic.named_parameters():
        assert not torch.equal(p, before[name])
        expected = 0.995 * target_before[name] + 0.005 * p.detach()
        torch.testing.assert_close(dict(sac.critic_target.named_parameters())[name], expected)


def test_policy_arrays_are_the_behaviour_file_format_and_act_like_the_actor() -> None:
    torch.manual_seed(3)
    sac = SAC(SACConfig(), obs_dim=5, act_dim=2)
    arrays = sac.policy_arrays()
    shapes = {"fc0/weight": (256, 5), "fc0/bias": (256,), "fc1/weight": (256, 256), "fc1/bias": (256,),
              "last_fc/weight": (2, 256), "last_fc/bias": (2,), "last_fc_log_std/weight": (2, 256),
              "last_fc_log_std/bias": (2,)}
    assert {k: v.shape for k, v in arrays.items()} == shapes
    assert all(v.dtype == np.float32 for v in arrays.values())
    obs = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    noise = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    policy = TanhGaussianPolicy(arrays)
    with torch.no_grad():
        sampled, _ = sac.actor.sample(torch.from_numpy(obs), torch.from_numpy(noise))
        deterministic = sac.actor.deterministic(torch.from_numpy(obs))
    np.testing.assert_allclose(policy(obs, noise), sampled.numpy(), atol=1e-5)
    np.testing.assert_allclose(policy(obs, None), deterministic.numpy(), atol=1e-5)


def test_hidden_layers_other_than_two_are_refused() -> None:
    with pytest.raises(UserError, match=r"SAC hidden layers must be two .*got \(256,\)"):
        SAC(SACConfig(hidden=(256,)), obs_dim=3, act_dim=1)
