"""Revisited Behavior-Regularized Actor-Critic, ReBRAC (Tarasov, Kurenkov, Nikulin & Kolesnikov, 2023,
arXiv 2305.09836).

TD3+BC (Fujimoto & Gu 2021) with the design choices the paper revisits: a behaviour-cloning penalty in the actor
loss *and* in the critic's target, LayerNorm in the critics, 3 hidden layers, batch 1024 and larger learning
rates. Actor: a = π(s) deterministic; it maximises λ·min_i Q_i(s, π(s)) − β_actor·‖π(s) − a‖² (λ = 1/mean|Q|,
held fixed); critics regress on y = r + γ(1 − d)·(min_i Q̄_i(s', ã') − β_critic·‖ã' − a'‖²), ã' = the target
actor's action with TD3's clipped noise, a' the dataset's next action. The actor and the targets step every
`policy_freq`-th update. Online the penalties follow CORL's fine-tuning script (`algorithms/finetune/rebrac.py`).
Every default names its source; formulas: docs/algorithms.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from suite.algorithm import (
    Algorithm,
    Batch,
    LossContext,
    LossStep,
    Metrics,
    UpdateInputs,
    check_common_params,
    register,
    with_actor_penalty,
)
from suite.errors import UserError
from suite.losses import critic_regression, td_target
from suite.nets import CriticEnsemble, DeterministicPolicy, EnsembleLinear, call_detached, soft_update_
from suite.optim import adam

# (β_actor, β_critic) per D4RL locomotion dataset: the paper's tuned values (arXiv 2305.09836, appendix table of
# the best hyperparameters, as transcribed in d3rlpy's `reproductions/offline/rebrac.py`). CORL's
# `configs/offline/rebrac/<env>/<quality>_v2.yaml` agree except for hopper-medium and hopper-expert, where they
# set β_critic = 0.01 and 0.1; the authors' own repository (`configs/rebrac/hopper/hopper_medium.yaml`) has the
# paper's 0.001 (docs/algorithms.md).
PENALTIES: dict[tuple[str, str], tuple[float, float]] = {
    ("halfcheetah", "random"): (0.001, 0.1), ("halfcheetah", "medium"): (0.001, 0.01),
    ("halfcheetah", "expert"): (0.01, 0.01), ("halfcheetah", "medium-expert"): (0.01, 0.1),
    ("halfcheetah", "medium-replay"): (0.01, 0.001),
    ("hopper", "random"): (0.001, 0.01), ("hopper", "medium"): (0.01, 0.001), ("hopper", "expert"): (0.1, 0.001),
    ("hopper", "medium-expert"): (0.1, 0.01), ("hopper", "medium-replay"): (0.05, 0.5),
    ("walker2d", "random"): (0.01, 0.0), ("walker2d", "medium"): (0.05, 0.1), ("walker2d", "expert"): (0.01, 0.5),
    ("walker2d", "medium-expert"): (0.01, 0.01), ("walker2d", "medium-replay"): (0.05, 0.01),
}
_ENVS = ("halfcheetah", "hopper", "walker2d")
_QUALITIES = ("medium-replay", "medium-expert", "random", "medium", "expert")  # longest match first


def dataset_family(dataset_id: str) -> tuple[str, str] | None:
    """(env, quality) of a locomotion dataset id of any source (`local:hopper-medium`, `d4rl:hopper-medium-v2`,
    `minari:mujoco/hopper/medium-v0`), or None."""
    name = dataset_id.split(":", 1)[-1].lower().replace("_", "-")
    env = next((e for e in _ENVS if e in name), None)
    if env is None:
        return None
    rest = name[name.index(env) + len(env):]
    quality = next((q for q in _QUALITIES if q in rest), None)
    return (env, quality) if quality else None


@dataclass(frozen=True)
class ReBRACConfig:
    # Penalty weights. These defaults are used only where the dataset is not in PENALTIES (`dataset_defaults`
    # fills in the tuned pair otherwise): hopper-medium's pair, the middle of the tuned range.
    actor_bc_coef: float = 0.01
    critic_bc_coef: float = 0.01
    actor_lr: float = 1e-3  # CORL ReBRAC configs `actor_learning_rate: 0.001` (paper, Table of hyperparameters)
    critic_lr: float = 1e-3  # `critic_learning_rate: 0.001`
    hidden: tuple[int, ...] = (256, 256, 256)  # `hidden_dim: 256`, `actor_n_hiddens: 3`, `critic_n_hiddens: 3`
    n_critics: int = 2  # `EnsembleCritic(num_critics=2)`
    critic_layernorm: bool = True  # `critic_ln: true` (LayerNorm after each hidden ReLU); `actor_ln: false`
    gamma: float = 0.99  # `gamma: 0.99`
    tau: float = 0.005  # `tau: 0.005`
    policy_noise: float = 0.2  # TD3's target smoothing σ (`policy_noise: 0.2`) ...
    noise_clip: float = 0.5  # ... clipped at ±0.5 (`noise_clip: 0.5`)
    policy_freq: int = 2  # actor and target updates every 2nd update (`policy_freq: 2`)
    normalize_q: bool = True  # λ = 1/mean|Q| in the actor loss (`normalize_q: true`; TD3+BC's α/mean|Q|)
    # Online (CORL `algorithms/finetune/rebrac.py`): β_actor·max(min_decay_coef, 1 − t/bc_decay_steps) with t the
    # online step, i.e. a linear decay to half over the first half of `num_online_updates: 1_000_000` ...
    min_decay_coef: float = 0.5
    bc_decay_steps: int = 1_000_000
    critic_bc_online: bool = False  # ... and the critic penalty off (`critic_bc_coef *= 0`); True keeps β_critic
    expl_noise: float = 0.0  # σ of the Gaussian exploration noise online (CORL fine-tuning `expl_noise: 0.0`)

    def __post_init__(self) -> None:
        check_common_params(self)
        for key in ("actor_bc_coef", "critic_bc_coef", "policy_noise", "noise_clip", "expl_noise"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.policy_freq < 1:
            raise UserError(f"policy_freq must be a positive integer, got {self.policy_freq}")
        if not 0.0 <= self.min_decay_coef <= 1.0:
            raise UserError(f"min_decay_coef must be in [0, 1], got {self.min_decay_coef}")
        if self.bc_decay_steps < 1:
            raise UserError(f"bc_decay_steps must be a positive integer, got {self.bc_decay_steps}")


@torch.no_grad()
def _edac_init_(module: nn.Module, last_bound: float) -> None:
    """CORL's ReBRAC initialisation ("as in the EDAC paper"): hidden weights PyTorch's default U(±1/√fan_in) (left
    as built), hidden biases 0.1, the output layer's weights and bias U(±last_bound)."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]
    for layer in layers[:-1]:
        nn.init.constant_(layer.bias, 0.1)
    nn.init.uniform_(layers[-1].weight, -last_bound, last_bound)
    nn.init.uniform_(layers[-1].bias, -last_bound, last_bound)


def bc_distance(act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖a − a_D‖² per sample, summed over action dimensions; 0 where a_D is absent (NaN: the data hold no next
    action after an episode's last step)."""
    missing = torch.isnan(target).any(-1)
    dist = (act - torch.nan_to_num(target)).pow(2).sum(-1)
    return torch.where(missing, torch.zeros_like(dist), dist)


@register("rebrac")
class ReBRAC(Algorithm):
    Config = ReBRACConfig
    batch_fields = ("next_act",)
    batch_size: ClassVar[int] = 1024  # CORL ReBRAC configs `batch_size: 1024` (paper: "larger batches")

    def __init__(
        self, cfg: ReBRACConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        self.actor = DeterministicPolicy(obs_dim, act_dim, cfg.hidden).to(self.device)
        _edac_init_(self.actor, 1e-3)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.n_critics, cfg.hidden,
                                     layer_norm=cfg.critic_layernorm or None, norm_after_relu=True).to(self.device)
        _edac_init_(self.critic, 3e-3)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = adam({"actor": (self.actor.parameters(), cfg.actor_lr)})
        self.critic_optim = adam({"critic": (self.critic.parameters(), cfg.critic_lr)})
        self.updates = 0
        self.online = False
        self.online_step = 0

    @classmethod
    def dataset_defaults(cls, dataset_id: str) -> dict[str, Any]:
        pair = PENALTIES.get(dataset_family(dataset_id) or ("", ""))
        return {} if pair is None else {"actor_bc_coef": pair[0], "critic_bc_coef": pair[1]}

    @classmethod
    def is_vectorizable(cls, cfg: object) -> bool:
        # The actor and the targets step only every `policy_freq`-th update, so the loss steps differ from one
        # update to the next; a seed-stacked Adam cannot skip a step (a zero gradient still moves its moments).
        return False

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        act = self.actor(obs)
        if deterministic or self.cfg.expl_noise == 0:
            return act
        return (act + self.cfg.expl_noise * torch.randn_like(act)).clamp(-1.0, 1.0)

    def on_online_start(self, buffer: object) -> None:
        self.online = True

    def on_online_step(self, step: int) -> None:
        self.online_step = step

    def penalty_weights(self) -> tuple[float, float]:
        """(β_actor, β_critic) for the next update: the configured pair offline; online β_actor decays linearly
        to `min_decay_coef`·β_actor and β_critic is 0 unless `critic_bc_online` (CORL fine-tuning)."""
        cfg = self.cfg
        if not self.online:
            return cfg.actor_bc_coef, cfg.critic_bc_coef
        decay = max(cfg.min_decay_coef, 1.0 - self.online_step / cfg.bc_decay_steps)
        return cfg.actor_bc_coef * decay, cfg.critic_bc_coef if cfg.critic_bc_online else 0.0

    # --- losses ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def td_target(self, batch: Batch, noise: torch.Tensor, beta_critic: float) -> tuple[torch.Tensor, torch.Tensor]:
        """y = r + γ(1 − d)·(min_i Q̄_i(s', ã') − β_critic·‖ã' − a'‖²), ã' = clip(π̄(s') + clip(σε, ±c), ±1).
        Returns (y, the penalty per sample)."""
        smoothing = (self.cfg.policy_noise * noise).clamp(-self.cfg.noise_clip, self.cfg.noise_clip)
        next_act = (self.actor_target(batch.next_obs) + smoothing).clamp(-1.0, 1.0)
        penalty = bc_distance(next_act, batch.next_act)
        next_q = self.critic_target(batch.next_obs, next_act).min(0).values
        return td_target(batch.rew, batch.done, next_q - beta_critic * penalty, self.cfg.gamma), penalty

    def critic_loss(
        self, batch: Batch, noise: torch.Tensor, beta_critic: float, critic_weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Metrics]:
        """Σ_i E[w·(Q_i(s, a) − y)²]: each critic's mean squared error, summed over critics (CORL sums them)."""
        target, penalty = self.td_target(batch, noise, beta_critic)
        q = self.critic(batch.obs, batch.act)
        loss = critic_regression(q, target, critic_weight) * q.shape[0]
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "critic_bc": penalty.mean()}

    def actor_loss(self, batch: Batch, beta_actor: float) -> tuple[torch.Tensor, Metrics]:
        """E[β_actor·‖π(s) − a‖² − λ·min_i Q_i(s, π(s))], λ = 1/mean|Q| held fixed; the critics get no gradient."""
        act = self.actor(batch.obs)
        penalty = bc_distance(act, batch.act)
        q = call_detached(self.critic, batch.obs, act).min(0).values
        lam = 1.0 / q.abs().mean().detach() if self.cfg.normalize_q else 1.0
        loss = (beta_actor * penalty - lam * q).mean()
        return loss, {"actor_loss": loss, "actor_bc": penalty.mean()}

    # --- the update: critic step; every policy_freq-th update an actor step, then the targets --------------
    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """TD3's target-smoothing noise, drawn before the losses."""
        return {"noise": torch.randn(batch.act.shape, device=self.device)}

    def critic_step(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        return self.critic_loss(batch, context.inputs["noise"], self.penalty_weights()[1], context.critic_weight)

    def actor_step(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        beta_actor = self.penalty_weights()[0]
        loss, metrics = self.actor_loss(batch, beta_actor)
        metrics["beta_actor"] = torch.full((), beta_actor, device=self.device)
        return with_actor_penalty(loss, batch, self.actor, context.actor_penalty, metrics), metrics

    @property
    def actor_due(self) -> bool:
        """Whether this update steps the actor and the targets (CORL: updates 0, policy_freq, 2·policy_freq, …)."""
        return self.updates % self.cfg.policy_freq == 0

    def loss_steps(self) -> list[LossStep]:
        # CORL's order: the critic steps first; the actor's loss reads the critic just updated.
        steps = [LossStep(self.critic_step, (self.critic_optim,))]
        if self.actor_due:
            steps.append(LossStep(self.actor_step, (self.actor_optim,)))
        return steps

    def after_step(self) -> None:
        if self.actor_due:
            soft_update_(self.actor_target, self.actor, self.cfg.tau)
            soft_update_(self.critic_target, self.critic, self.cfg.tau)
        self.updates += 1

    def modules(self) -> dict:
        return {
            "critic": self.critic, "critic_target": self.critic_target, "actor": self.actor,
            "actor_target": self.actor_target, "critic_optim": self.critic_optim, "actor_optim": self.actor_optim,
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "updates": self.updates, "online": self.online,
                "online_step": self.online_step}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.updates, self.online = int(state["updates"]), bool(state["online"])
        self.online_step = int(state["online_step"])
