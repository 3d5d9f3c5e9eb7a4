"""Optimiser construction shared by the algorithms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


def adam(groups: dict[str, tuple[Iterable[nn.Parameter], float]], **kwargs) -> torch.optim.Adam:
    """One Adam over named parameter groups, each with its own learning rate.

    Adam's update is per parameter, so one optimiser with groups is mathematically the same as one optimiser
    per network, and a single fused step is much cheaper than several (one kernel for all parameters).
    """
    params = [{"params": list(p), "lr": lr, "name": name} for name, (p, lr) in groups.items()]
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused Adam is unavailable on some builds/devices
        return torch.optim.Adam(params, foreach=True, **kwargs)


def gradient_step(optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer], loss: torch.Tensor) -> None:
    """One gradient step on `loss`: one backward, then a step of each optimiser (of disjoint parameters)."""
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
    for o in optimizers:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in optimizers:
        o.step()
