"""Writing behaviour files: per-task policy and stream files plus their `index.json` entry, in the layout that
`local:` datasets read (suite/data/local.py; the format is described in docs/datasets.md).

Every file is written to a temp file and renamed into place; `index.json` is read, updated with the one task's
entry and replaced under a file lock, so a crash leaves either the old entry or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from suite.checkpoint import atomic_write_bytes, atomic_write_text
from suite.data.dataset import episode_bounds
from suite.data.scores import REF_SCORES, env_name
from suite.errors import UserError

STREAM_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
D4RL_REFERENCE = "d4rl"


def task_key(env_id: str) -> str:
    """The `<env>` of `local:<env>-<quality>` for a Gymnasium id: 'InvertedDoublePendulum-v5' ->
    'inverteddoublependulum' (the same rule D4RL's reference table is keyed by, suite/data/scores.py)."""
    key = env_name(env_id)
    if not re.fullmatch(r"[a-z0-9_]+", key):
        raise UserError(f"cannot name a task after env id {env_id!r}; expected a Gymnasium id like Hopper-v5")
    return key


def reference_scores(key: str, random_return: float, expert_return: float) -> tuple[float, float, str]:
    """(ref_min, ref_max, where they come from) for normalized scores: D4RL's table where D4RL has the task,
    else this task's own random return and expert return (which are not D4RL's, and say so)."""
    if key in REF_SCORES:
        low, high = REF_SCORES[key]
        return low, high, D4RL_REFERENCE
    if expert_return <= random_return:
        raise UserError(f"{key}: the best snapshot's return {expert_return:.1f} does not beat the random policy's "
                        f"{random_return:.1f}, so it cannot be the normalized score's 100; train longer (--steps)")
    return random_return, expert_return, ("own: ref_min = mean return of uniform random actions, ref_max = mean "
                                          "stochastic return of expert_policy.npz (not D4RL reference returns)")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an .npz holding `arrays` (numpy writes fixed zip timestamps: same arrays, same bytes)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def stream_facts(stream: dict[str, np.ndarray]) -> dict[str, float | int]:
    starts, _ = episode_bounds(stream["terminals"], stream["timeouts"])
    returns = np.add.reduceat(stream["rewards"].astype(np.float64), starts)
    return {"transitions": int(len(stream["rewards"])), "episodes": int(len(starts)),
            "episode_return_mean": float(returns.mean()), "episode_return_max": float(returns.max())}


@contextlib.contextmanager
def _index_lock(root: Path) -> Iterator[None]:
    import fcntl

    with (root / ".index.json.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_task(root: Path, key: str, entry: dict, files: dict[str, tuple[bytes, dict]]) -> dict:
    """Write `files` (name -> (bytes, facts)) into `root/key/` and the task's entry into `root/index.json`.

    The entry's `files` map gets each file's facts plus its sha256. Entries of other tasks are kept; this task's
    old entry is replaced. Returns the entry as written.
    """
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for name, (data, facts) in files.items():
        atomic_write_bytes(folder / name, data)
        listed[name] = {**facts, "sha256": hashlib.sha256(data).hexdigest()}
    entry = json.loads(json.dumps({**entry, "files": listed}))  # as stored: tuples become lists
    with _index_lock(root):
        index_path = root / "index.json"
        index = {}
        if index_path.is_file():
            try:
                index = json.loads(index_path.read_text())
            except json.JSONDecodeError as err:
                raise UserError(f"cannot update {index_path}: it is not valid JSON ({err})") from None
        index[key] = entry
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return entry
