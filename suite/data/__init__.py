"""Datasets: one `Dataset` type, three sources (`d4rl:`, `minari:`, `local:`), quality variants on any of them
(`?fraction=0.1&action_noise=0.3`, suite/data/variants.py); see docs/datasets.md."""

from __future__ import annotations

import numpy as np

from suite.data import variants
from suite.data.dataset import Dataset
from suite.data.local import build_local
from suite.errors import UserError

SOURCES = ("d4rl", "minari", "local")

__all__ = ["SOURCES", "Dataset", "build_local", "canonical_dataset_id", "check_dataset_id", "dataset_info",
           "download_dataset", "list_datasets", "load_dataset"]


def _split_id(dataset_id: str) -> tuple[str, str]:
    source, sep, name = dataset_id.partition(":")
    if not sep or source not in SOURCES or not name:
        raise UserError(
            f"bad dataset id {dataset_id!r}; expected <source>:<name>, source one of {', '.join(SOURCES)} "
            "(e.g. d4rl:halfcheetah-medium-v2, minari:mujoco/halfcheetah/medium-v0, local:halfcheetah-medium)"
        )
    return source, name


def canonical_dataset_id(dataset_id: str) -> str:
    """The one spelling of an id: variants sorted and normalised (ids without variants are unchanged)."""
    return variants.canonical_id(dataset_id)


def check_dataset_id(dataset_id: str) -> None:
    """Validate an id without loading or building anything: the variants, the source, for d4rl/local the name."""
    base, _ = variants.split(dataset_id)
    source, name = _split_id(base)
    if source == "d4rl":
        from suite.data import d4rl

        d4rl._check_name(name)
    elif source == "local":
        from suite.data import local

        local.parse_name(name)


def load_dataset(dataset_id: str, *, download: bool = False) -> Dataset:
    """Load a dataset by id: `d4rl:<name>`, `minari:<id>` or `local:<env>-<quality>`.

    d4rl files are fetched when missing from $D4RL_DATASET_DIR; Minari datasets only with `download`;
    local datasets are built on first use and stored under $BAQ_DATA_DIR. Variants after '?' are applied to the
    loaded dataset, whose id is then the canonical one (suite/data/variants.py).
    """
    base, params = variants.split(dataset_id)
    dataset = _load_base(base, download)
    return variants.apply(dataset, params, variants.canonical_id(dataset_id))


def _load_base(dataset_id: str, download: bool) -> Dataset:
    source, name = _split_id(dataset_id)
    if source == "d4rl":
        from suite.data import d4rl

        return d4rl.load(name)
    if source == "minari":
        from suite.data import minari_source

        return minari_source.load(name, download=download)
    return build_local(name)


def download_dataset(dataset_id: str) -> str:
    """Fetch a `d4rl:` or `minari:` dataset into its local store (after a connect check of a few seconds, so an
    offline machine fails fast); returns a line saying where it is."""
    source, name = _split_id(dataset_id)
    if source == "local":
        raise UserError(f"{dataset_id} is built from the behaviour files, not downloaded: "
                        f"baq datasets build {dataset_id}")
    if source == "d4rl":
        from suite.data import d4rl

        d4rl._check_name(name)
        path = d4rl.dataset_dir() / d4rl.file_name(name)
        if path.is_file():
            return f"{dataset_id}: already in {path}"
        d4rl.download(name, path)
        return f"{dataset_id}: downloaded to {path}"
    from suite.data import minari_source

    local = minari_source.minari_root() / name
    present = (local / "data").exists()
    minari_source.open_minari(name, download=True)
    return f"{dataset_id}: {'already in' if present else 'downloaded to'} {local}"


def list_datasets() -> list[dict]:
    """Every known local id (built or not, with size), D4RL files on disk, and local Minari datasets."""
    from suite.data import d4rl, local, minari_source

    entries = [local.build_status(name) for name in local.local_names()]
    for name in d4rl.known_names():
        path = d4rl.dataset_dir() / d4rl.file_name(name)
        if path.is_file():
            entries.append({"id": f"d4rl:{name}", "source": "d4rl", "built": True, "path": str(path),
                            "bytes": path.stat().st_size})
    root = minari_source.minari_root()
    if root.is_dir():
        import minari

        for minari_id, metadata in minari.list_local_datasets().items():
            entries.append({"id": f"minari:{minari_id}", "source": "minari", "built": True,
                            "transitions": metadata.get("total_steps"),
                            "episodes": metadata.get("total_episodes"), "path": str(root / minari_id)})
    return entries


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "min": float(np.min(values)), "max": float(np.max(values))}


def dataset_info(dataset_id: str, *, download: bool = False) -> dict:
    """Facts about a dataset (loads it, so a local one is built if needed)."""
    dataset = load_dataset(dataset_id, download=download)
    returns = dataset.episode_returns()
    return {
        "id": dataset.id,
        "env_id": dataset.env_id,
        "transitions": len(dataset),
        "episodes": len(returns),
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "terminals": int(dataset.terminals.sum()),
        "timeouts": int(dataset.timeouts.sum()),
        "ref_min_score": dataset.ref_min_score,
        "ref_max_score": dataset.ref_max_score,
        "return": _stats(returns),
        "normalized_return": _stats(np.asarray(dataset.normalized_score(returns))),
        "sha256": dataset.sha256,
        "provenance": dict(dataset.provenance),
    }
