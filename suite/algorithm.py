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
Inputs = dict[str, torch.Tensor]
# loss(batch, critic_weight, actor_penalty, inputs) -> (loss, metrics): one optimiser step's objective.
LossFn = Callable[[Batch, "torch.Tensor | None", "ActorPenalty | None", "Inputs | None"],
                  tuple[torch.Tensor, dict[str, torch.Tensor]]]


def noise_for(inputs: Inputs | None, key: str) -> torch.Tensor | None:
    """The pre-drawn random numbers `key` of the update inputs, or None (the caller then draws them where
    used)."""
    return None if inputs is None else inputs.get(key)


class LossStep(NamedTuple):
    """One optimiser step of an update: minimise `loss`, then step each of `optims`. Together they hold exactly
    the parameters the step trains (several when a parameter group keeps its own optimiser, as BAQ's behaviour
    model beside its base's networks). Steps run in order, so a later loss sees the parameters an earlier step
    has just changed."""

    loss: LossFn
    optims: tuple[torch.optim.Optimizer, ...]


class Algorithm(ABC):
    """Base class. Subclasses set `Config` (a dataclass whose defaults cite their source) and implement:

    - `update(batch, critic_weight=None, actor_penalty=None)`: one gradient step. `critic_weight` (B,) weights
      each sample's critic (TD) loss, `actor_penalty` adds a per-sample term to the actor loss; with both
      None the update is exactly the paper's. Returns detached 0-dim tensors (floats on demand).
    - `act(obs, deterministic)`: actions in [-1, 1] for a batch of (normalised) observations.
    - `actor`: the policy module (BAQ regularises it and may copy it as a behaviour model).
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

    @abstractmethod
    def update(
        self,
        batch: Batch,
        critic_weight: torch.Tensor | None = None,
        actor_penalty: ActorPenalty | None = None,
    ) -> dict[str, torch.Tensor]: ...

    # --- optional: seed vectorisation (suite.vectorize) ----------------------------------------------------
    # An algorithm whose update is "update_inputs, then one or more loss steps in a fixed order, then
    # `after_step()`" (`LossStepsAlgorithm`) can train N seeds as one batched network: the random numbers and
    # the run's own state come from `update_inputs` (each seed's own RNG and object), never from inside a loss.
    @classmethod
    def is_vectorizable(cls, cfg: Any) -> bool:
        """Whether runs of this config can train as one seed-batched network (read off the config: no
        instance is built)."""
        return False

    def update_inputs(self, batch: Batch) -> Inputs:
        """What the update's losses read that is drawn or decided before them: every random number they need
        (drawn from the global RNG in the order the losses would draw them) and any scalar of the run's own
        state (BAQ's κ_t, λ_t). None by default."""
        return {}

    def loss_steps(self) -> list[LossStep]:
        """The update as optimiser steps, in order (vectorizable algorithms only)."""
        raise NotImplementedError(f"{self.name} does not describe its update as loss steps")

    def after_step(self) -> None:
        """What follows the optimiser step (target-network updates)."""

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
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


class LossStepsAlgorithm(Algorithm):
    """An algorithm whose update is `update_inputs`, then its `loss_steps()` in order (one optimiser step each),
    then `after_step()`: the shared `update`, and seed vectorisation (suite.vectorize) for free. Subclasses
    implement `loss_steps` and, as needed, `update_inputs` and `after_step`."""

    def update(
        self,
        batch: Batch,
        critic_weight: torch.Tensor | None = None,
        actor_penalty: ActorPenalty | None = None,
    ) -> dict[str, torch.Tensor]:
        inputs = self.update_inputs(batch)
        metrics: dict[str, torch.Tensor] = {}
        for step in self.loss_steps():
            total, step_metrics = step.loss(batch, critic_weight, actor_penalty, inputs)
            gradient_step(step.optims, total)
            metrics.update(step_metrics)
        self.after_step()
        return {k: v.detach() for k, v in metrics.items()}

    @classmethod
    def is_vectorizable(cls, cfg: Any) -> bool:
        return True


class SummedLossAlgorithm(LossStepsAlgorithm):
    """An update that is one summed loss over disjoint parameter groups and one step of `self.optim` (IQL,
    CQL). Subclasses implement `loss` and say there why one backward over the summed losses equals the paper's
    separate steps."""

    optim: torch.optim.Optimizer

    @abstractmethod
    def loss(
        self,
        batch: Batch,
        critic_weight: torch.Tensor | None = None,
        actor_penalty: ActorPenalty | None = None,
        inputs: Inputs | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def loss_steps(self) -> list[LossStep]:
        return [LossStep(self.loss, (self.optim,))]


def with_actor_penalty(
    loss: torch.Tensor, batch: Batch, actor: nn.Module, actor_penalty: ActorPenalty | None,
    metrics: dict[str, torch.Tensor],
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
