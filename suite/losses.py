"""Losses and targets shared by the algorithms, so no algorithm copies another's."""

from __future__ import annotations

import torch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2 |τ − 1(u < 0)|·u² of IQL (Kostrikov et al. 2021, eq. 5), averaged."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def advantage_weights(adv: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """exp(β·A) clipped from above: the advantage-weighted regression weights of IQL (eq. 7) and AWAC."""
    return torch.exp(temperature * adv).clamp(max=max_weight)


def td_target(rew: torch.Tensor, done: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ(1 − d)·V(s'); `done` is a true termination only (time-outs bootstrap)."""
    return rew + gamma * (1.0 - done) * next_value


def critic_regression(
    q: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over critics and samples of w·(Q_i(s,a) − y)²; `q` is (n_critics, B), `target` (B,)."""
    sq = (q - target.unsqueeze(0)).pow(2)
    if sample_weight is not None:
        sq = sq * sample_weight.unsqueeze(0)
    return sq.mean()


def weighted_mean(values: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    return values.mean() if sample_weight is None else (values * sample_weight).mean()


def soft_td_target(
    rew: torch.Tensor,
    done: torch.Tensor,
    next_q: torch.Tensor,
    gamma: float,
    next_log_prob: torch.Tensor | None = None,
    alpha: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """SAC-style backup y = r + γ(1 − d)·(min_i Q̄_i(s', a') − α·log π(a'|s')) with a' ~ π(·|s').

    `next_q` is (n_critics, B) from the target critics. Without `next_log_prob` the entropy term is left out,
    as in CQL's default (`backup_entropy=False`) and AWAC.
    """
    next_value = next_q.min(0).values
    if next_log_prob is not None:
        next_value = next_value - alpha * next_log_prob
    return td_target(rew, done, next_value, gamma)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's automatic entropy tuning (Haarnoja et al. 2018, arXiv 1812.05905, eq. 18): −log α·(log π + H̄).

    Only `log_alpha` gets a gradient; α rises when the policy's entropy −log π falls below the target H̄.
    """
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def importance_sampled_logsumexp(
    q: torch.Tensor, log_density: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """CQL(H)'s soft maximum log ∫ exp Q(s, a) da from K sampled actions (Kumar et al. 2020, App. F):
    T·log Σ_k exp((Q(s, a_k) − log μ(a_k|s)) / T) over the last axis; `log_density` broadcasts against `q`.

    Like the authors' code and CORL, the constant −log K of a proper Monte-Carlo mean is omitted.
    """
    return temperature * torch.logsumexp((q - log_density) / temperature, dim=-1)
