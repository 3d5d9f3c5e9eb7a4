"""suite.nets: the critic ensemble's LayerNorm placements and the context switch that reaches every algorithm."""

from __future__ import annotations

import torch

from suite.nets import CriticEnsemble, critic_layer_norm


def layer_names(critic: CriticEnsemble) -> list[str]:
    return [type(m).__name__ for m in critic.net]


def test_critic_layernorm_switch_puts_rlpd_placement_in_every_hidden_layer() -> None:
    """RLPD's critics (ikostrikov/rlpd networks/mlp.py, critic_layer_norm in configs/rlpd_config.py): each
    hidden layer is Dense, LayerNorm, ReLU; the output layer has none."""
    with critic_layer_norm(True):
        critic = CriticEnsemble(3, 2, n=2, hidden=(8, 8, 8))
    hidden = ["EnsembleLinear", "EnsembleLayerNorm", "ReLU"]
    assert layer_names(critic) == hidden * 3 + ["EnsembleLinear"]
    assert layer_names(CriticEnsemble(3, 2, hidden=(8, 8))) == ["EnsembleLinear", "ReLU"] * 2 + ["EnsembleLinear"]
    with critic_layer_norm(True):  # a critic that says otherwise keeps its own choice
        assert "EnsembleLayerNorm" not in layer_names(CriticEnsemble(3, 2, hidden=(8,), layer_norm=False))


def test_layernorm_normalises_each_member_and_leaves_the_linear_initialisation_alone() -> None:
    torch.manual_seed(0)
    plain = CriticEnsemble(3, 2, n=2, hidden=(16, 16))
    torch.manual_seed(0)
    with critic_layer_norm(True):
        normed = CriticEnsemble(3, 2, n=2, hidden=(16, 16))
    def linear_params(critic: CriticEnsemble) -> list[torch.Tensor]:
        return [p for m in critic.net if type(m).__name__ == "EnsembleLinear" for p in m.parameters()]

    assert len(linear_params(plain)) == 6
    assert all(torch.equal(a, b) for a, b in zip(linear_params(plain), linear_params(normed), strict=True))
    x = torch.randn(2, 5, 5)  # (members, batch, obs + act)
    after_norm = normed.net[:2](x)  # first linear layer, then its LayerNorm (gain 1, bias 0 at start)
    assert after_norm.shape == (2, 5, 16)
    torch.testing.assert_close(after_norm.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(after_norm.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
