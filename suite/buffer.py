"""Preallocated replay buffer: the offline dataset is loaded in once, online transitions are appended.

Sampling is tensor indexing with a seeded `torch.Generator` (no Python per sample). A pluggable sampler
(e.g. BAQ's prioritized sampler) can replace uniform sampling.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from suite.algorithm import Batch
from suite.errors import UserError


class Sampler(Protocol):
    """Chooses indices; `on_add` sees every transition written so priorities can be set on insertion."""

    def sample(self, batch_size: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (indices (B,), importance weights (B,))."""
        ...

    def on_add(self, index: torch.Tensor, buffer: ReplayBuffer) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ReplayBuffer:
    """Ring buffer of transitions in preallocated tensors. `done` holds true terminations only: time-limit
    truncations are not terminals, so their next state is bootstrapped."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> None:
        if capacity <= 0:
            raise UserError(f"buffer capacity must be positive, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.act = torch.zeros(capacity, act_dim, device=self.device)
        self.rew = torch.zeros(capacity, device=self.device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.done = torch.zeros(capacity, device=self.device)
        self.size = 0
        self.ptr = 0
        self.sampler: Sampler | None = None

    def __len__(self) -> int:
        return self.size

    def add_batch(
        self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, done: np.ndarray
    ) -> None:
        n = len(obs)
        if n > self.capacity:
            raise UserError(f"{n} transitions do not fit in a buffer of capacity {self.capacity}")
        idx = (torch.arange(n) + self.ptr) % self.capacity
        for dst, src in (
            (self.obs, obs), (self.act, act), (self.rew, rew), (self.next_obs, next_obs), (self.done, done)
        ):
            dst[idx] = torch.as_tensor(np.asarray(src, dtype=np.float32), device=self.device)
        self._advance(idx, n)

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, done: bool) -> None:
        i = self.ptr
        self.obs[i] = torch.as_tensor(obs, dtype=torch.float32)
        self.act[i] = torch.as_tensor(act, dtype=torch.float32)
        self.rew[i] = float(rew)
        self.next_obs[i] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.done[i] = float(done)
        self._advance(torch.tensor([i]), 1)

    def _advance(self, idx: torch.Tensor, n: int) -> None:
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        if self.sampler is not None:
            self.sampler.on_add(idx, self)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if self.sampler is None:
            idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
            return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.done[idx])
        idx, weight = self.sampler.sample(batch_size, self.size, generator)
        return Batch(
            self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.done[idx], weight, idx
        )

    def state_dict(self, start: int = 0) -> dict[str, Any]:
        """Contents from index `start` on (the loop saves only the online part: the offline part is reloaded)."""
        end = self.size
        state = {
            "size": self.size, "ptr": self.ptr, "start": start,
            **{k: getattr(self, k)[start:end].clone() for k in ("obs", "act", "rew", "next_obs", "done")},
        }
        if self.sampler is not None:
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        start, end = state["start"], state["size"]
        for k in ("obs", "act", "rew", "next_obs", "done"):
            getattr(self, k)[start:end] = state[k]
        self.size, self.ptr = state["size"], state["ptr"]
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
