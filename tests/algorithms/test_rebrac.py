"""ReBRAC: the critic target's and the actor's behaviour-cloning penalties by hand, the delayed actor, the
per-dataset weights and the online decay."""

from __future__ import annotations

import math

import pytest
import torch
from algo_testkit import OBS, KnownQ, make_algo, make_batch, networks, same

from algorithms.rebrac import dataset_family
from suite.algorithm import Batch
from suite.train import TrainConfig
from suite.vectorize import check_vectorizable


def _states(*first_two: tuple[float, float]) -> torch.Tensor:
    obs = torch.zeros(len(first_two), OBS)
    obs[:, :2] = torch.tensor(first_two)
    return obs


def test_critic_target_subtracts_the_weighted_penalty_against_the_datas_next_action() -> None:
    algo = make_algo("rebrac", gamma=0.99)
    algo.critic_target = KnownQ()  # Q0 = s0 + Σa, Q1 = 2·Σa − s1
    algo.actor_target = lambda obs: torch.tensor([[0.2, -0.5, 0.0], [0.1, 0.1, 0.1]])
    nan = math.nan
    batch = Batch(obs=_states((0, 0), (0, 0)), act=torch.zeros(2, 3), rew=torch.tensor([1.0, 2.0]),
                  next_obs=_states((1, 2), (0, 1)), done=torch.tensor([0.0, 1.0]),
                  next_act=torch.tensor([[0.5, 0.5, 0.0], [nan, nan, nan]]))
    # Noise 10 on the first action dimension: 0.2·10 = 2, clipped to noise_clip = 0.5, so ã'0 = (0.7, −0.5, 0).
    noise = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target, penalty = algo.td_target(batch, noise, beta_critic=0.1)
    # Penalty: (0.7 − 0.5)² + (−0.5 − 0.5)² = 1.04; none where the data hold no next action.
    assert penalty.tolist() == pytest.approx([1.04, 0.0])
    # State 0: Σã' = 0.2, Q0 = 1 + 0.2 = 1.2, Q1 = 0.4 − 2 = −1.6; y = 1 + 0.99·(−1.6 − 0.1·1.04).
    # State 1 is terminal: y = r = 2.
    assert target.tolist() == pytest.approx([1 + 0.99 * (-1.6 - 0.104), 2.0])
    target_no_penalty, _ = algo.td_target(batch, noise, beta_critic=0.0)
    assert target_no_penalty.tolist() == pytest.approx([1 + 0.99 * -1.6, 2.0])


def test_actor_loss_trades_the_normalised_q_against_the_penalty() -> None:
    algo = make_algo("rebrac")
    algo.critic = KnownQ()
    algo.actor = lambda obs: torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, -0.5]])
    batch = make_batch(b=2)._replace(obs=_states((1, 0), (0, 2)), act=torch.zeros(2, 3))
    loss, metrics = algo.actor_loss(batch, beta_actor=0.01)
    # ‖π(s) − a‖² = 0.25 for both. min Q: state 0 min(1 + 0.5, 1 − 0) = 1; state 1 min(0 − 0.5, −1 − 2) = −3.
    # λ = 1/mean|Q| = 1/2. Loss = mean(0.01·0.25 − 0.5·1, 0.01·0.25 + 0.5·3) = mean(−0.4975, 1.5025).
    assert loss.item() == pytest.approx(0.5025)
    assert metrics["actor_bc"].item() == pytest.approx(0.25)
    plain = make_algo("rebrac", normalize_q=False)
    plain.critic, plain.actor = algo.critic, algo.actor
    assert plain.actor_loss(batch, beta_actor=0.01)[0].item() == pytest.approx((-0.9975 + 3.0025) / 2)  # λ = 1


def test_actor_and_targets_step_every_policy_freq_th_update() -> None:
    algo = make_algo("rebrac", policy_freq=2)
    batch = make_batch(fields=("next_act",))
    before = networks(algo)
    first = algo.update(batch)
    after_first = networks(algo)
    second = algo.update(batch)
    after_second = networks(algo)
    assert "actor_loss" in first and "actor_loss" not in second
    for name in ("actor", "actor_target", "critic_target"):
        assert not same(before[name], after_first[name]) and same(after_first[name], after_second[name]), name
    assert not same(after_first["critic"], after_second["critic"])


def test_online_decay_of_the_penalties() -> None:
    algo = make_algo("rebrac", actor_bc_coef=0.01, critic_bc_coef=0.1, bc_decay_steps=100, min_decay_coef=0.5)
    assert algo.penalty_weights() == (0.01, 0.1)
    algo.on_online_start(None)
    got = []
    for t in (0, 25, 80):
        algo.on_online_step(t)
        got.append(algo.penalty_weights())
    assert got == [pytest.approx((0.01, 0.0)), pytest.approx((0.0075, 0.0)), pytest.approx((0.005, 0.0))]
    keep = make_algo("rebrac", critic_bc_coef=0.1, critic_bc_online=True)
    keep.on_online_start(None)
    assert keep.penalty_weights()[1] == 0.1


def test_per_dataset_penalties_batch_size_and_their_overrides() -> None:
    assert dataset_family("local:halfcheetah-medium-replay") == ("halfcheetah", "medium-replay")
    assert dataset_family("d4rl:hopper-medium-expert-v2") == ("hopper", "medium-expert")
    assert dataset_family("minari:mujoco/walker2d/medium-v0") == ("walker2d", "medium")
    assert dataset_family("d4rl:antmaze-umaze-v2") is None
    resolved = TrainConfig(algo="rebrac", dataset="local:halfcheetah-medium-replay").resolved()
    assert (resolved["algo_params"]["actor_bc_coef"], resolved["algo_params"]["critic_bc_coef"]) == (0.01, 0.001)
    assert resolved["batch_size"] == 1024 and resolved["algo_params"]["critic_layernorm"] is True
    hopper = TrainConfig(algo="rebrac", dataset="local:hopper-medium", algo_params={"actor_bc_coef": 0.5})
    assert hopper.resolved()["algo_params"]["actor_bc_coef"] == 0.5  # the config's own value wins
    assert hopper.resolved()["algo_params"]["critic_bc_coef"] == 0.001  # the paper's, not CORL's 0.01
    assert TrainConfig(algo="rebrac", dataset="local:hopper-medium", batch_size=256).resolved()["batch_size"] == 256


def test_critics_carry_layernorm_and_rebrac_says_why_it_is_not_vectorizable() -> None:
    algo = make_algo("rebrac")
    names = [type(m).__name__ for m in algo.critic.net]
    assert names[:3] == ["EnsembleLinear", "ReLU", "EnsembleLayerNorm"]  # after the ReLU, as CORL's critic
    with pytest.raises(Exception, match="rebrac's delayed actor steps are not"):
        check_vectorizable(type(algo), algo.cfg)
