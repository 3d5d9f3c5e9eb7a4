"""Implicit Q-Learning (Kostrikov, Nair & Levine, 2021, arXiv 2110.06169).

V is fitted to an upper expectile of Q over dataset actions (no out-of-distribution action is ever queried),
Q is regressed on r + γV(s'), and the policy is extracted by advantage-weighted regression.
Defaults are the paper's locomotion settings (Appendix B, Table 5) as also used by CORL's `iql.py` configs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from suite.algorithm import (
    Batch,
    LossContext,
    Metrics,
    SummedLossAlgorithm,
    check_common_params,
    register,
    with_actor_penalty,
)
from suite.errors import UserError
from suite.losses import advantage_weights, critic_regression, expectile_loss, td_target
from suite.nets import CriticEnsemble, GaussianPolicy, ValueNet, soft_update_
from suite.optim import adam


@dataclass(frozen=True)
class IQLConfig:
    expectile: float = 0.7  # τ for locomotion (IQL paper, Table 5)
    temperature: float = 3.0  # inverse temperature β of AWR (IQL paper, Table 5)
    max_weight: float = 100.0  # clip of exp(β·A) (IQL reference code, `exp_a.clamp(max=100)`)
    gamma: float = 0.99  # discount (IQL paper, Table 5)
    tau: float = 0.005  # target-network Polyak rate (IQL paper, Table 5)
    # Adam learning rates (IQL paper, Table 5). The actor's stays constant: the reference code's locomotion
    # config decays it with a cosine over 1M offline steps, but its fine-tuning script does not, and every run
    # here continues online.
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)  # 2×256 MLPs for all networks (IQL paper, Table 5)
    n_critics: int = 2  # clipped double-Q (IQL reference code)
    actor_dropout: float = 0.0  # none for locomotion (dropout 0.1 is only used on the Kitchen/Adroit tasks)
    # IQL divides locomotion rewards by the dataset's return range and multiplies by 1000 (reference code,
    # `normalize(dataset)`; CORL `modify_reward`). Set False to train on raw rewards.
    scale_rewards: bool = True

    def __post_init__(self) -> None:
        check_common_params(self)
        if not 0.0 < self.expectile < 1.0:
            raise UserError(f"expectile must be in (0, 1), got {self.expectile}")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_weight <= 0:
            raise UserError(f"max_weight must be > 0, got {self.max_weight}")
        if not 0.0 <= self.actor_dropout < 1.0:
            raise UserError(f"actor_dropout must be in [0, 1), got {self.actor_dropout}")


@register("iql")
class IQL(SummedLossAlgorithm):
    Config = IQLConfig

    def __init__(self, cfg: IQLConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.n_critics, cfg.hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(obs_dim, cfg.hidden).to(self.device)
        self.actor = GaussianPolicy(obs_dim, act_dim, cfg.hidden, dropout=cfg.actor_dropout or None).to(self.device)
        self.optim = adam({
            "critic": (self.critic.parameters(), cfg.critic_lr),
            "value": (self.value.parameters(), cfg.value_lr),
            "actor": (self.actor.parameters(), cfg.actor_lr),
        })

    def reward_transform(self, episode_returns: np.ndarray) -> tuple[float, float]:
        if not self.cfg.scale_rewards or len(episode_returns) < 2:
            return 1.0, 0.0
        spread = float(episode_returns.max() - episode_returns.min())
        return (1000.0 / spread if spread > 0 else 1.0), 0.0

    # --- losses: public so that BAQ can reuse them --------------------------------------------------------
    def value_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expectile regression of V(s) on min_i Q̄_i(s, a). Returns (loss, target Q, V(s))."""
        with torch.no_grad():
            target_q = self.critic_target(batch.obs, batch.act).min(0).values
        v = self.value(batch.obs)
        return expectile_loss(target_q - v, self.cfg.expectile), target_q, v

    def critic_loss(self, batch: Batch, critic_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """TD regression of every Q_i on r + γ(1−d)V(s'), optionally weighted per sample. Returns (loss, Q)."""
        with torch.no_grad():
            target = td_target(batch.rew, batch.done, self.value(batch.next_obs), self.cfg.gamma)
        q = self.critic(batch.obs, batch.act)
        return critic_regression(q, target, critic_weight), q

    def actor_loss(self, batch: Batch, adv: torch.Tensor) -> torch.Tensor:
        """Advantage-weighted regression: −E[exp(β·A)·log π(a|s)] with the weights clipped."""
        weights = advantage_weights(adv.detach(), self.cfg.temperature, self.cfg.max_weight)
        return -(weights * self.actor.log_prob(batch.obs, batch.act)).mean()

    def loss(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        """V, Q and π losses summed (IQL draws no random numbers: no update inputs). They touch disjoint
        parameters and every cross term is detached (the reference code's V, Q, π steps all read the pre-update
        networks), so one backward + one fused step is exact."""
        value_loss, target_q, v = self.value_loss(batch)
        critic_loss, q = self.critic_loss(batch, context.critic_weight)
        actor_loss = self.actor_loss(batch, target_q - v)
        total = value_loss + critic_loss + actor_loss
        metrics = {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss}
        total = with_actor_penalty(total, batch, self.actor, context.actor_penalty, metrics)
        metrics.update(q_mean=q.mean(), v_mean=v.mean(), adv_mean=(target_q - v).mean())
        return total, metrics

    def after_step(self) -> None:
        soft_update_(self.critic_target, self.critic, self.cfg.tau)

    @classmethod
    def is_vectorizable(cls, cfg: IQLConfig) -> bool:
        return not cfg.actor_dropout  # dropout draws random numbers inside the update

    def modules(self) -> dict:
        return {
            "critic": self.critic, "critic_target": self.critic_target, "value": self.value,
            "actor": self.actor, "optim": self.optim,
        }
