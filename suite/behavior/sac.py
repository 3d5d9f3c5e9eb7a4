"""Soft Actor-Critic with automatic entropy tuning (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905): the behaviour-policy learner of `baq behavior train`.

The actor is the suite's tanh-squashed Gaussian (suite.nets.TanhGaussianPolicy, log-std clipped to [-20, 2]) and
is written out in the behaviour files' policy format (`policy_arrays`). The losses are the paper's, built from
the suite's shared pieces (suite.losses), so SAC copies no other algorithm's loss:
- critics (eq. 5 with the clipped double-Q of section 5): mean over both critics of
  (Q_i(s, a) − y)², y = r + γ(1 − d)(min_i Q̄_i(s', a') − α log π(a'|s')), a' ~ π(·|s');
- actor (eq. 7): mean of α log π(ã|s) − min_i Q_i(s, ã), ã ~ π(·|s) reparameterised;
- temperature (eq. 18): −log α · (log π(ã|s) + H̄), H̄ the target entropy.
All three are computed from the same batch with the current α and networks, then summed and stepped once (their
parameters are disjoint: the actor loss reads the critics through detached parameters, the temperature loss a
detached log π), which is rlkit's and softlearning's update of one batch. The critics' squared error is averaged
over the two critics rather than summed (softlearning: 0.5·MSE each): Adam's step does not depend on that scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from suite.errors import UserError
from suite.losses import critic_regression, soft_td_target, temperature_loss
from suite.nets import CriticEnsemble, TanhGaussianPolicy, call_detached, soft_update_
from suite.optim import adam


@dataclass
class SACConfig:
    """SAC's hyperparameters; every default is the paper's (arXiv 1812.05905, Appendix D, Table 1)."""

    hidden: tuple[int, ...] = (256, 256)  # Table 1: 2 hidden layers of 256 units, ReLU
    lr: float = 3e-4  # Table 1: Adam, learning rate 3·10⁻⁴ (critics, actor and α alike)
    batch_size: int = 256  # Table 1: 256 samples per minibatch
    gamma: float = 0.99  # Table 1: discount 0.99
    tau: float = 0.005  # Table 1: target smoothing coefficient 0.005, target update interval 1
    replay_size: int = 1_000_000  # Table 1: replay buffer size 10⁶
    # Table 1: entropy target −dim(A); None means −|A| of the task.
    target_entropy: float | None = None
    # α = exp(log α) starts at 1: rlkit's SACTrainer and softlearning's SAC initialise log α to 0.
    init_log_alpha: float = 0.0


@dataclass
class SACBatch:
    """A minibatch: float tensors, `terminals` 1.0 only for true terminations (time-outs bootstrap)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor


class SAC:
    """Twin critics with Polyak-averaged targets, a tanh-Gaussian actor and a learned temperature α."""

    def __init__(self, cfg: SACConfig, obs_dim: int, act_dim: int) -> None:
        if len(cfg.hidden) != 2:
            raise UserError(f"SAC hidden layers must be two (the policy files hold fc0 and fc1), got {cfg.hidden}")
        self.cfg = cfg
        self.act_dim = act_dim
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, cfg.hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, n=2, hidden=cfg.hidden)  # section 5: two Q-functions
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(cfg.init_log_alpha)))
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.optim = adam({"critic": (self.critic.parameters(), cfg.lr), "actor": (self.actor.parameters(), cfg.lr),
                           "alpha": ([self.log_alpha], cfg.lr)})

    def losses(
        self, batch: SACBatch, noise: torch.Tensor, next_noise: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed loss and its parts. `noise` / `next_noise`: the standard normals (B, |A|) of the actions
        sampled at s and at s' (drawn by the caller, so a test can fix them)."""
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch.next_observations, next_noise)
            next_q = self.critic_target(batch.next_observations, next_action)
            target = soft_td_target(batch.rewards, batch.terminals, next_q, self.cfg.gamma, next_log_prob, alpha)
        q = self.critic(batch.observations, batch.actions)
        critic_loss = critic_regression(q, target)
        action, log_prob = self.actor.sample(batch.observations, noise)
        q_new = call_detached(self.critic, batch.observations, action).min(0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        metrics = {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                   "alpha_loss": alpha_loss.detach(), "alpha": alpha, "entropy": -log_prob.detach().mean(),
                   "q_mean": q.detach().mean()}
        return critic_loss + actor_loss + alpha_loss, metrics

    def update(self, batch: SACBatch) -> dict[str, torch.Tensor]:
        """One gradient step on all three losses (Table 1: one gradient step per env step), then the targets."""
        shape = batch.actions.shape
        noise, next_noise = torch.randn(shape), torch.randn(shape)
        loss, metrics = self.losses(batch, noise, next_noise)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        soft_update_(self.critic_target, self.critic, self.cfg.tau)
        return metrics

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """A stochastic action for one observation (exploration while training)."""
        action, _ = self.actor.sample(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
        return action[0].numpy()

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "optim": self.optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optim.load_state_dict(state["optim"])

    def policy_arrays(self) -> dict[str, np.ndarray]:
        """The actor in the behaviour files' policy format: D4RL's rlkit names, float32, weights as (out, in).

        The suite's actor has one output layer for [mean, log-std] (first |A| rows the mean, as
        TanhGaussianPolicy splits them); the format has one layer each.
        """
        first, _, second, _, last = self.actor.trunk
        a = self.act_dim
        parts = {"fc0": (first.weight, first.bias), "fc1": (second.weight, second.bias),
                 "last_fc": (last.weight[:a], last.bias[:a]), "last_fc_log_std": (last.weight[a:], last.bias[a:])}
        arrays = {}
        for name, (weight, bias) in parts.items():
            arrays[f"{name}/weight"] = weight.detach().cpu().numpy().astype(np.float32).copy()
            arrays[f"{name}/bias"] = bias.detach().cpu().numpy().astype(np.float32).copy()
        return arrays
