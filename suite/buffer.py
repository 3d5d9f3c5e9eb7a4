"""Preallocated replay buffer: the offline dataset is loaded in once, online transitions are appended.

Sampling is tensor indexing with a seeded `torch.Generator` (no Python per sample). A pluggable sampler
(e.g. BAQ's prioritized sampler) can replace uniform sampling; `sample_split` draws a fixed share of each batch
from the offline part and the rest from the online part (suite.replay's mixing ratio).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from suite.algorithm import BATCH_FIELDS, Batch
from suite.errors import UserError


class Sampler(Protocol):
    """Chooses indices; `on_add` sees every transition written so priorities can be set on insertion."""

    def sample(self, batch_size: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (indices (B,), importance weights (B,))."""
        ...

    def on_add(self, index: torch.Tensor, buffer: ReplayBuffer) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# Fill of an optional field for an online transition before its value is known: no bound (a return-to-go of
# −∞ is never binding) and no next action (NaN: the penalty that reads it treats it as absent).
_UNKNOWN = {"rtg": float("-inf"), "next_act": float("nan")}
CORE_FIELDS = ("obs", "act", "rew", "next_obs", "done")


class ReplayBuffer:
    """Ring buffer of transitions in preallocated tensors. `done` holds true terminations only: time-limit
    truncations are not terminals, so their next state is bootstrapped. `extras` adds optional per-transition
    fields of `Batch` ("rtg", "next_act") that an algorithm reads."""

    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu",
        extras: tuple[str, ...] = (),
    ) -> None:
        if capacity <= 0:
            raise UserError(f"buffer capacity must be positive, got {capacity}")
        unknown = sorted(set(extras) - set(BATCH_FIELDS))
        if unknown:
            raise ValueError(f"unknown batch fields {unknown}; accepted: {', '.join(BATCH_FIELDS)}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.act = torch.zeros(capacity, act_dim, device=self.device)
        self.rew = torch.zeros(capacity, device=self.device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.done = torch.zeros(capacity, device=self.device)
        self.extras = tuple(extras)
        if "rtg" in self.extras:
            self.rtg = torch.zeros(capacity, device=self.device)
        if "next_act" in self.extras:
            self.next_act = torch.zeros(capacity, act_dim, device=self.device)
        self.size = 0
        self.ptr = 0
        self.sampler: Sampler | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return CORE_FIELDS + self.extras

    def __len__(self) -> int:
        return self.size

    def add_batch(
        self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, done: np.ndarray,
        **extras: np.ndarray,
    ) -> None:
        n = len(obs)
        if n > self.capacity:
            raise UserError(f"{n} transitions do not fit in a buffer of capacity {self.capacity}")
        if set(extras) != set(self.extras):
            raise ValueError(f"add_batch needs exactly the extra fields {list(self.extras)}, got {sorted(extras)}")
        idx = (torch.arange(n) + self.ptr) % self.capacity
        values = dict(obs=obs, act=act, rew=rew, next_obs=next_obs, done=done, **extras)
        for name in self.fields:
            getattr(self, name)[idx] = torch.as_tensor(np.asarray(values[name], dtype=np.float32),
                                                       device=self.device)
        self._advance(idx, n)

    def add(
        self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, done: bool, **extras: Any
    ) -> None:
        """One transition; an extra field not given is stored as not known yet (see `_UNKNOWN`)."""
        i = self.ptr
        self.obs[i] = torch.as_tensor(obs, dtype=torch.float32)
        self.act[i] = torch.as_tensor(act, dtype=torch.float32)
        self.rew[i] = float(rew)
        self.next_obs[i] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.done[i] = float(done)
        for name in self.extras:
            value = extras.get(name)
            getattr(self, name)[i] = _UNKNOWN[name] if value is None else torch.as_tensor(value, dtype=torch.float32)
        self._advance(torch.tensor([i]), 1)

    def last_indices(self, n: int) -> torch.Tensor:
        """Buffer indices of the `n` transitions written last, oldest first."""
        return (torch.arange(n) + self.ptr - n) % self.capacity

    def _advance(self, idx: torch.Tensor, n: int) -> None:
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        if self.sampler is not None:
            self.sampler.on_add(idx, self)

    def batch(self, idx: torch.Tensor, weight: torch.Tensor | None = None, with_index: bool = False) -> Batch:
        """The transitions at `idx` as a Batch (with this buffer's extra fields)."""
        extras = {name: getattr(self, name)[idx] for name in self.extras}
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.done[idx], weight,
                     idx if with_index else None, **extras)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if self.sampler is None:
            idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
            return self.batch(idx)
        idx, weight = self.sampler.sample(batch_size, self.size, generator)
        return self.batch(idx, weight, with_index=True)

    def sample_split(
        self, batch_size: int, generator: torch.Generator, split: int, first_fraction: float
    ) -> Batch:
        """⌊B·f⌋ transitions drawn uniformly from [0, split), the rest from [split, size), in that order
        (offline data first, as CORL's Cal-QL concatenates them). ⌊·⌋ as CORL's `int(B·f)`, guarded against
        float products such as 0.29·100 = 28.999…"""
        n_first = min(batch_size, int(batch_size * first_fraction + 1e-9))
        n_second = batch_size - n_first
        if n_first and split <= 0:
            raise RuntimeError("cannot sample offline transitions: the buffer holds none")
        if n_second and self.size <= split:
            raise RuntimeError("cannot sample online transitions: the buffer holds none yet")
        parts = []
        if n_first:
            parts.append(torch.randint(0, split, (n_first,), generator=generator, device=self.device))
        if n_second:
            parts.append(split + torch.randint(0, self.size - split, (n_second,), generator=generator,
                                               device=self.device))
        return self.batch(torch.cat(parts))

    def state_dict(self, start: int = 0) -> dict[str, Any]:
        """Contents from index `start` on (the loop saves only the online part: the offline part is reloaded)."""
        end = self.size
        state = {
            "size": self.size, "ptr": self.ptr, "start": start,
            **{k: getattr(self, k)[start:end].clone() for k in self.fields},
        }
        if self.sampler is not None:
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        start, end = state["start"], state["size"]
        for k in self.fields:
            getattr(self, k)[start:end] = state[k]
        self.size, self.ptr = state["size"], state["ptr"]
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
