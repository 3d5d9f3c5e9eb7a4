"""Behavior-Adaptive Q-Learning (Zu, Zhou & Zhang, 2025, arXiv 2511.03695) on top of IQL or CQL.

A behaviour model π_β fitted to the offline data (or a frozen copy of the offline actor) supplies, online,
(i) per-transition critic weights w = clip(exp(−κ_t·d(s,a)), w_min, 1) that down-weight updates on
out-of-distribution pairs, (ii) a behaviour-consistency term λ_t·‖π(s) − μ_β(s)‖² in the actor loss, and
(iii) BC-divergence prioritized replay. κ_t and λ_t relax with a schedule σ(t) (suite.schedules).

The paper gives these ideas in words only; every formula and default here is ours and documented in
docs/baq.md. BAQ never copies its base: its update is the base's own loss step, `base.loss(batch, context)`,
reweighted and penalised through the context's `critic_weight` and `actor_penalty`.
With κ₀ = λ₀ = 0 and priority "none" it reproduces the base algorithm number for number.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from suite.algorithm import (
    ActorPenalty,
    Algorithm,
    Batch,
    LossContext,
    LossFn,
    LossStep,
    Metrics,
    UpdateInputs,
    check_common_params,
    get_algorithm,
    make_config,
    register,
)
from suite.errors import UserError
from suite.nets import CriticEnsemble, GaussianPolicy
from suite.optim import adam
from suite.priority import PrioritizedSampler, check_priority_params
from suite.schedules import SCHEDULES, Relaxation

BASES = ("iql", "cql")
BEHAVIOR_MODELS = ("bc", "offline_actor")
DIVERGENCES = ("mse", "nll")
PRIORITIES = ("bc_divergence", "none")
_TINY = 1e-12  # floor of a divergence normaliser (a dataset the behaviour model fits exactly)


@dataclass(frozen=True)
class BAQConfig:
    base: str = "iql"  # the offline algorithm BAQ wraps
    base_params: dict[str, Any] = field(default_factory=dict)  # overrides of the base's config
    # π_β: "bc" = Gaussian MLP fitted by maximum likelihood offline; "offline_actor" = frozen offline actor.
    behavior_model: str = "bc"
    # Adam 3e-4 for the BC fit: the behaviour-cloning learning rate of TD3+BC (Fujimoto & Gu 2021) and CORL's
    # `any_percent_bc.py`; 2×256 like every network of the suite (IQL paper, Table 5).
    behavior_lr: float = 3e-4
    behavior_hidden: tuple[int, ...] = (256, 256)
    divergence: str = "mse"  # d(s,a): "mse" = ‖a − μ_β(s)‖²/|A|, "nll" = log π_β(μ_β|s) − log π_β(a|s)
    # Our defaults (the paper publishes none): see docs/baq.md for the reasoning behind each.
    kappa0: float = 1.0  # critic-weight strength: an average offline pair (d = 1) gets exp(−1) ≈ 0.37
    lambda0: float = 0.1  # behaviour-consistency strength in the actor loss
    w_min: float = 0.1  # floor of the critic weight: no transition is ever ignored completely
    schedule: str = "linear"  # σ(t): constant | linear | exponential | cosine | step | adaptive
    schedule_T: int = 100_000  # T of linear / cosine / step: 10% of CORL's 1M online steps
    half_life: float = 25_000.0  # h of exponential: σ(T) = 1/16 at the same T
    # Adaptive EMA rate ρ: averages U_t over ~1/ρ = 200 updates, the time scale of the target nets (τ=0.005).
    ema_rate: float = 0.005
    # Offline, every pair is in-distribution by construction: weights and penalty are online-only by default,
    # so offline BAQ = base + fitting π_β.
    weight_offline: bool = False
    penalty_offline: bool = False
    priority: str = "bc_divergence"  # "bc_divergence" | "none" (uniform replay)
    priority_alpha: float = 0.6  # PER's α for proportional prioritisation (Schaul et al. 2016, Table 3)
    priority_eps: float = 0.01  # ε of (d + ε)^α on the normalised divergence (mean 1 offline): our choice
    priority_beta0: float = 0.4  # PER's β₀ (Schaul et al. 2016, Table 3), annealed linearly to 1 ...
    priority_anneal_steps: int = 1_000_000  # ... over the online phase (CORL's 1M online steps)
    divergence_chunk: int = 65_536  # transitions per forward pass when scoring the offline data

    def __post_init__(self) -> None:
        check_common_params(self)  # behavior_lr
        for key, accepted in (("base", BASES), ("behavior_model", BEHAVIOR_MODELS),
                              ("divergence", DIVERGENCES), ("schedule", SCHEDULES), ("priority", PRIORITIES)):
            if getattr(self, key) not in accepted:
                value = getattr(self, key)
                raise UserError(f"unknown {key} {value!r} for baq; accepted: {', '.join(accepted)}")
        for key in ("kappa0", "lambda0"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.w_min <= 1.0:
            raise UserError(f"w_min must be in [0, 1], got {self.w_min}")
        if self.divergence_chunk <= 0:
            raise UserError(f"divergence_chunk must be positive, got {self.divergence_chunk}")
        Relaxation(self.schedule, self.schedule_T, self.half_life, self.ema_rate)  # validates its keys
        if self.priority != "none":
            check_priority_params(self.priority_alpha, self.priority_eps, self.priority_beta0)
        make_config(self.base, self.base_params)  # unknown or ill-typed base parameters -> UserError


def critic_weights(divergence: torch.Tensor, kappa: float | torch.Tensor, w_min: float) -> torch.Tensor:
    """w = clip(exp(−κ·d), w_min, 1): 1 on the behaviour's actions, down to w_min far from them."""
    return torch.exp(-kappa * divergence).clamp(w_min, 1.0)


def mse_divergence(act: torch.Tensor, behavior_mean: torch.Tensor) -> torch.Tensor:
    """‖a − μ_β(s)‖² / |A| per sample."""
    return (act - behavior_mean).pow(2).mean(-1)


def nll_divergence(log_prob_act: torch.Tensor, log_prob_mode: torch.Tensor) -> torch.Tensor:
    """−log π_β(a|s) measured from the mode, log π_β(μ_β|s) − log π_β(a|s) ≥ 0: the raw NLL can be negative
    (a narrow density exceeds 1), which would break the normalisation by its dataset mean. For π_β Gaussian
    this is Σ_j (a_j − μ_j)²/(2σ_j²)."""
    return (log_prob_mode - log_prob_act).clamp_min(0.0)


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Evaluate a possibly training module (the live actor) without dropout, i.e. without using the RNG."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@register("baq")
class BAQ(Algorithm):
    Config = BAQConfig

    def __init__(
        self, cfg: BAQConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        # The base is built first and alone, so it draws exactly the random numbers it would without BAQ.
        self.base = get_algorithm(cfg.base)(make_config(cfg.base, cfg.base_params), obs_dim, act_dim, device)
        self.behavior: GaussianPolicy | None = None
        self.behavior_optim: torch.optim.Optimizer | None = None
        if cfg.behavior_model == "bc":
            # BAQ's own initialisation must not advance the global RNG that the base keeps using.
            with torch.random.fork_rng(devices=[]):
                self.behavior = GaussianPolicy(obs_dim, act_dim, cfg.behavior_hidden).to(self.device)
            self.behavior_optim = adam({"behavior": (self.behavior.parameters(), cfg.behavior_lr)})
        if cfg.schedule == "adaptive":
            critic = getattr(self.base, "critic", None)
            if not isinstance(critic, CriticEnsemble) or critic.n < 2:
                raise UserError(f"schedule 'adaptive' needs a critic ensemble of >= 2 in base {cfg.base!r}")
        self.relaxation = Relaxation(cfg.schedule, cfg.schedule_T, cfg.half_life, cfg.ema_rate, self.device)
        self.frozen: nn.Module | None = None  # π_β used online (frozen at the switch)
        self.online = False
        self.online_step = 0
        self.divergence_scale = 1.0  # mean raw divergence over the offline data, set at the switch
        self.sampler: PrioritizedSampler | None = None

    @classmethod
    def samples_by_priority(cls, cfg: BAQConfig) -> bool:
        return cfg.priority != "none"

    # --- what BAQ inherits from its base --------------------------------------------------------------------
    @property
    def actor(self) -> nn.Module:  # type: ignore[override]
        return self.base.actor

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.base.act(obs, deterministic)

    def reward_transform(self, episode_returns: np.ndarray) -> tuple[float, float]:
        return self.base.reward_transform(episode_returns)

    # --- behaviour model and divergences --------------------------------------------------------------------
    def behavior_policy(self) -> nn.Module:
        """π_β as it stands: frozen online; offline the model being fitted (or the live actor)."""
        if self.frozen is not None:
            return self.frozen
        return self.behavior if self.behavior is not None else self.base.actor

    @torch.no_grad()
    def behavior_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """μ_β(s), the behaviour model's deterministic action."""
        with _evaluating(self.behavior_policy()) as model:
            return model.deterministic(obs)

    def behavior_stats(
        self, obs: torch.Tensor, act: torch.Tensor, grad: bool = False
    ) -> dict[str, torch.Tensor]:
        """μ_β(s), the raw divergence d(s,a) and −log π_β(a|s) per sample. Only `nll` may carry a gradient
        (`grad=True`, the offline maximum-likelihood fit reuses it); the rest is always detached."""
        model = self.behavior_policy()
        with contextlib.nullcontext() if grad else torch.no_grad(), _evaluating(model):
            if isinstance(model, GaussianPolicy):  # one forward pass gives the mean and every log-density
                dist = model.distribution(obs)
                mean = dist.mean.clamp(-1.0, 1.0)  # = model.deterministic(obs)
                log_prob = dist.log_prob(act).sum(-1)
                mode_log_prob = dist.log_prob(mean.detach()).sum(-1)
            else:
                mean = model.deterministic(obs)
                log_prob = model.log_prob(obs, act)
                mode_log_prob = model.log_prob(obs, mean)
        mean = mean.detach()
        if self.cfg.divergence == "mse":
            divergence = mse_divergence(act, mean)
        else:
            divergence = nll_divergence(log_prob.detach(), mode_log_prob.detach())
        return {"mean": mean, "divergence": divergence, "nll": -log_prob}

    def normalized_divergence(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """d(s,a) / mean offline d: the score of prioritized replay and of the online critic weights."""
        return self.behavior_stats(obs, act)["divergence"] / self.divergence_scale

    def _freeze_behavior(self) -> None:
        if self.behavior is not None:
            self.frozen = self.behavior.eval().requires_grad_(False)
        else:
            self.frozen = copy.deepcopy(self.base.actor).eval().requires_grad_(False)

    # --- phases --------------------------------------------------------------------------------------------
    def on_online_start(self, buffer: Any) -> None:
        """Freeze π_β, normalise the divergence by its mean over the offline data (the whole buffer now) and,
        with prioritized replay, score every offline transition and install the sampler on the buffer."""
        self.base.on_online_start(buffer)
        self.online = True
        self._freeze_behavior()
        n, chunk = len(buffer), self.cfg.divergence_chunk
        bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        raw = torch.cat([
            self.behavior_stats(buffer.obs[lo:hi], buffer.act[lo:hi])["divergence"] for lo, hi in bounds
        ]) if n else torch.zeros(0, device=self.device)
        self.divergence_scale = max(float(raw.double().mean()), _TINY) if n else 1.0
        if self.cfg.priority == "bc_divergence":
            self.sampler = PrioritizedSampler(
                buffer.capacity, self.normalized_divergence, self.cfg.priority_alpha, self.cfg.priority_eps,
                self.cfg.priority_beta0, self.cfg.priority_anneal_steps, buffer.device)
            self.sampler.set_scores(torch.arange(n), raw / self.divergence_scale)
            self.sampler.set_step(self.online_step)
            buffer.sampler = self.sampler

    def on_online_step(self, step: int) -> None:
        self.base.on_online_step(step)
        self.online_step = step
        if self.sampler is not None:
            self.sampler.set_step(step)

    @property
    def weighting(self) -> bool:
        """Whether critic weights are passed to the base in the current phase (κ₀ > 0 and online, or offline
        with `weight_offline`). Fixed per phase, so the metric keys do not change while σ decays."""
        return self.cfg.kappa0 > 0 and (self.online or self.cfg.weight_offline)

    @property
    def penalizing(self) -> bool:
        """Whether the behaviour-consistency penalty is passed to the base in the current phase."""
        return self.cfg.lambda0 > 0 and (self.online or self.cfg.penalty_offline)

    def strengths(self, uncertainty: torch.Tensor | None = None) -> tuple[Any, Any, Any]:
        """(σ, κ_t, λ_t) for the next update; feeds U_t to the adaptive schedule when online."""
        if self.online and uncertainty is not None:
            self.relaxation.observe(uncertainty)
        sigma = self.relaxation.sigma(self.online_step) if self.online else 1.0  # σ(0) = 1 offline
        kappa = self.cfg.kappa0 * sigma if self.weighting else 0.0
        lam = self.cfg.lambda0 * sigma if self.penalizing else 0.0
        return sigma, kappa, lam

    @torch.no_grad()
    def critic_disagreement(self, batch: Batch) -> torch.Tensor:
        """U = mean over the batch of the std (population, over the ensemble) of Q_i(s, a)."""
        return self.base.critic(batch.obs, batch.act).std(0, correction=0).mean()

    # --- the update: the base's loss step, reweighted, with the behaviour model's fit added offline -------------
    @property
    def fitting(self) -> bool:
        """Offline with a `bc` behaviour model: each update also takes one maximum-likelihood step of π_β."""
        return not self.online and self.behavior is not None

    @classmethod
    def is_vectorizable(cls, cfg: BAQConfig) -> bool:
        return get_algorithm(cfg.base).is_vectorizable(make_config(cfg.base, cfg.base_params))

    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """The base's random draws, then this run's own state for the update: σ, κ_t and λ_t (the adaptive
        schedule first sees the critics' disagreement on this batch) and the divergence normaliser."""
        uncertainty = self.critic_disagreement(batch) if self.relaxation.adaptive else None
        sigma, kappa, lam = self.strengths(uncertainty)
        inputs = self.base.update_inputs(batch)  # the base draws exactly what its own update would
        inputs.update(baq_sigma=self._scalar(sigma), baq_kappa=self._scalar(kappa), baq_lambda=self._scalar(lam),
                      baq_scale=self._scalar(self.divergence_scale))
        if uncertainty is not None:
            inputs["baq_uncertainty"] = uncertainty
        return inputs

    def loss_steps(self) -> list[LossStep]:
        (base_step,) = self.base.loss_steps()  # the bases (IQL, CQL) are one summed loss (BAQConfig checks)
        optims = base_step.optims + ((self.behavior_optim,) if self.fitting else ())
        return [LossStep(functools.partial(self.loss, base_step.loss), optims)]

    def loss(self, base_loss: LossFn, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]:
        """The base's loss with critic weights w = clip(exp(−κ_t·d), w_min, 1) (times PER's importance weights)
        and the penalty λ_t·‖π(s) − μ_β(s)‖², plus −E log π_β(a|s) while π_β is fitted. π_β's parameters are
        disjoint from the base's and every cross term is detached (μ_β and d carry no gradient), so one backward
        over the sum gives each optimiser the gradient of its own loss."""
        cfg, fitting, inputs = self.cfg, self.fitting, context.inputs
        stats = self.behavior_stats(batch.obs, batch.act, grad=fitting)
        # Offline the normaliser is not known yet (π_β is still learning): the batch mean stands in.
        scale = inputs["baq_scale"] if self.online else stats["divergence"].mean().clamp_min(_TINY)
        divergence = stats["divergence"] / scale

        kappa, lam = inputs["baq_kappa"], inputs["baq_lambda"]
        divergence_weight = critic_weights(divergence, kappa, cfg.w_min) if self.weighting else None
        weight = divergence_weight
        for extra in (batch.weight, context.critic_weight):  # PER's importance weights, a caller's weights
            if extra is not None:
                weight = extra if weight is None else weight * extra
        penalty = context.actor_penalty
        if self.penalizing:
            penalty = self._consistency_penalty(lam, batch.obs, stats["mean"], context.actor_penalty)

        total, metrics = base_loss(batch, context._replace(critic_weight=weight, actor_penalty=penalty))
        bc_loss = stats["nll"].mean()
        if fitting:
            total = total + bc_loss
        metrics.update(
            bc_loss=bc_loss, divergence_raw=stats["divergence"].mean(), divergence_mean=divergence.mean(),
            critic_weight_mean=self._scalar(1.0) if divergence_weight is None else divergence_weight.mean(),
            sigma=inputs["baq_sigma"], kappa=kappa, **{"lambda": lam},
        )
        if "baq_uncertainty" in inputs:
            metrics["uncertainty"] = inputs["baq_uncertainty"]
        if cfg.priority != "none":
            metrics["is_weight_mean"] = batch.weight.mean() if batch.weight is not None else self._scalar(1.0)
        return total, metrics

    def after_step(self) -> None:
        self.base.after_step()

    def _consistency_penalty(
        self, lam: Any, batch_obs: torch.Tensor, behavior_mean: torch.Tensor, extra: ActorPenalty | None
    ) -> ActorPenalty:
        """λ_t·‖π(s) − μ_β(s)‖² per sample; μ_β(s) of the batch is reused (and never receives a gradient)."""

        def penalty(obs: torch.Tensor, actor: nn.Module) -> torch.Tensor:
            target = behavior_mean if obs is batch_obs else self.behavior_mean(obs)
            value = lam * (actor.deterministic(obs) - target).pow(2).sum(-1)
            return value if extra is None else value + extra(obs, actor)

        return penalty

    def _scalar(self, value: float | torch.Tensor) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.float()
        return torch.full((), float(value), device=self.device)  # a fill kernel: no host→device copy

    # --- checkpoints ---------------------------------------------------------------------------------------
    def modules(self) -> dict[str, Any]:
        own = {f"base.{k}": m for k, m in self.base.modules().items()}
        if self.behavior is not None:
            own.update(behavior=self.behavior, behavior_optim=self.behavior_optim)
        if self.frozen is not None and self.behavior is None:
            own["frozen_actor"] = self.frozen
        return own

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "base": self.base.state_dict(), "online": self.online, "online_step": self.online_step,
            "divergence_scale": self.divergence_scale, "relaxation": self.relaxation.state_dict(),
        }
        if self.behavior is not None:
            state.update(behavior=self.behavior.state_dict(), behavior_optim=self.behavior_optim.state_dict())
        if self.frozen is not None and self.behavior is None:
            state["frozen_actor"] = self.frozen.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        if self.behavior is not None:
            self.behavior.load_state_dict(state["behavior"])
            self.behavior_optim.load_state_dict(state["behavior_optim"])
        self.online, self.online_step = bool(state["online"]), int(state["online_step"])
        self.divergence_scale = float(state["divergence_scale"])
        self.relaxation.load_state_dict(state["relaxation"])
        if self.online:
            if self.frozen is None:
                self._freeze_behavior()  # (for offline_actor: a module to load the saved copy into)
            if "frozen_actor" in state:
                self.frozen.load_state_dict(state["frozen_actor"])
        elif self.frozen is not None:  # back to an offline state: π_β is being fitted again
            self.frozen = None
            if self.behavior is not None:
                self.behavior.train().requires_grad_(True)
        if self.sampler is not None:
            self.sampler.set_step(self.online_step)

