"""Atomic checkpoint files and the exact state of a MuJoCo env mid-episode."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from suite.files import atomic_write_bytes, atomic_write_text  # noqa: F401 (callers import them from here)


def _compact(obj: Any) -> Any:
    """`obj` with every tensor that is a view into a larger storage copied out: torch.save writes a view's whole
    storage, and a seed-vectorized run's parameters are slices of all N seeds' (suite.vectorize)."""
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.untyped_storage().nbytes() > obj.numel() * obj.element_size() else obj
    if isinstance(obj, dict):
        return type(obj)((k, _compact(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return type(obj)(_compact(v) for v in obj)
    return obj


def save(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(_compact(state), buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path) -> dict[str, Any]:
    # weights_only=False: our own files hold numpy RNG states and pickled MuJoCo data, not just tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


def env_state(env: gym.Env) -> dict[str, Any]:
    """Everything that decides the env's future: the full MjData (warm-start fields included, so the resumed
    simulation is bit-identical), the time-limit counter and the reset RNG."""
    base = env.unwrapped
    state: dict[str, Any] = {"np_random": base.np_random.bit_generator.state, "elapsed": _elapsed(env)}
    if hasattr(base, "data"):
        state["mjdata"] = pickle.dumps(base.data)
    return state


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    import mujoco

    base = env.unwrapped
    base.np_random.bit_generator.state = state["np_random"]
    if "mjdata" in state:
        mujoco.mj_copyData(base.data, base.model, pickle.loads(state["mjdata"]))
    w = env
    while isinstance(w, gym.Wrapper):
        if hasattr(w, "_elapsed_steps"):
            w._elapsed_steps = state["elapsed"]
        w = w.env


def _elapsed(env: gym.Env) -> int | None:
    w = env
    while isinstance(w, gym.Wrapper):
        if hasattr(w, "_elapsed_steps"):
            return w._elapsed_steps
        w = w.env
    return None
