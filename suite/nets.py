"""Networks shared by every algorithm: MLPs, batched critic ensembles, Gaussian policies, target updates."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.distributions import Normal


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    output_activation: nn.Module | None = None,
    dropout: float | None = None,
    layer_norm: bool = False,
) -> nn.Sequential:
    """ReLU MLP, the 2×256 default of IQL/CQL/AWAC (CORL uses the same for every locomotion config)."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        layers.append(nn.Linear(d_in, d_out))
        if layer_norm:
            layers.append(nn.LayerNorm(d_out))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(dims[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """`n` independent linear layers evaluated with one batched matmul (input and output shaped (n, B, ·))."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        # Same initialisation as n separate nn.Linear layers (kaiming-uniform, a=sqrt(5)).
        bound = 1.0 / math.sqrt(in_dim)
        for i in range(n):
            nn.init.kaiming_uniform_(self.weight[i].T, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1:
            # torch's CPU batched matmul is slow for a single output column; n addmm calls are ~2× faster
            # forward+backward there (measured by the benchmarks package, docs/performance.md).
            return torch.stack([torch.addmm(b, xi, w) for b, xi, w in
                                zip(self.bias.unbind(0), x.unbind(0), self.weight.unbind(0), strict=True)])
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the features of each of `n` members, each member with its own gain and bias (n, 1, d)."""

    def __init__(self, n: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


# `critic_layer_norm(True)` turns LayerNorm on in every CriticEnsemble built inside it that does not say otherwise
# (the training loop's `critic_layernorm` key reaches every algorithm this way, without a constructor argument).
_CRITIC_LAYER_NORM = contextvars.ContextVar("critic_layer_norm", default=False)


@contextlib.contextmanager
def critic_layer_norm(enabled: bool) -> Iterator[None]:
    token = _CRITIC_LAYER_NORM.set(enabled)
    try:
        yield
    finally:
        _CRITIC_LAYER_NORM.reset(token)


class CriticEnsemble(nn.Module):
    """`n` Q-functions Q_i(s, a) as one batched network; returns shape (n, B).

    Twin critics (n=2) are the clipped double-Q of TD3/SAC that IQL, CQL and AWAC all use; batching them into
    one matmul per layer halves the kernel launches of two separate MLPs. `layer_norm` puts a LayerNorm in every
    hidden layer: between the linear layer and its ReLU (RLPD, Ball et al. 2023), or after the ReLU with
    `norm_after_relu` (ReBRAC's critics, CORL `rebrac.py`: Dense, relu, LayerNorm). None: off unless built inside
    `critic_layer_norm(True)`. LayerNorm's parameters start at 1 and 0, so switching it on draws no random number
    and leaves the linear layers' initialisation unchanged.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, n: int = 2, hidden: Sequence[int] = (256, 256),
        layer_norm: bool | None = None, norm_after_relu: bool = False,
    ) -> None:
        super().__init__()
        self.n = n
        self.layer_norm = _CRITIC_LAYER_NORM.get() if layer_norm is None else layer_norm
        dims = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            hidden_layer = [EnsembleLinear(n, d_in, d_out), nn.ReLU()]
            if self.layer_norm:
                hidden_layer.insert(2 if norm_after_relu else 1, EnsembleLayerNorm(n, d_out))
            layers += hidden_layer
        layers.append(EnsembleLinear(n, dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1)
        if x.dim() == 2:  # same input for every member
            x = x.unsqueeze(0).expand(self.n, -1, -1)
        return self.net(x).squeeze(-1)


class ValueNet(nn.Module):
    """State value V(s) (IQL)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class GaussianPolicy(nn.Module):
    """Gaussian policy with tanh-bounded mean and state-independent log-std (IQL's and AWAC's actor).

    The mean is squashed into the action box and the distribution itself is not, as in the IQL reference code;
    log-std is clamped to [log_std_min, log_std_max].
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        dropout: float | None = None,
        tanh_mean: bool = True,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, nn.Tanh() if tanh_mean else None, dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: torch.Tensor) -> Normal:
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return _normal(self.net(obs), std)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).log_prob(act).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).clamp(-1.0, 1.0)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action clipped to the box, and the log-probability of the unclipped one. `noise`: the
        standard normals (B, |A|) to use, drawn by the caller (default: drawn here, as `Normal.rsample` does)."""
        return self.sample_from(self.distribution(obs), noise)

    @staticmethod
    def sample_from(dist: Normal, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` from a distribution already computed by `distribution(obs)` (AWAC reuses one actor pass)."""
        act = _draw(dist, noise)
        return act.clamp(-1.0, 1.0), dist.log_prob(act).sum(-1)

    @staticmethod
    def action_from(dist: Normal, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The action of `sample_from` without its log-probability, for callers that do not use it (AWAC)."""
        return _draw(dist, noise).clamp(-1.0, 1.0)


class TanhGaussianPolicy(nn.Module):
    """SAC's tanh-squashed Gaussian with state-dependent log-std (CQL's actor; Haarnoja et al. 2018)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, 2 * act_dim, hidden)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def _mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def sample(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action in (-1, 1) and its log-probability (with the tanh change of variables).
        `noise`: the standard normals (B, |A|) to use, drawn by the caller (default: drawn here)."""
        mean, std = self._mean_std(obs)
        u = mean + std * (torch.randn_like(mean) if noise is None else noise)
        act = torch.tanh(u)
        return act, _tanh_gaussian_log_prob(u, mean, std)

    def sample_n(
        self, obs: torch.Tensor, n: int, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` actions per state from one forward pass: (B, n, |A|) and log-probabilities (B, n). Draws the
        same noise, in the same order, as `sample` on the states repeated n times each; `noise` (B, n, |A|)
        as in `sample`."""
        mean, std = self._mean_std(obs)
        mean = mean.unsqueeze(1).expand(-1, n, -1)
        std = std.unsqueeze(1).expand(-1, n, -1)
        u = mean + std * (torch.randn_like(mean) if noise is None else noise)
        return torch.tanh(u), _tanh_gaussian_log_prob(u, mean, std)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, std = self._mean_std(obs)
        eps = 1e-6  # keep atanh finite for dataset actions at the box edge
        u = torch.atanh(act.clamp(-1.0 + eps, 1.0 - eps))
        return _tanh_gaussian_log_prob(u, mean, std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._mean_std(obs)[0])


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)): TD3's deterministic actor (Fujimoto et al. 2018), ReBRAC's with 3 hidden layers."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _draw(dist: Normal, noise: torch.Tensor | None) -> torch.Tensor:
    """A reparameterised draw; `noise`: the caller's standard normals (default: drawn here, as `rsample` does)."""
    return dist.rsample() if noise is None else dist.loc + noise * dist.scale  # rsample's own formula


def _normal(mean: torch.Tensor, std: torch.Tensor) -> Normal:
    # No argument validation: it costs ~30 small ops and a host sync per update (3% of IQL's ATen calls), and
    # the training loop already fails a run whose losses turn non-finite (suite/train.py, `_MetricWindow.reduce`).
    return Normal(mean, std, validate_args=False)


def _tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    log_prob = _normal(mean, std).log_prob(u).sum(-1)
    # log|d tanh(u)/du| = 2(log 2 − u − softplus(−2u)), the numerically stable form used by SAC implementations.
    correction = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return log_prob - correction.sum(-1)


@torch.no_grad()
def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← (1 − τ)θ' + τθ for all parameters in one fused foreach call."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def parameters_of(*modules: nn.Module) -> Iterable[nn.Parameter]:
    for m in modules:
        yield from m.parameters()


def call_detached(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """`module(*args)` with its parameters detached: gradients reach the inputs, never the parameters.

    Lets an actor loss differentiate through a critic (SAC, CQL) without leaving gradients on the critic, so
    actor and critic losses can share one backward pass and one optimiser step.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


@torch.no_grad()
def orthogonal_init_(module: nn.Module, hidden_gain: float = math.sqrt(2.0), last_gain: float = 1e-2) -> None:
    """Orthogonal weights and zero biases for every (ensemble) linear layer; the last layer gets `last_gain`.

    The initialisation of CORL's CQL Q-networks (`orthogonal_init=True`: gain √2 inside, 1e-2 at the output).
    """
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]
    for k, layer in enumerate(layers):
        gain = last_gain if k == len(layers) - 1 else hidden_gain
        if isinstance(layer, EnsembleLinear):
            for i in range(layer.weight.shape[0]):  # each member's (in, out) matrix, as nn.Linear's (out, in)
                nn.init.orthogonal_(layer.weight[i].T, gain=gain)
        else:
            nn.init.orthogonal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)
