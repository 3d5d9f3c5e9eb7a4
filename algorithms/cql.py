"""Conservative Q-Learning, CQL(H) on SAC (Kumar, Zhou, Tucker & Levine, 2020, arXiv 2006.04779).

The critic's TD loss is augmented with α_cql·(E_s[log Σ_a exp Q(s, a)] − E_{(s,a)~D}[Q(s, a)]): Q is pushed
down on sampled (uniform and current-policy) actions and up on dataset actions, so the policy cannot exploit
over-estimated out-of-distribution actions. The log-sum-exp is importance sampled (CQL(H), App. F).
This follows CORL's `algorithms/offline/cql.py` (a port of young-geng/CQL) and `algorithms/finetune/cql.py`;
every default names its source.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from suite.algorithm import (
    Batch,
    LossContext,
    Metrics,
    SummedLossAlgorithm,
    UpdateInputs,
    check_common_params,
    drawn,
    register,
    with_actor_penalty,
)
from suite.errors import UserError
from suite.losses import critic_regression, importance_sampled_logsumexp, soft_td_target, temperature_loss
from suite.nets import CriticEnsemble, TanhGaussianPolicy, call_detached, orthogonal_init_, soft_update_
from suite.optim import adam


@dataclass(frozen=True)
class CQLConfig:
    # α_cql, the weight of the conservative term: CORL `configs/offline/cql/{halfcheetah,hopper}/
    # medium_v2.yaml` (`cql_alpha: 10.0`; `cql_min_q_weight: 10.0` in older files); authors' README: 5 or 10.
    cql_alpha: float = 10.0
    # α_cql after the offline→online switch: CORL `algorithms/finetune/cql.py` default
    # (`cql_alpha_online: 10.0`); every CORL fine-tuning config (CQL, Cal-QL) keeps it equal to cql_alpha.
    cql_alpha_online: float = 10.0
    # Lagrange variant: α' is tuned so that the conservative gap approaches `target_action_gap`. Off for
    # locomotion (CORL gym configs `cql_lagrange: false`; authors' README: gym with `--lagrange_thresh=-1`).
    cql_lagrange: bool = False
    # Only used with `cql_lagrange`: CORL's one tuned value (`cql_target_action_gap: 0.8`, finetune configs).
    target_action_gap: float = 0.8
    cql_n_actions: int = 10  # actions per state and proposal (CORL `cql_n_actions`; authors `num_random=10`)
    cql_temp: float = 1.0  # log-sum-exp temperature (CORL `cql_temp`; authors `temp=1.0`)
    cql_importance_sample: bool = True  # CQL(H) with importance weights (CORL; authors `min_q_version=3`)
    max_target_backup: bool = False  # max over cql_n_actions next actions in the backup (CORL gym configs)
    # Entropy term in the TD backup: off (CORL gym configs `backup_entropy: false`; authors' "deterministic
    # backup", CQL paper eq. 3).
    backup_entropy: bool = False
    # Behaviour cloning instead of the SAC policy loss for the first updates: CORL gym configs `bc_steps: 0`
    # (the authors' code uses `policy_eval_start=40000`).
    bc_steps: int = 0
    # Policy lr 1e-4: the authors' README (`--policy_lr=1e-4`) and CORL's fine-tuning configs
    # (`policy_lr: 0.0001`); CORL's offline-only gym configs use 3e-5. CORL also tunes log α with this lr.
    policy_lr: float = 1e-4
    critic_lr: float = 3e-4  # CORL `qf_lr: 0.0003`, authors `qf_lr=3E-4`; also the lr of log α' (CORL)
    gamma: float = 0.99  # CORL `discount: 0.99`
    tau: float = 0.005  # CORL `soft_target_update_rate: 0.005`
    # 3×256 for actor and critics: authors' `hidden_sizes=[M, M, M]` (M=256); CORL offline `cql.py`
    # (`q_n_hidden_layers: 3`, three-layer TanhGaussianPolicy).
    hidden: tuple[int, ...] = (256, 256, 256)
    n_critics: int = 2  # twin Q (CORL `critic_1`, `critic_2`; authors `num_qs=2`)
    auto_entropy: bool = True  # CORL `use_automatic_entropy_tuning: true`; α = 1 if off (`alpha_multiplier`)
    orthogonal_init: bool = True  # CORL `orthogonal_init: true` (Q-networks)
    # r' = scale·r + bias: none for locomotion (CORL halfcheetah configs `normalize_reward: false`; authors
    # `reward_scale=1`).
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def __post_init__(self) -> None:
        check_common_params(self)
        if self.cql_n_actions < 1:
            raise UserError(f"cql_n_actions must be a positive integer, got {self.cql_n_actions}")
        if self.cql_temp <= 0:
            raise UserError(f"cql_temp must be > 0, got {self.cql_temp}")


def _repeat_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, D) -> (B·k, D) with each row repeated k times consecutively (row b·k + j is x[b])."""
    return x.repeat_interleave(k, dim=0)


@register("cql")
class CQL(SummedLossAlgorithm):
    Config = CQLConfig

    def __init__(
        self, cfg: CQLConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.n_critics, cfg.hidden).to(self.device)
        if cfg.orthogonal_init:
            orthogonal_init_(self.critic)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, cfg.hidden).to(self.device)
        _init_actor_output(self.actor, act_dim)
        # log α (SAC temperature) starts at 0 and log α' (Lagrange multiplier) at 1, as CORL's `Scalar`s.
        self.temperatures = nn.ParameterDict({
            "log_alpha": nn.Parameter(torch.zeros((), device=self.device)),
            "log_alpha_prime": nn.Parameter(torch.ones((), device=self.device)),
        })
        self.target_entropy = -float(act_dim)  # −|A| (CORL `target_entropy = -np.prod(action_space.shape)`)
        self.cql_alpha = cfg.cql_alpha
        self.updates = 0  # completed updates, for `bc_steps`; saved in the state dict
        self.optim = adam({
            "critic": (self.critic.parameters(), cfg.critic_lr),
            "actor": (self.actor.parameters(), cfg.policy_lr),
            "log_alpha": ([self.temperatures["log_alpha"]], cfg.policy_lr),
            "log_alpha_prime": ([self.temperatures["log_alpha_prime"]], cfg.critic_lr),
        })

    def reward_transform(self, episode_returns: np.ndarray) -> tuple[float, float]:
        return self.cfg.reward_scale, self.cfg.reward_bias

    def on_online_start(self, buffer: object) -> None:
        # CORL fine-tuning: `trainer.cql_alpha = config.cql_alpha_online` at the switch.
        self.cql_alpha = self.cfg.cql_alpha_online

    # --- temperatures ---------------------------------------------------------------------------------------
    def alpha(self) -> torch.Tensor:
        """SAC entropy temperature α (1 when not tuned, CORL `alpha_multiplier=1`)."""
        if not self.cfg.auto_entropy:
            return torch.ones((), device=self.device)
        return self.temperatures["log_alpha"].exp()

    def alpha_prime(self) -> torch.Tensor:
        """Lagrange multiplier α' of the conservative term (1 without the Lagrange variant)."""
        if not self.cfg.cql_lagrange:
            return torch.ones((), device=self.device)
        return self.temperatures["log_alpha_prime"].exp().clamp(0.0, 1e6)  # CORL's clamp

    # --- losses: public so that BAQ (base="cql") can reuse them ---------------------------------------------
    def actor_loss(self, batch: Batch, inputs: UpdateInputs | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SAC policy loss E[α·log π(ã|s) − min_i Q_i(s, ã)], ã ~ π(·|s); during the first `bc_steps` updates
        the Q term is replaced by log π(a|s) of the dataset action (CORL). Gradients reach only the actor (α
        and the critics are held fixed). Returns (loss, log π(ã|s))."""
        act, log_pi = self.actor.sample(batch.obs, drawn(inputs, "actor"))
        alpha = self.alpha().detach()
        if self.updates < self.cfg.bc_steps:
            value = self.actor.log_prob(batch.obs, batch.act)
        else:
            value = call_detached(self.critic, batch.obs, act).min(0).values
        return (alpha * log_pi - value).mean(), log_pi

    def temperature_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """Automatic entropy tuning towards H̄ = −|A|; zero when `auto_entropy` is off."""
        if not self.cfg.auto_entropy:
            return torch.zeros((), device=self.device)
        return temperature_loss(self.temperatures["log_alpha"], log_pi, self.target_entropy)

    @torch.no_grad()
    def td_target(self, batch: Batch, inputs: UpdateInputs | None = None) -> torch.Tensor:
        """r + γ(1−d)·min_i Q̄_i(s', a'), a' ~ π(·|s') (the max over `cql_n_actions` samples with
        `max_target_backup`), minus α·log π(a'|s') only with `backup_entropy`."""
        n = self.cfg.cql_n_actions if self.cfg.max_target_backup else 1
        next_obs = _repeat_rows(batch.next_obs, n)
        next_act, next_log_pi = self.actor.sample(next_obs, drawn(inputs, "next"))
        next_q = self.critic_target(next_obs, next_act)  # (n_critics, B·n)
        if n > 1:  # per state, the sample with the largest min_i Q̄_i (CORL `cql_max_target_backup`)
            min_q = next_q.min(0).values.view(-1, n)
            best = min_q.argmax(-1, keepdim=True)
            next_q = min_q.gather(-1, best).squeeze(-1).unsqueeze(0)
            next_log_pi = next_log_pi.view(-1, n).gather(-1, best).squeeze(-1)
        log_pi = next_log_pi if self.cfg.backup_entropy else None
        return soft_td_target(batch.rew, batch.done, next_q, self.cfg.gamma, log_pi, self.alpha())

    @torch.no_grad()
    def sample_ood_actions(
        self, batch: Batch, inputs: UpdateInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The K = 3·cql_n_actions proposal actions per state of CQL(H) and their log densities:
        uniform on [-1, 1]^|A| (log density −|A|·log 2), ã ~ π(·|s) and ã ~ π(·|s'), all scored at s (as the
        authors' code and CORL do). Returns actions (B, K, |A|) and log densities (B, K)."""
        n, (b, a_dim) = self.cfg.cql_n_actions, batch.act.shape
        uniform = drawn(inputs, "uniform")
        if uniform is None:
            uniform = torch.empty(b, n, a_dim, device=self.device).uniform_(-1.0, 1.0)
        uniform_log_density = torch.full((b, n), -a_dim * math.log(2.0), device=self.device)
        # One actor pass over the 2B states, n draws each (the same numbers as sampling n repeated rows).
        policy_act, policy_log_pi = self.actor.sample_n(torch.cat([batch.obs, batch.next_obs]), n,
                                                        drawn(inputs, "proposals"))
        policy_act = policy_act.view(2, b, n, a_dim)
        policy_log_pi = policy_log_pi.view(2, b, n)
        actions = torch.cat([uniform, policy_act[0], policy_act[1]], dim=1)
        log_density = torch.cat([uniform_log_density, policy_log_pi[0], policy_log_pi[1]], dim=1)
        return actions, log_density

    def conservative_gap(
        self, q_data: torch.Tensor, q_ood: torch.Tensor, log_density: torch.Tensor
    ) -> torch.Tensor:
        """Per critic, E_s[T·log Σ_k exp(Q_i(s, a_k)/T)] − E_{(s,a)~D}[Q_i(s, a)] (CQL(H) regulariser).

        `q_data` (n, B) is Q at dataset actions, `q_ood` (n, B, K) at the proposals, `log_density` (B, K)
        their log densities (subtracted with importance sampling; without it, CORL's plain log-sum-exp over
        the proposals and the dataset action). Returns (n,).
        """
        if self.cfg.cql_importance_sample:
            soft_max = importance_sampled_logsumexp(q_ood, log_density, self.cfg.cql_temp)
        else:
            q_all = torch.cat([q_ood, q_data.unsqueeze(-1)], dim=-1)
            soft_max = importance_sampled_logsumexp(q_all, q_all.new_zeros(()), self.cfg.cql_temp)
        return (soft_max - q_data).mean(-1)

    def conservative_weight(self) -> torch.Tensor:
        """α_cql·α' applied to the mean gap in the critic loss (held fixed in that loss)."""
        return self.cql_alpha * self.alpha_prime().detach()

    def lagrange_loss(self, gap: torch.Tensor) -> torch.Tensor:
        """−α'·α_cql·(gap − target): descending it raises α' while the gap exceeds the target (CORL's
        `alpha_prime_loss`, averaged over critics). Zero without the Lagrange variant."""
        if not self.cfg.cql_lagrange:
            return torch.zeros((), device=self.device)
        return -self.alpha_prime() * self.cql_alpha * (gap.detach().mean() - self.cfg.target_action_gap)

    def critic_loss(
        self, batch: Batch, critic_weight: torch.Tensor | None = None, inputs: UpdateInputs | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD regression (weighted per sample by `critic_weight`) + α_cql·α'·(mean conservative gap).

        Returns (loss, parts) with parts `td_loss`, `gap` (n,), `q` (n, B) at dataset actions."""
        target = self.td_target(batch, inputs)
        actions, log_density = self.sample_ood_actions(batch, inputs)
        b, k = actions.shape[:2]
        # One critic pass over the dataset actions and all B·K proposals (each proposal scored at its s).
        obs = torch.cat([batch.obs, _repeat_rows(batch.obs, k)])
        q_all = self.critic(obs, torch.cat([batch.act, actions.reshape(b * k, -1)]))
        q_data, q_ood = q_all[:, :b], q_all[:, b:].reshape(-1, b, k)
        q_ood, bound_metrics = self.bound_proposals(q_ood, batch)
        td_loss = critic_regression(q_data, target, critic_weight)
        gap = self.conservative_gap(q_data, q_ood, log_density)
        loss = td_loss + self.conservative_weight() * gap.mean()
        return loss, {"td_loss": td_loss, "gap": gap, "q": q_data, "metrics": bound_metrics}

    def bound_proposals(
        self, q_ood: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, Metrics]:
        """Q at the K proposals (n, B, K) as the conservative term sees them, and metrics about that: unchanged
        in CQL; Cal-QL (algorithms/calql.py) lower-bounds the policy proposals here."""
        return q_ood, {}

    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """Every random number of one update, drawn from the global RNG in the order the losses would draw
        them (so `update` is unchanged): the actor's sample at s, the backup's samples at s', the uniform
        proposals, the policy proposals at [s; s']. Drawn up front so that a seed-vectorized update
        (suite.vectorize) gives each seed its own stream."""
        (b, a_dim), n, dev = batch.act.shape, self.cfg.cql_n_actions, self.device
        n_next = n if self.cfg.max_target_backup else 1
        return {
            "actor": torch.randn(b, a_dim, device=dev),
            "next": torch.randn(b * n_next, a_dim, device=dev),
            "uniform": torch.empty(b, n, a_dim, device=dev).uniform_(-1.0, 1.0),
            "proposals": torch.randn(2 * b, n, a_dim, device=dev),
        }

    def loss(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        """Actor, temperature, critic and Lagrange losses summed. CORL steps log α, then the actor, then α' and
        the critics, but every loss is built from the pre-update networks (its graphs exist before the first
        step) and the cross terms are held fixed (α in the actor loss, the critics in the actor loss, α' in the
        critic loss, the gap in the α' loss). The losses therefore touch disjoint parameters and one backward
        + one fused step is exact."""
        actor_loss, log_pi = self.actor_loss(batch, context.inputs)
        alpha_loss = self.temperature_loss(log_pi)
        critic_loss, parts = self.critic_loss(batch, context.critic_weight, context.inputs)
        lagrange_loss = self.lagrange_loss(parts["gap"])
        metrics = {
            "critic_loss": critic_loss, "td_loss": parts["td_loss"], "cql_gap": parts["gap"].mean(),
            "actor_loss": actor_loss, "alpha_loss": alpha_loss, "alpha": self.alpha(),
            "log_pi": log_pi.mean(), "q_mean": parts["q"].mean(),
        }
        if self.cfg.cql_lagrange:
            metrics.update(alpha_prime=self.alpha_prime(), lagrange_loss=lagrange_loss)
        metrics.update(parts["metrics"])
        total = critic_loss + actor_loss + alpha_loss + lagrange_loss
        return with_actor_penalty(total, batch, self.actor, context.actor_penalty, metrics), metrics

    def after_step(self) -> None:
        # Targets follow every update (CORL `target_update_period: 1`).
        soft_update_(self.critic_target, self.critic, self.cfg.tau)
        self.updates += 1

    def modules(self) -> dict:
        return {
            "critic": self.critic, "critic_target": self.critic_target, "actor": self.actor,
            "temperatures": self.temperatures, "optim": self.optim,
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "updates": self.updates, "cql_alpha": self.cql_alpha}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.updates, self.cql_alpha = int(state["updates"]), float(state["cql_alpha"])


@torch.no_grad()
def _init_actor_output(actor: TanhGaussianPolicy, act_dim: int) -> None:
    """CORL's CQL actor: output layer Xavier-uniform with gain 1e-2 and zero bias, so the initial policy is
    near tanh(N(0, σ)); CORL adds a learned log-std offset starting at −1: here the log-std half of the
    bias."""
    last = actor.trunk[-1]
    nn.init.xavier_uniform_(last.weight, gain=1e-2)
    nn.init.zeros_(last.bias)
    last.bias[act_dim:] = -1.0
