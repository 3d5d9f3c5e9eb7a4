"""suite.optim: grouped Adam and the one-backward gradient step over several optimisers."""

from __future__ import annotations

import torch
from torch import nn

from suite.optim import adam, gradient_step


def _nets() -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    return nn.Linear(3, 2), nn.Linear(3, 1)


def test_one_backward_over_two_optimisers_equals_two_separate_steps() -> None:
    x = torch.randn(8, 3)
    a, b = _nets()
    opt_a, opt_b = adam({"a": (a.parameters(), 1e-2)}), adam({"b": (b.parameters(), 3e-2)})
    a2, b2 = _nets()
    opt_a2, opt_b2 = adam({"a": (a2.parameters(), 1e-2)}), adam({"b": (b2.parameters(), 3e-2)})
    for _ in range(3):
        gradient_step((opt_a, opt_b), a(x).pow(2).mean() + b(x).abs().mean())
        gradient_step(opt_a2, a2(x).pow(2).mean())
        gradient_step(opt_b2, b2(x).abs().mean())
    for p, q in zip([*a.parameters(), *b.parameters()], [*a2.parameters(), *b2.parameters()], strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a.weight, _nets()[0].weight)  # the steps moved the parameters


def test_grouped_adam_keeps_each_groups_learning_rate() -> None:
    a, b = _nets()
    opt = adam({"a": (a.parameters(), 1e-3), "b": (b.parameters(), 5e-4)})
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("a", 1e-3), ("b", 5e-4)]
    assert sum(len(g["params"]) for g in opt.param_groups) == 4
