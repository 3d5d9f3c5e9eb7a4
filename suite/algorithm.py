"""The one interface every algorithm implements, and the registry that maps names to algorithms.

An algorithm turns batches into gradient updates and metrics. It never touches MLflow, files, envs or the CLI:
the training loop (`suite.train`) owns all of that.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from suite.algorithm_names import PACKAGE, module_of
from suite.algorithm_names import algorithm_names as algorithm_names  # re-exported: the registry's names
from suite.errors import UserError
from suite.optim import gradient_step


class Batch(NamedTuple):
    """A minibatch of transitions on the training device. `done` is 1.0 only for true terminations."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    # Set by prioritized samplers: importance-sampling weights (B,) and buffer indices (B,).
    weight: torch.Tensor | None = None
    index: torch.Tensor | None = None
    # Set for algorithms that list them in `Algorithm.batch_fields` (suite.returns): the Monte-Carlo return-to-go
    # (B,) and the data's next action (B, |A|) of each transition.
    rtg: torch.Tensor | None = None
    next_act: torch.Tensor | None = None


BATCH_FIELDS = ("rtg", "next_act")  # the optional per-transition fields an algorithm may ask the replay for


# actor_penalty(obs, actor) -> per-sample penalty (B,) added to the actor loss (BAQ's behaviour consistency).
ActorPenalty = Callable[[torch.Tensor, nn.Module], torch.Tensor]
# What an update's losses read that is drawn or decided before them, by name (`Algorithm.update_inputs`).
UpdateInputs = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]  # name -> 0-dim tensor (floats only once per log interval)


class LossContext(NamedTuple):
    """What every loss step of one update reads besides the networks and the batch: the update inputs and the
    two per-sample hooks BAQ composes over its base (both None: the paper's own update)."""

    inputs: UpdateInputs
    critic_weight: torch.Tensor | None = None  # (B,) weight of each sample's critic (TD) loss
    actor_penalty: ActorPenalty | None = None  # a per-sample term added to the actor loss


# loss(batch, context) -> (loss, metrics): one optimiser step's objective.
LossFn = Callable[[Batch, LossContext], tuple[torch.Tensor, Metrics]]


def drawn(inputs: UpdateInputs | None, key: str) -> torch.Tensor | None:
    """Update input `key`, or None when a loss is called without update inputs (alone, as in a test): the loss
    then draws the random numbers where it uses them."""
    return None if inputs is None else inputs.get(key)


class LossStep(NamedTuple):
    """One optimiser step of an update: minimise `loss`, then step each of `optims`. Together they hold exactly
    the parameters the step trains (several when a parameter group keeps its own optimiser, as BAQ's behaviour
    model beside its base's networks). Steps run in order, so a later loss sees the parameters an earlier step
    has just changed."""

    loss: LossFn
    optims: tuple[torch.optim.Optimizer, ...]


class Algorithm(ABC):
    """Base class. A subclass sets `Config` (a dataclass whose defaults cite their source) and `actor` (the
    policy: BAQ regularises it and may copy it as a behaviour model), and writes its update as:

    - `update_inputs(batch)`: what the losses read besides the networks and the batch, drawn or decided before
      them: every random number they need (from the global RNG, in the order the losses would draw them) and
      any scalar of the run's own state (BAQ's κ_t, λ_t). None by default.
    - `loss_steps()`: the update's optimiser steps in order, each a `LossStep(loss, optims)` whose `loss(batch,
      context)` reads the update inputs and the hooks from its `LossContext`.
    - `after_step()`: what follows the last step (target-network updates).

    `update` runs them for one run; `suite.vectorize` runs the same steps for N seeds as one batched network.
    """

    Config: ClassVar[type]
    name: ClassVar[str] = ""
    actor: nn.Module
    # Optional fields of `Batch` the losses read (among BATCH_FIELDS); the training loop stores them in the replay.
    batch_fields: ClassVar[tuple[str, ...]] = ()
    # Minibatch size of the algorithm's paper, used when the training config leaves `batch_size` unset.
    batch_size: ClassVar[int] = 256

    def __init__(self, cfg: Any, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.device = torch.device(device)

    # --- the update ------------------------------------------------------------------------------------------
    def update_inputs(self, batch: Batch) -> UpdateInputs:
        """The update inputs of `batch` (see the class docstring); none by default."""
        return {}

    @abstractmethod
    def loss_steps(self) -> list[LossStep]: ...

    def after_step(self) -> None:
        """What follows the optimiser steps (target-network updates)."""

    def update(
        self,
        batch: Batch,
        critic_weight: torch.Tensor | None = None,
        actor_penalty: ActorPenalty | None = None,
    ) -> Metrics:
        """One gradient update. `critic_weight` (B,) weights each sample's critic (TD) loss, `actor_penalty` adds a
        per-sample term to the actor loss; with both None the update is exactly the paper's. Returns detached
        0-dim tensors."""
        context = LossContext(self.update_inputs(batch), critic_weight, actor_penalty)
        metrics: Metrics = {}
        for step in self.loss_steps():
            total, step_metrics = step.loss(batch, context)
            gradient_step(step.optims, total)
            metrics.update(step_metrics)
        self.after_step()
        return {k: v.detach() for k, v in metrics.items()}

    @classmethod
    def is_vectorizable(cls, cfg: Any) -> bool:
        """Whether runs of `cfg` can train as one seed-batched network (suite.vectorize), read off the config (no
        instance is built): yes, unless a loss draws random numbers itself or the loss steps change from one
        update to the next."""
        return True

    # --- acting, data and phases -----------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions in [-1, 1] for a batch of (normalised) observations."""
        if deterministic:
            return self.actor.deterministic(obs)
        return self.actor.sample(obs)[0]

    def reward_transform(self, episode_returns: np.ndarray) -> tuple[float, float]:
        """(scale, bias) applied as r' = scale·r + bias to offline and online rewards. Default: none."""
        return 1.0, 0.0

    @classmethod
    def dataset_defaults(cls, dataset_id: str) -> dict[str, Any]:
        """Config values the reference tunes per dataset (e.g. ReBRAC's penalty weights), for `dataset_id`; the
        training config's own `algo_params` override them. None by default."""
        return {}

    @classmethod
    def samples_by_priority(cls, cfg: Any) -> bool:
        """Whether `cfg` installs its own sampler on the replay buffer online (BAQ's prioritized replay)."""
        return False

    def returns_to_go(self, rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
        """Monte-Carlo returns-to-go of (already reward-transformed) transitions, for algorithms with "rtg" in
        `batch_fields`: the discount and the treatment of time-limit cuts are the algorithm's."""
        raise NotImplementedError(f"{self.name} does not use returns-to-go")

    def on_online_start(self, buffer: Any) -> None:
        """Called once at the offline→online switch, with the replay buffer holding the offline data."""

    def on_online_step(self, step: int) -> None:
        """Called before the updates of each online env step (`step` counts online steps from 1)."""

    def resume_online(self, buffer: Any, state: dict[str, Any]) -> None:
        """Resume from a checkpoint written after the switch, with `buffer` holding the offline data: the
        switch's own state first (e.g. a sampler the hook installs), then the saved values over it."""
        self.on_online_start(buffer)
        self.load_state_dict(state)

    def modules(self) -> dict[str, nn.Module]:
        """Every network and optimiser worth saving, by name. Subclasses list theirs."""
        return {}

    def compile(self, **options: Any) -> None:
        """Opt-in `torch.compile` of every network, in place (`nn.Module.compile`), so that state_dict keys and
        checkpoints stay those of the eager modules. Measured on one CPU core it does not pay at CORL's sizes
        (docs/performance.md); it is there for GPUs."""
        for module in self.modules().values():
            if isinstance(module, nn.Module):
                module.compile(**options)

    def state_dict(self) -> dict[str, Any]:
        return {name: m.state_dict() for name, m in self.modules().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, m in self.modules().items():
            m.load_state_dict(state[name])


class SummedLossAlgorithm(Algorithm):
    """An update that is one summed loss over disjoint parameter groups and one step of `self.optim` (IQL,
    CQL). Subclasses implement `loss` and say there why one backward over the summed losses equals the paper's
    separate steps."""

    optim: torch.optim.Optimizer

    @abstractmethod
    def loss(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, Metrics]: ...

    def loss_steps(self) -> list[LossStep]:
        return [LossStep(self.loss, (self.optim,))]


def with_actor_penalty(
    loss: torch.Tensor, batch: Batch, actor: nn.Module, actor_penalty: ActorPenalty | None,
    metrics: Metrics,
) -> torch.Tensor:
    """`loss` plus the mean of `actor_penalty` (BAQ's behaviour-consistency term), recorded in `metrics`."""
    if actor_penalty is None:
        return loss
    penalty = actor_penalty(batch.obs, actor).mean()
    metrics["actor_penalty"] = penalty
    return loss + penalty


def check_common_params(cfg: Any) -> None:
    """Range checks of the hyperparameters the algorithms share, for whichever of them `cfg` has: γ in [0, 1],
    τ in (0, 1], every `*_lr` > 0, `hidden` a non-empty tuple of positive widths, `n_critics` >= 1. A bad
    value is a one-line UserError naming it and what is accepted. Call from a config's `__post_init__`."""
    values = dataclasses.asdict(cfg)
    if "gamma" in values and not 0.0 <= values["gamma"] <= 1.0:
        raise UserError(f"gamma must be in [0, 1], got {values['gamma']}")
    if "tau" in values and not 0.0 < values["tau"] <= 1.0:
        raise UserError(f"tau must be in (0, 1], got {values['tau']}")
    for key, value in values.items():
        if key.endswith("_lr") and not value > 0:
            raise UserError(f"{key} must be > 0, got {value}")
    hidden = values.get("hidden", (1,))
    if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise UserError(f"hidden must be a non-empty list of positive layer widths, got {list(hidden)}")
    if values.get("n_critics", 1) < 1:
        raise UserError(f"n_critics must be >= 1, got {values['n_critics']}")


_REGISTRY: dict[str, type[Algorithm]] = {}


def register(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """Class decorator: the algorithm `name`, which must be the name of its module in `algorithms/` (so that
    `algorithm_names` can list the algorithms without importing them)."""

    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        if cls.__module__ != module_of(name):
            raise ValueError(f"algorithm {name!r} must be registered in module {module_of(name)}, "
                             f"not {cls.__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    importlib.import_module(PACKAGE)


def get_algorithm(name: str) -> type[Algorithm]:
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown algorithm {name!r}; accepted: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The algorithm's config dataclass with `overrides` applied; unknown keys and bad types are UserErrors."""
    cls = get_algorithm(name)
    return apply_overrides(cls.Config(), overrides or {}, where=f"algorithm {name!r}")


def apply_overrides(cfg: Any, overrides: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise UserError(f"unknown parameter {key!r} for {where}; accepted: {', '.join(sorted(fields))}")
        changes[key] = _coerce(value, getattr(cfg, key), key, where)
    return dataclasses.replace(cfg, **changes)


def _coerce(value: Any, default: Any, key: str, where: str) -> Any:
    """Accept a value when it has the default's type (ints for floats, lists for tuples)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(default, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    elif isinstance(value, type(default)):
        return value
    raise UserError(
        f"parameter {key!r} of {where} must be {type(default).__name__}, got {value!r} ({type(value).__name__})"
    )


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
