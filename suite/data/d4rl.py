"""`d4rl:<name>` datasets: D4RL's Gym-MuJoCo HDF5 files, read with h5py only (no d4rl/mujoco-py)."""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import h5py
import numpy as np

from suite.data import scores
from suite.data.dataset import Dataset
from suite.errors import UserError
from suite.net import tcp_reachable

# D4RL's published location of the v2 Gym-MuJoCo files (d4rl/infos.py). Tests point it at a closed
# local port; the file name is '<env>_<quality with _>-v2.hdf5', e.g. 'hopper_medium_replay-v2.hdf5'.
BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
CONNECT_TIMEOUT_S = 1.5  # offline machines must fail in < 2 s
READ_TIMEOUT_S = 60.0

ENVS = ("halfcheetah", "hopper", "walker2d")
QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert")
# D4RL's datasets were collected on gym's -v3 mujoco-py envs; Gymnasium's -v4 envs keep the same
# model files and observation layout on the `mujoco` bindings (docs/datasets.md), -v5 changed both.
EVAL_ENV_IDS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def known_names() -> list[str]:
    return [f"{env}-{quality}-v2" for env in ENVS for quality in QUALITIES]


def dataset_dir() -> Path:
    """Where D4RL keeps its files: $D4RL_DATASET_DIR, default ~/.d4rl/datasets (as d4rl does)."""
    return Path(os.environ.get("D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")).expanduser()


def file_name(name: str) -> str:
    """D4RL's file name for a v2 dataset name: 'hopper-medium-replay-v2' -> 'hopper_medium_replay-v2.hdf5'."""
    return name.removesuffix("-v2").replace("-", "_") + "-v2.hdf5"


def _check_name(name: str) -> None:
    if name not in known_names():
        raise UserError(f"unknown D4RL dataset {name!r}; supported: {', '.join(known_names())}")


def download(name: str, target: Path) -> None:
    """Fetch D4RL's file for `name` into `target` atomically (temp file in the same dir, then rename)."""
    url = f"{BASE_URL}/{file_name(name)}"
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    hint = (f"download {url} elsewhere (e.g. `baq datasets download d4rl:{name}` on a connected machine) and "
            f"place it in $D4RL_DATASET_DIR ({target.parent})")
    if not tcp_reachable(parsed.hostname or "", port, CONNECT_TIMEOUT_S):
        raise UserError(f"D4RL dataset {name} is missing and {parsed.netloc} is unreachable: {hint}")
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=Console(stderr=True)) as bar:
                task = bar.add_task(f"download {target.name}", total=total)
                written = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    written += len(chunk)
                    bar.advance(task, len(chunk))
        if total is not None and written != total:
            raise OSError(f"got {written} of {total} bytes")
        if not h5py.is_hdf5(tmp_name):
            raise OSError("the server's reply is not an HDF5 file")
        os.replace(tmp_name, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        Path(tmp_name).unlink(missing_ok=True)
        raise UserError(f"downloading {url} failed ({err}): {hint}") from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """The flat arrays of a D4RL-layout HDF5 file (next_observations only if the file has them)."""
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in REQUIRED_KEYS if key not in handle]
            if missing:
                present = ", ".join(sorted(handle.keys()))
                raise UserError(f"D4RL file {path} lacks key(s) {', '.join(missing)}; has {present}")
            keys = list(REQUIRED_KEYS) + (["next_observations"] if "next_observations" in handle else [])
            arrays = {key: np.asarray(handle[key][()]) for key in keys}
    except OSError as err:
        raise UserError(f"D4RL file {path} is not a readable HDF5 file ({err})") from None
    lengths = {key: len(value) if value.ndim else 0 for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{key}={length}" for key, length in lengths.items())
        raise UserError(f"D4RL file {path} has arrays of mismatched length: {described}")
    return arrays


def to_transitions(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """D4RL arrays -> Dataset arrays.

    With `next_observations` in the file, every transition is kept as stored. Without them, the next
    observation is the following row, as in D4RL's `qlearning_dataset` (used by CORL): the last row and
    every row flagged `timeouts` are dropped, because their next observation is not in the file (the
    following row starts a new episode). The kept row just before a dropped time-out becomes the
    episode's last transition and is flagged as a time-out, so episode boundaries survive.
    """
    terminals = arrays["terminals"].astype(bool)
    timeouts = arrays["timeouts"].astype(bool)
    if "next_observations" in arrays:
        return {
            "observations": arrays["observations"],
            "actions": arrays["actions"],
            "rewards": arrays["rewards"],
            "next_observations": arrays["next_observations"],
            "terminals": terminals,
            "timeouts": timeouts,
        }
    n = len(terminals)
    keep = ~timeouts
    keep[n - 1] = False
    # Row i-1 ends its episode when row i is a dropped time-out of the same episode.
    cut_before = np.zeros(n, dtype=bool)
    cut_before[:-1] = timeouts[1:] & ~(terminals[:-1] | timeouts[:-1])
    index = np.flatnonzero(keep)
    return {
        "observations": arrays["observations"][index],
        "actions": arrays["actions"][index],
        "rewards": arrays["rewards"][index],
        "next_observations": arrays["observations"][index + 1],
        "terminals": terminals[index],
        "timeouts": cut_before[index],
    }


def load(name: str, *, download_missing: bool = True) -> Dataset:
    """Load `d4rl:<name>` from $D4RL_DATASET_DIR, downloading D4RL's file first if it is missing."""
    _check_name(name)
    path = dataset_dir() / file_name(name)
    if not path.exists():
        if not download_missing:
            raise UserError(f"D4RL file {path} not found; fetch it with `baq datasets download d4rl:{name}` "
                            f"or place {file_name(name)} in $D4RL_DATASET_DIR")
        download(name, path)
    env = scores.env_name(name)
    ref_min, ref_max = scores.ref_scores(env)
    arrays = read_hdf5(path)
    next_obs_origin = "file" if "next_observations" in arrays else "following row (qlearning_dataset)"
    return Dataset(
        **to_transitions(arrays),
        id=f"d4rl:{name}",
        env_id=EVAL_ENV_IDS[env],
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        provenance={
            "source": "D4RL",
            "protocol": "d4rl",
            "file": str(path),
            "url": f"{BASE_URL}/{file_name(name)}",
            "next_observations": next_obs_origin,
        },
    )

