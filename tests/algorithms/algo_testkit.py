"""Helpers shared by the algorithm tests: a seeded random batch, parameter snapshots, a critic with a known Q.

Importable as `algo_testkit` because pyproject's pytest `pythonpath` lists this folder.
"""

from __future__ import annotations

import torch
from torch import nn

from suite.algorithm import Batch

OBS, ACT = 5, 3


def make_batch(b: int = 16, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(b, OBS, generator=g), torch.rand(b, ACT, generator=g) * 1.8 - 0.9,
                 torch.randn(b, generator=g), torch.randn(b, OBS, generator=g),
                 (torch.rand(b, generator=g) < 0.2).float())


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class KnownQ(nn.Module):
    """Q_0(s, a) = s_0 + Σa, Q_1(s, a) = 2·Σa − s_1."""

    n = 2

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.stack([obs[:, 0] + act.sum(-1), 2 * act.sum(-1) - obs[:, 1]])
