"""Helpers shared by the algorithm tests: tiny seeded algorithms, a seeded random batch, parameter snapshots, a
critic with a known Q.

Importable as `algo_testkit` because pyproject's pytest `pythonpath` lists this folder.
"""

from __future__ import annotations

import torch
from torch import nn

from suite.algorithm import Algorithm, Batch, get_algorithm, make_config

OBS, ACT = 5, 3
# Tiny networks (and few CQL proposals) keep every test fast.
TINY: dict[str, dict] = {
    "iql": {"hidden": (32, 32)},
    "cql": {"hidden": (32, 32), "cql_n_actions": 4},
    "awac": {"hidden": (32, 32)},
    "baq": {"base": "iql", "base_params": {"hidden": (32, 32)}, "behavior_hidden": (32, 32)},
    "calql": {"hidden": (32, 32), "cql_n_actions": 4},
    "rebrac": {"hidden": (32, 32)},
}


def make_algo(name: str, seed: int = 0, **overrides) -> Algorithm:
    """A tiny `name` on OBS × ACT, its initialisation drawn after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    return get_algorithm(name)(make_config(name, {**TINY[name], **overrides}), OBS, ACT)


def make_batch(b: int = 16, seed: int = 1, fields: tuple[str, ...] = ()) -> Batch:
    """A seeded random batch; `fields`: optional fields to fill too (an algorithm's `batch_fields`)."""
    g = torch.Generator().manual_seed(seed)
    batch = Batch(torch.randn(b, OBS, generator=g), torch.rand(b, ACT, generator=g) * 1.8 - 0.9,
                  torch.randn(b, generator=g), torch.randn(b, OBS, generator=g),
                  (torch.rand(b, generator=g) < 0.2).float())
    extras = {"rtg": torch.randn(b, generator=g), "next_act": torch.rand(b, ACT, generator=g) * 1.8 - 0.9}
    return batch._replace(**{k: extras[k] for k in fields})


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def networks(algo: Algorithm) -> dict[str, list[torch.Tensor]]:
    """`params` of every network the algorithm saves (its `modules()` that are nn.Modules), by name."""
    return {name: params(m) for name, m in algo.modules().items() if isinstance(m, nn.Module)}


def same_networks(a: dict[str, list[torch.Tensor]], b: dict[str, list[torch.Tensor]]) -> bool:
    return a.keys() == b.keys() and all(same(a[name], b[name]) for name in a)


class KnownQ(nn.Module):
    """Q_0(s, a) = s_0 + Σa, Q_1(s, a) = 2·Σa − s_1."""

    n = 2

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.stack([obs[:, 0] + act.sum(-1), 2 * act.sum(-1) - obs[:, 1]])
