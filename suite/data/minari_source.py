"""`minari:<id>` datasets: Minari datasets from the local Minari root, downloaded only on request."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from suite.data import scores
from suite.data.dataset import ARRAY_FIELDS, Dataset
from suite.errors import UserError
from suite.net import tcp_reachable

if TYPE_CHECKING:  # minari is imported lazily: it is slow to import and only this source needs it
    from minari import MinariDataset

# Minari's default remote is the Hugging Face hub ("hf://farama-minari"). minari's own download retries
# for ~24 s when offline, so a TCP check with a short deadline runs first; tests point this at a closed
# local port.
REMOTE_ADDRESS: tuple[str, int] = ("huggingface.co", 443)
CONNECT_TIMEOUT_S = 1.5


def minari_root() -> Path:
    """Minari's dataset root: $MINARI_DATASETS_PATH, default ~/.minari/datasets (as minari does)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")).expanduser()


def open_minari(dataset_id: str, *, download: bool = False) -> MinariDataset:
    """The MinariDataset `dataset_id` from the local root; fetched from Minari's remote only if `download`."""
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise UserError(
            f"malformed Minari id {dataset_id!r}; expected (namespace/)name-v<version>, "
            "e.g. mujoco/halfcheetah/medium-v0"
        ) from None
    local = minari_root() / dataset_id / "data"
    if not local.exists():
        if not download:
            raise UserError(
                f"Minari dataset {dataset_id} not found in {minari_root()} ($MINARI_DATASETS_PATH); "
                f"fetch it with `baq datasets download minari:{dataset_id}`"
            )
        host, port = REMOTE_ADDRESS
        if not tcp_reachable(host, port, CONNECT_TIMEOUT_S):
            raise UserError(
                f"cannot download Minari dataset {dataset_id}: {host}:{port} is unreachable (offline?); "
                f"run `baq datasets download minari:{dataset_id}` on a connected machine and copy the folder to "
                f"{minari_root() / dataset_id}"
            )
        try:
            minari.download_dataset(dataset_id)
        except Exception as err:  # minari raises bare ValueError/HTTP errors for unknown ids
            raise UserError(f"downloading Minari dataset {dataset_id} failed: {err}") from None
    try:
        return minari.load_dataset(dataset_id)
    except (ValueError, OSError) as err:
        raise UserError(f"Minari dataset {dataset_id} in {minari_root()} cannot be read: {err}") from None


def flatten_episodes(episodes: Iterable) -> dict[str, np.ndarray]:
    """Minari episodes (observations hold T+1 rows) -> flat transition arrays.

    next_observations are observations[1:] of each episode; terminals come from `terminations`,
    timeouts from `truncations`.
    """
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ARRAY_FIELDS}
    for episode in episodes:
        observations = episode.observations
        if not isinstance(observations, np.ndarray) or not isinstance(episode.actions, np.ndarray):
            raise UserError(
                f"Minari episode {episode.id} has structured (dict/tuple) observations or actions; "
                "only flat Box spaces are supported"
            )
        parts["observations"].append(observations[:-1])
        parts["next_observations"].append(observations[1:])
        parts["actions"].append(episode.actions)
        parts["rewards"].append(episode.rewards)
        parts["terminals"].append(episode.terminations)
        parts["timeouts"].append(episode.truncations)
    if not parts["rewards"]:
        raise UserError("Minari dataset has no episodes")
    flat = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    # An episode both terminated and truncated ended by termination: keep exactly one end flag.
    flat["timeouts"] = flat["timeouts"].astype(bool) & ~flat["terminals"].astype(bool)
    for key in ("observations", "actions", "next_observations"):
        flat[key] = flat[key].reshape(len(flat[key]), -1)
    return flat


def env_id_of(minari_dataset: MinariDataset) -> str:
    """Gymnasium id for evaluation: the dataset's eval env spec, else the env it was collected on."""
    spec = getattr(minari_dataset, "_eval_env_spec", None) or minari_dataset.env_spec
    if spec is None:
        raise UserError(f"Minari dataset {minari_dataset.id} records no env spec; cannot evaluate on it")
    return str(spec.id)


def reference_scores(minari_dataset: MinariDataset, env_id: str) -> tuple[float, float, str]:
    """(min, max, origin): the dataset's own ref scores, else D4RL's for its env, else UserError."""
    metadata = minari_dataset.storage.metadata
    low, high = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if low is not None and high is not None:
        return float(low), float(high), "dataset metadata"
    try:
        low, high = scores.ref_scores(env_id)
    except UserError:
        raise UserError(
            f"Minari dataset {minari_dataset.id} has no ref_min_score/ref_max_score and env {env_id} has no "
            f"D4RL reference scores (known: {', '.join(sorted(scores.REF_SCORES))})"
        ) from None
    return low, high, "D4RL reference (suite.data.scores)"


def to_dataset(minari_dataset: MinariDataset, suite_id: str, provenance: dict[str, str]) -> Dataset:
    """Flatten a MinariDataset into the suite's Dataset."""
    env_id = env_id_of(minari_dataset)
    low, high, origin = reference_scores(minari_dataset, env_id)
    return Dataset(
        **flatten_episodes(minari_dataset.iterate_episodes()),
        id=suite_id,
        env_id=env_id,
        ref_min_score=low,
        ref_max_score=high,
        provenance={**provenance, "ref_scores": origin},
    )


def load(dataset_id: str, *, download: bool = False) -> Dataset:
    """Load `minari:<dataset_id>`."""
    minari_dataset = open_minari(dataset_id, download=download)
    return to_dataset(
        minari_dataset,
        f"minari:{dataset_id}",
        {"source": "Minari", "minari_id": dataset_id, "path": str(minari_dataset.storage.data_path)},
    )
