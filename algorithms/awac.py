"""Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal & Levine, 2020, arXiv 2006.09359).

Twin Q-functions are trained by TD on r + γ·min_i Q̄_i(s', a'), a' ~ π(·|s'), and the policy by weighted
maximum likelihood of dataset actions with weights exp(A(s, a)/λ), A(s, a) = Q(s, a) − Q(s, ã), ã ~ π(·|s).
This follows CORL's `algorithms/offline/awac.py` and `algorithms/finetune/awac.py` (the same update offline
and online); every default names its source.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from suite.algorithm import (
    Algorithm,
    Batch,
    LossContext,
    LossStep,
    Metrics,
    UpdateInputs,
    check_common_params,
    drawn,
    register,
    with_actor_penalty,
)
from suite.errors import UserError
from suite.losses import advantage_weights, critic_regression, soft_td_target
from suite.nets import CriticEnsemble, GaussianPolicy, soft_update_
from suite.optim import adam


@dataclass(frozen=True)
class AWACConfig:
    # Temperature λ of exp(A/λ): CORL's gym-mujoco configs (`configs/offline/awac/{halfcheetah,hopper,
    # walker2d}/medium_v2.yaml`: `awac_lambda: 0.3333`); CORL's code default is 1.0.
    awac_lambda: float = 0.3333
    max_weight: float = 100.0  # clip of exp(A/λ) (CORL `exp_adv_max=100.0`)
    gamma: float = 0.99  # CORL `gamma: 0.99`
    tau: float = 0.005  # CORL `tau: 5e-3`
    actor_lr: float = 3e-4  # CORL `learning_rate: 3e-4` for the actor and both critics
    critic_lr: float = 3e-4
    # CORL's Actor and Critic MLPs have three hidden layers of `hidden_dim: 256`.
    hidden: tuple[int, ...] = (256, 256, 256)
    n_critics: int = 2  # twin Q (CORL `critic_1`, `critic_2`)
    # Gaussian with an unsquashed mean and a state-independent log-std clamped to [-20, 2] (CORL `Actor`).
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        check_common_params(self)
        if self.awac_lambda <= 0:
            raise UserError(f"awac_lambda must be > 0, got {self.awac_lambda}")


@register("awac")
class AWAC(Algorithm):
    Config = AWACConfig

    def __init__(
        self, cfg: AWACConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.n_critics, cfg.hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = GaussianPolicy(
            obs_dim, act_dim, cfg.hidden, cfg.log_std_min, cfg.log_std_max, tanh_mean=False
        ).to(self.device)
        # Two optimisers: the actor step must see the critic after its own step (see `loss_steps`).
        self.critic_optim = adam({"critic": (self.critic.parameters(), cfg.critic_lr)})
        self.actor_optim = adam({"actor": (self.actor.parameters(), cfg.actor_lr)})

    # --- losses: public so that BAQ can reuse them ----------------------------------------------------------
    @torch.no_grad()
    def td_target(self, batch: Batch, inputs: UpdateInputs | None = None) -> torch.Tensor:
        """r + γ(1−d)·min_i Q̄_i(s', a'), a' ~ π(·|s') clipped to the box; no entropy term (CORL)."""
        next_act = self.actor.action_from(self.actor.distribution(batch.next_obs), drawn(inputs, "next"))
        next_q = self.critic_target(batch.next_obs, next_act)
        return soft_td_target(batch.rew, batch.done, next_q, self.cfg.gamma)

    def critic_loss(
        self, batch: Batch, critic_weight: torch.Tensor | None = None, inputs: UpdateInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TD regression of every Q_i, optionally weighted per sample. Returns (loss, Q (n, B))."""
        target = self.td_target(batch, inputs)
        q = self.critic(batch.obs, batch.act)
        return critic_regression(q, target, critic_weight), q

    @torch.no_grad()
    def advantage(
        self, batch: Batch, inputs: UpdateInputs | None = None, dist: Normal | None = None
    ) -> torch.Tensor:
        """A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã) with one ã ~ π(·|s) (CORL's single-sample V(s)).
        `dist`: π(·|s) if the caller has already computed it."""
        dist = self.actor.distribution(batch.obs) if dist is None else dist
        pi_act = self.actor.action_from(dist, drawn(inputs, "actor"))
        b = batch.obs.shape[0]
        # Dataset and policy actions in one critic pass.
        q = self.critic(torch.cat([batch.obs, batch.obs]), torch.cat([batch.act, pi_act])).min(0).values
        return q[:b] - q[b:]

    def weights(self, adv: torch.Tensor) -> torch.Tensor:
        """exp(A/λ) clipped at `max_weight`."""
        return advantage_weights(adv, 1.0 / self.cfg.awac_lambda, self.cfg.max_weight)

    def actor_loss(self, batch: Batch, inputs: UpdateInputs | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """−E[exp(A/λ)·log π(a|s)] over dataset actions, weights held fixed. Returns (loss, A)."""
        # One actor pass for both the baseline's ã (drawn without gradient) and log π(a|s): the actor does not
        # change in between, so this equals two passes, at the cost of one (AWAC ~1.05× faster).
        dist = self.actor.distribution(batch.obs)
        adv = self.advantage(batch, inputs, dist)
        loss = -(self.weights(adv) * dist.log_prob(batch.act).sum(-1)).mean()
        return loss, adv

    # --- the update: critic step, then actor step ------------------------------------------------------------
    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """The update's two draws, in the order the losses make them: a' ~ π(·|s') for the TD target, then
        ã ~ π(·|s) for the advantage baseline (the draws do not depend on the networks, so drawing both before
        the critic step gives a separate run's numbers)."""
        shape = (batch.obs.shape[0], self.act_dim)
        return {"next": torch.randn(shape, device=self.device), "actor": torch.randn(shape, device=self.device)}

    def critic_step(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        critic_loss, q = self.critic_loss(batch, context.critic_weight, context.inputs)
        return critic_loss, {"critic_loss": critic_loss, "q_mean": q.mean()}

    def actor_step(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        actor_loss, adv = self.actor_loss(batch, context.inputs)
        metrics = {"actor_loss": actor_loss, "adv_mean": adv.mean()}
        return with_actor_penalty(actor_loss, batch, self.actor, context.actor_penalty, metrics), metrics

    def loss_steps(self) -> list[LossStep]:
        # CORL's order: the critic steps first, then the actor loss is computed with the *updated* critic, so
        # the two steps cannot be fused into one without changing the algorithm.
        return [LossStep(self.critic_step, (self.critic_optim,)), LossStep(self.actor_step, (self.actor_optim,))]

    def after_step(self) -> None:
        soft_update_(self.critic_target, self.critic, self.cfg.tau)

    def modules(self) -> dict:
        return {
            "critic": self.critic, "critic_target": self.critic_target, "actor": self.actor,
            "critic_optim": self.critic_optim, "actor_optim": self.actor_optim,
        }
