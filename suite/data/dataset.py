"""The one in-memory dataset type every source produces (contract: docs/architecture.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from suite.errors import UserError

# Hash order is part of the contract: changing it changes every dataset's sha256.
ARRAY_FIELDS: tuple[str, ...] = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
)
_MATRIX_FIELDS = ("observations", "actions", "next_observations")


def hash_arrays(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over name, shape and raw float32 bytes of each array, in ARRAY_FIELDS order."""
    digest = hashlib.sha256()
    for name in ARRAY_FIELDS:
        array = np.ascontiguousarray(arrays[name], dtype=np.float32)
        digest.update(f"{name}:{array.shape}:".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the episodes, split after every terminal or time-out transition.

    A trailing piece without an end flag counts as an episode (architecture.md).
    """
    n = len(terminals)
    stops = np.flatnonzero((terminals > 0) | (timeouts > 0)) + 1
    if len(stops) == 0 or stops[-1] != n:
        stops = np.append(stops, n)
    starts = np.concatenate([[0], stops[:-1]])
    return starts.astype(np.int64), stops.astype(np.int64)


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous: compare `sha256` instead
class Dataset:
    """Flat transitions plus the metadata needed to train on them and to score a policy.

    Arrays are float32 with transitions on the first axis; `terminals` marks true environment
    terminations, `timeouts` marks time-limit truncations (not terminals). Treat the arrays as
    read-only: `sha256` is computed once, at construction.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    id: str
    env_id: str
    ref_min_score: float
    ref_max_score: float
    provenance: dict[str, str] = field(default_factory=dict)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ARRAY_FIELDS:
            object.__setattr__(self, name, self._as_float32(name, getattr(self, name)))
        self._validate()
        if not np.isfinite(self.ref_min_score) or not np.isfinite(self.ref_max_score):
            raise UserError(f"dataset {self.id}: reference scores must be finite numbers")
        if self.ref_max_score == self.ref_min_score:
            raise UserError(
                f"dataset {self.id}: ref_min_score == ref_max_score ({self.ref_min_score}); "
                "normalized scores would divide by zero"
            )
        object.__setattr__(self, "ref_min_score", float(self.ref_min_score))
        object.__setattr__(self, "ref_max_score", float(self.ref_max_score))
        object.__setattr__(self, "provenance", {str(k): str(v) for k, v in self.provenance.items()})
        object.__setattr__(self, "sha256", hash_arrays({n: getattr(self, n) for n in ARRAY_FIELDS}))

    def _as_float32(self, name: str, value: object) -> np.ndarray:
        try:
            return np.ascontiguousarray(value, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise UserError(f"dataset {self.id}: array {name} is not numeric ({err})") from None

    def _validate(self) -> None:
        for name in ARRAY_FIELDS:
            array = getattr(self, name)
            want_ndim = 2 if name in _MATRIX_FIELDS else 1
            if array.ndim != want_ndim:
                raise UserError(
                    f"dataset {self.id}: array {name} has shape {array.shape}, expected {want_ndim} dims"
                )
        lengths = [len(getattr(self, name)) for name in ARRAY_FIELDS]
        n = max(set(lengths), key=lengths.count)  # the majority length: blame the odd arrays
        for name, length in zip(ARRAY_FIELDS, lengths, strict=True):
            if length != n:
                raise UserError(f"dataset {self.id}: array {name} has {length} transitions, others have {n}")
        if n == 0:
            raise UserError(f"dataset {self.id}: no transitions")
        for name in ARRAY_FIELDS:
            array = getattr(self, name)
            finite_rows = np.isfinite(array).reshape(n, -1).all(axis=1)
            if not finite_rows.all():
                bad = int(np.flatnonzero(~finite_rows)[0])
                raise UserError(f"dataset {self.id}: array {name} holds NaN or inf (first at row {bad})")
        if self.next_observations.shape != self.observations.shape:
            raise UserError(
                f"dataset {self.id}: array next_observations has shape {self.next_observations.shape}, "
                f"observations has {self.observations.shape}"
            )
        for name in ("terminals", "timeouts"):
            array = getattr(self, name)
            if not np.isin(array, (0.0, 1.0)).all():
                raise UserError(f"dataset {self.id}: array {name} must hold only 0.0 and 1.0")

    def __repr__(self) -> str:
        return (f"Dataset(id={self.id!r}, env_id={self.env_id!r}, transitions={len(self)}, "
                f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, sha256={self.sha256[:12]}...)")

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def normalized_score(self, episode_return: float | np.ndarray) -> float | np.ndarray:
        """D4RL's normalisation (Fu et al. 2020): 100 * (R - ref_min) / (ref_max - ref_min)."""
        scaled = 100.0 * (np.asarray(episode_return, dtype=np.float64) - self.ref_min_score) / (
            self.ref_max_score - self.ref_min_score
        )
        return float(scaled) if scaled.ndim == 0 else scaled

    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops) indices of each episode; see `episode_bounds`."""
        return episode_bounds(self.terminals, self.timeouts)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in dataset order (float64)."""
        starts, _ = self.episode_bounds()
        return np.add.reduceat(self.rewards.astype(np.float64), starts)
