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
