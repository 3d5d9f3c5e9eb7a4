"""CQL: the conservative term, the Lagrange multiplier, shared SAC pieces, the fused step.

The update contract and training are in test_contract.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from algo_testkit import ACT, OBS, KnownQ, make_algo, make_batch

from algorithms.cql import CQL
from suite.algorithm import Batch
from suite.losses import importance_sampled_logsumexp, soft_td_target, temperature_loss


def make_cql(seed: int = 0, **overrides) -> CQL:
    return make_algo("cql", seed, **overrides)


def known_q(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    return np.stack([obs[..., 0] + act.sum(-1), 2 * act.sum(-1) - obs[..., 1]])


# --- shared losses ------------------------------------------------------------------------------------------
def test_importance_sampled_logsumexp_matches_closed_form() -> None:
    q = torch.tensor([[1.0, 2.0, -0.5], [0.0, 3.0, 1.0]])
    log_density = torch.tensor([[-2.0, -1.0, 0.5], [-0.3, -0.3, -0.3]])
    for temp in (1.0, 0.5):
        expected = [temp * math.log(sum(math.exp((qk - dk) / temp) for qk, dk in zip(qr, dr, strict=True)))
                    for qr, dr in zip(q.tolist(), log_density.tolist(), strict=True)]
        got = importance_sampled_logsumexp(q, log_density, temp)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_soft_td_target_by_hand() -> None:
    rew, done = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])  # min over critics: [3, 1]
    log_pi = torch.tensor([-1.5, 0.5])
    plain = soft_td_target(rew, done, next_q, 0.9)
    np.testing.assert_allclose(plain.numpy(), [1.0 + 0.9 * 3.0, -2.0], rtol=1e-6)
    soft = soft_td_target(rew, done, next_q, 0.9, log_pi, alpha=0.2)
    np.testing.assert_allclose(soft.numpy(), [1.0 + 0.9 * (3.0 + 0.2 * 1.5), -2.0], rtol=1e-6)


def test_temperature_loss_gradient_direction() -> None:
    log_alpha = torch.zeros((), requires_grad=True)
    log_pi = torch.tensor([-1.0, -3.0], requires_grad=True)  # entropy 2 above the target −2: α must fall
    temperature_loss(log_alpha, log_pi, target_entropy=-2.0).backward()
    assert log_alpha.grad.item() == pytest.approx(4.0)  # −mean(log π + H̄) = −(−3 − 5)/2
    assert log_pi.grad is None or torch.all(log_pi.grad == 0)


# --- the conservative term ----------------------------------------------------------------------------------
@pytest.mark.parametrize("importance_sample", [True, False])
def test_critic_loss_conservative_term_by_hand(importance_sample: bool, monkeypatch) -> None:
    algo = make_cql(cql_importance_sample=importance_sample, cql_temp=0.7, cql_alpha=3.0)
    algo.critic = KnownQ()
    obs = np.array([[0.5, -1.0, 0, 0, 0], [2.0, 0.3, 0, 0, 0]], dtype=np.float32)
    act = np.array([[0.1, 0.2, -0.3], [0.9, -0.9, 0.4]], dtype=np.float32)
    ood = np.array([[[0.5, 0.5, 0.5], [-1, 0.2, 0.3]], [[0.0, 0.0, 0.1], [0.7, 0.7, -0.2]]], dtype=np.float32)
    log_density = np.array([[-2.0, 0.4], [1.0, -0.5]], dtype=np.float32)
    target = np.array([0.3, -1.2], dtype=np.float32)
    monkeypatch.setattr(algo, "sample_ood_actions",
                        lambda batch, noise=None: (torch.from_numpy(ood), torch.from_numpy(log_density)))
    monkeypatch.setattr(algo, "td_target", lambda batch, noise=None: torch.from_numpy(target))
    batch = Batch(torch.from_numpy(obs), torch.from_numpy(act), torch.zeros(2), torch.zeros(2, OBS),
                  torch.zeros(2))

    loss, parts = algo.critic_loss(batch)

    q_data = known_q(obs, act)  # (2 critics, 2 states)
    q_ood = known_q(obs[:, None, :], ood)  # (2, 2 states, 2 proposals)
    temp = 0.7
    if importance_sample:
        soft_max = temp * np.log(np.exp((q_ood - log_density) / temp).sum(-1))
    else:
        soft_max = temp * np.log(np.exp(q_ood / temp).sum(-1) + np.exp(q_data / temp))
    gap = (soft_max - q_data).mean(-1)
    td = ((q_data - target) ** 2).mean()
    np.testing.assert_allclose(parts["gap"].numpy(), gap, rtol=1e-5)
    np.testing.assert_allclose(parts["td_loss"].item(), td, rtol=1e-5)
    np.testing.assert_allclose(loss.item(), td + 3.0 * gap.mean(), rtol=1e-5)


def test_sample_ood_actions_proposals_and_densities() -> None:
    algo = make_cql()
    batch = make_batch(8)
    n = algo.cfg.cql_n_actions
    actions, log_density = algo.sample_ood_actions(batch)
    assert actions.shape == (8, 3 * n, ACT) and log_density.shape == (8, 3 * n)
    assert actions.abs().max() <= 1.0
    torch.testing.assert_close(log_density[:, :n], torch.full((8, n), -ACT * math.log(2.0)))
    for part, states in ((1, batch.obs), (2, batch.next_obs)):
        acts = actions[:, part * n:(part + 1) * n]
        expected = algo.actor.log_prob(states.repeat_interleave(n, 0), acts.reshape(-1, ACT)).view(8, n)
        torch.testing.assert_close(log_density[:, part * n:(part + 1) * n], expected, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("target_gap, rises", [(-1e3, True), (1e3, False)])
def test_lagrange_multiplier_moves_towards_the_target_gap(target_gap: float, rises: bool) -> None:
    algo = make_cql(cql_lagrange=True, target_action_gap=target_gap)
    before = algo.alpha_prime().item()
    metrics = algo.update(make_batch())
    after = algo.alpha_prime().item()
    assert metrics["alpha_prime"].item() == pytest.approx(before)
    assert (after > before) if rises else (after < before)
    gap = torch.tensor([2.0, 4.0])
    algo.temperatures.zero_grad()
    algo.lagrange_loss(gap).backward()
    grad = algo.temperatures["log_alpha_prime"].grad.item()
    # d/d log α' of −α'·α_cql·(mean gap − target): gradient descent raises α' iff gap > target
    assert grad == pytest.approx(-after * algo.cql_alpha * (3.0 - target_gap), rel=1e-5)


def test_without_lagrange_alpha_prime_is_one_and_untouched() -> None:
    algo = make_cql()
    before = algo.temperatures["log_alpha_prime"].detach().clone()
    algo.update(make_batch())
    assert algo.alpha_prime().item() == 1.0
    assert torch.equal(algo.temperatures["log_alpha_prime"], before)


def test_bc_steps_use_dataset_log_likelihood_then_q() -> None:
    algo = make_cql(bc_steps=1)
    batch = make_batch()
    assert algo.updates == 0  # the first update is in the BC phase: the loss must not depend on the critic
    torch.manual_seed(3)
    bc_loss, _ = algo.actor_loss(batch)
    with torch.no_grad():
        for p in algo.critic.parameters():
            p.add_(1.0)
    torch.manual_seed(3)
    assert algo.actor_loss(batch)[0].item() == pytest.approx(bc_loss.item())
    algo.updates = 1
    torch.manual_seed(3)
    assert algo.actor_loss(batch)[0].item() != pytest.approx(bc_loss.item())


def test_online_switch_sets_cql_alpha_and_state_dict_keeps_it() -> None:
    algo = make_cql(cql_alpha=5.0, cql_alpha_online=1.0)
    assert algo.cql_alpha == 5.0
    algo.on_online_start(None)
    algo.update(make_batch())
    assert algo.cql_alpha == 1.0
    other = make_cql(seed=9, cql_alpha=5.0, cql_alpha_online=1.0)
    other.load_state_dict(algo.state_dict())
    assert other.cql_alpha == 1.0 and other.updates == 1


# --- the fused step -----------------------------------------------------------------------------------------
def test_each_loss_reaches_only_its_own_parameters() -> None:
    """What makes the single fused step exact: no loss leaves gradients on another loss's parameters."""
    algo = make_cql(cql_lagrange=True)
    batch = make_batch()
    groups = {"critic": list(algo.critic.parameters()), "actor": list(algo.actor.parameters()),
              "log_alpha": [algo.temperatures["log_alpha"]],
              "log_alpha_prime": [algo.temperatures["log_alpha_prime"]]}
    actor_loss, log_pi = algo.actor_loss(batch)
    critic_loss, parts = algo.critic_loss(batch)
    losses = {"actor": actor_loss, "critic": critic_loss, "log_alpha": algo.temperature_loss(log_pi),
              "log_alpha_prime": algo.lagrange_loss(parts["gap"])}
    every = [p for ps in groups.values() for p in ps]
    for owner, loss in losses.items():
        grads = torch.autograd.grad(loss, every, retain_graph=True, allow_unused=True)
        touched = {name for name, ps in groups.items() for p, g in zip(every, grads, strict=True)
                   if any(p is q for q in ps) and g is not None and g.abs().sum() > 0}
        assert touched == {owner}, (owner, touched)
