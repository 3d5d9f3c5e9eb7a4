"""`local:<env>-<quality>` datasets: D4RL's collection protocol applied to local behaviour files.

The behaviour files ($BAQ_BEHAVIOR_DIR, see its README.md and index.json) hold SAC policies and one
training stream per env. From them this module builds datasets the way D4RL built its Gym-MuJoCo ones
(Fu et al. 2020, section 5 and d4rl's `scripts/generation`), but on Gymnasium's -v5 envs, so they are
D4RL-*protocol* datasets, not D4RL's. Each build is stored once as a Minari dataset under
$BAQ_DATA_DIR, keyed by a hash of everything that shapes it, and reused on the next load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from suite.data import sources
from suite.data.dataset import Dataset, hash_arrays
from suite.data.minari_source import flatten_episodes
from suite.data.rollouts import MAX_EPISODE_STEPS, ROLLOUT_ENVS, TanhGaussianPolicy, collect
from suite.errors import UserError

# Bump when the build changes the data it produces for the same inputs (invalidates stored builds).
BUILDER_VERSION = "1"
DEFAULT_TRANSITIONS = 1_000_000  # D4RL: 1M transitions per random/medium/expert dataset
QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert")
QUALITY_FILES: dict[str, tuple[str, ...]] = {
    "random": (),
    "medium": ("medium_policy.npz",),
    "expert": ("expert_policy.npz",),
    "medium-replay": ("medium_replay.npz",),
    "medium-expert": ("medium_policy.npz", "expert_policy.npz"),
}
DEFAULT_ENVS = ("halfcheetah", "hopper", "walker2d")
SIDECAR = "baq_build.json"
TRANSITION_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
def data_dir() -> Path:
    """Where built datasets live: $BAQ_DATA_DIR, default ~/.cache/baq-suite/datasets."""
    default = Path.home() / ".cache" / "baq-suite" / "datasets"
    return Path(os.environ.get("BAQ_DATA_DIR") or default).expanduser()


def parse_name(name: str) -> tuple[str, str]:
    """'halfcheetah-medium-replay' -> ('halfcheetah', 'medium-replay')."""
    for quality in sorted(QUALITIES, key=len, reverse=True):
        if name.endswith("-" + quality) and len(name) > len(quality) + 1:
            return name[: -len(quality) - 1], quality
    raise UserError(
        f"bad local dataset name {name!r}; expected <env>-<quality>, quality one of {', '.join(QUALITIES)}"
    )


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key in _FILE_HASHES:
        return _FILE_HASHES[cache_key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _FILE_HASHES[cache_key] = digest.hexdigest()
    return _FILE_HASHES[cache_key]


class Recipe:
    """Everything that determines one build: env, quality, behaviour files, size, seed."""

    def __init__(self, name: str, n_transitions: int, seed: int) -> None:
        self.env, self.quality = parse_name(name)
        self.name = name
        self.root, self.entry = sources.task(self.env)
        self.env_id: str = self.entry["env_id"]
        self.ref_min, self.ref_max = float(self.entry["ref_min_score"]), float(self.entry["ref_max_score"])
        if n_transitions < 1:
            raise UserError(f"n_transitions must be >= 1, got {n_transitions}")
        # medium-replay is the recorded stream as given: size and seed do not apply.
        as_given = self.quality == "medium-replay"
        self.n_transitions = None if as_given else int(n_transitions)
        self.seed = None if as_given else int(seed)
        self.files = {filename: self._checked_file(filename) for filename in QUALITY_FILES[self.quality]}

    def _checked_file(self, filename: str) -> tuple[Path, str]:
        listed = self.entry.get("files", {})
        if filename not in listed:
            raise UserError(
                f"behaviour file {self.env}/{filename} (needed for {self.name}) is not in "
                f"{self.root / 'index.json'}; {self.env} has: {', '.join(listed) or 'nothing'}"
            )
        path = self.root / self.env / filename
        if not path.is_file():
            raise UserError(f"behaviour file {path} is listed in index.json but missing on disk")
        actual = _sha256_file(path)
        if actual != listed[filename].get("sha256", actual):
            expected = listed[filename]["sha256"]
            raise UserError(f"behaviour file {path} has sha256 {actual}, index.json says {expected}")
        return path, actual

    def key_inputs(self) -> dict:
        return {
            "builder_version": BUILDER_VERSION,
            "env_id": self.env_id,
            "quality": self.quality,
            "n_transitions": self.n_transitions,
            "seed": self.seed,
            "files": {name: sha for name, (_, sha) in self.files.items()},
            "rollout_envs": ROLLOUT_ENVS,
            "max_episode_steps": MAX_EPISODE_STEPS,
        }

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.key_inputs(), sort_keys=True).encode()).hexdigest()

    def minari_id(self) -> str:
        return f"local-{self.env}-{self.quality}-{self.key()[:16]}-v0"

    def store(self) -> Path:
        return data_dir() / self.minari_id()

    def sources(self) -> str:
        listed = self.entry.get("files", {})
        described = [f"{name}: {listed[name].get('source', '?')}" for name in self.files]
        return "; ".join(described) or "uniform random"


@contextlib.contextmanager
def _minari_root(root: Path) -> Iterator[None]:
    """Point Minari's dataset root at `root` while creating (minari reads the env var on each call)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Serialise builds of one dataset across processes (parallel runner cells); no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builds race, the first rename wins
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _episodes_from_stream(path: Path) -> list[dict[str, np.ndarray]]:
    """Split a recorded transition file at terminals | timeouts into Minari-style episodes."""
    with np.load(path) as stream:
        arrays = {key: stream[key] for key in stream.files}
    missing = set(TRANSITION_KEYS) - set(arrays)
    if missing:
        raise UserError(f"transition file {path} lacks {', '.join(sorted(missing))}")
    ends = np.flatnonzero(arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool)) + 1
    if len(ends) == 0 or ends[-1] != len(arrays["rewards"]):
        ends = np.append(ends, len(arrays["rewards"]))  # a trailing piece is cut: treat as time-out
    episodes, start = [], 0
    for stop in ends:
        obs, next_obs = arrays["observations"][start:stop], arrays["next_observations"][start:stop]
        if not np.array_equal(obs[1:], next_obs[:-1]):
            raise UserError(f"transition file {path}: next_observations do not chain (episode at {start})")
        timeouts = arrays["timeouts"][start:stop].astype(bool)
        terminals = arrays["terminals"][start:stop].astype(bool)
        timeouts[-1] = timeouts[-1] or not terminals[-1]
        episodes.append({
            "observations": np.concatenate([obs, next_obs[-1:]]).astype(np.float32),
            "actions": arrays["actions"][start:stop].astype(np.float32),
            "rewards": arrays["rewards"][start:stop].astype(np.float32),
            "terminations": terminals,
            "truncations": timeouts & ~terminals,
        })
        start = stop
    return episodes


def _collect_episodes(recipe: Recipe) -> list[dict[str, np.ndarray]]:
    if recipe.quality == "medium-replay":
        return _episodes_from_stream(recipe.files["medium_replay.npz"][0])
    policy = None
    if recipe.quality in ("medium", "expert"):
        policy = TanhGaussianPolicy.load(recipe.files[f"{recipe.quality}_policy.npz"][0])
    assert recipe.n_transitions is not None and recipe.seed is not None
    return collect(recipe.env_id, policy, recipe.n_transitions, recipe.seed, label=recipe.name)


def _write_minari(recipe: Recipe, episodes: list[dict[str, np.ndarray]]) -> None:
    """Store the episodes as a Minari dataset; build in a temp root, then rename into place."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=index, **episode) for index, episode in enumerate(episodes)]
    root = data_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        with _minari_root(staging), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*author_email.*")
            minari.create_dataset_from_buffers(
                dataset_id=recipe.minari_id(),
                buffer=buffers,
                env=recipe.env_id,
                eval_env=recipe.env_id,
                algorithm_name=f"D4RL protocol, {recipe.quality} ({recipe.sources()})",
                author="BAQ Suite local build",
                code_permalink="suite/data/local.py (baq-suite)",
                ref_min_score=recipe.ref_min,
                ref_max_score=recipe.ref_max,
                description=(
                    f"{recipe.name}: D4RL-protocol {recipe.quality} data on Gymnasium {recipe.env_id}, built "
                    "from local behaviour files. Not a D4RL dataset."
                ),
            )
        built = staging / recipe.minari_id()
        sidecar = {**recipe.key_inputs(), "key": recipe.key(),
                   "transitions": sum(len(episode["rewards"]) for episode in episodes),
                   "episodes": len(episodes), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "sha256": hash_arrays(flatten_episodes(SimpleNamespace(id=index, **episode)
                                                          for index, episode in enumerate(episodes)))}
        (built / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        target = recipe.store()
        if target.exists():
            shutil.rmtree(target)
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _iterate(store: Path):
    from minari.dataset.minari_dataset import MinariDataset

    return MinariDataset(store / "data").iterate_episodes()


def _load_stored(recipe: Recipe) -> Dataset:
    store = recipe.store()
    try:
        flat = flatten_episodes(_iterate(store))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"stored dataset {store} is unreadable ({err}); rebuild with force=True") from None
    dataset = Dataset(
        **flat,
        id=f"local:{recipe.name}",
        env_id=recipe.env_id,
        ref_min_score=recipe.ref_min,
        ref_max_score=recipe.ref_max,
        provenance=_provenance(recipe, str(store)),
    )
    recorded = json.loads((store / SIDECAR).read_text()).get("sha256")
    if recorded != dataset.sha256:
        raise UserError(f"stored dataset {store} has a sha256 unlike its build record; rebuild: force=True")
    return dataset


def _provenance(recipe: Recipe, store: str) -> dict[str, str]:
    return {
        "protocol": "d4rl",
        "source": "local behaviour files",
        "note": f"D4RL-protocol data on Gymnasium {recipe.env_id}; not the D4RL dataset",
        "quality": recipe.quality,
        "behavior_dir": str(recipe.root),
        "reference_scores": _reference_note(recipe.entry),
        "behavior_files": json.dumps({name: sha for name, (_, sha) in recipe.files.items()}, sort_keys=True),
        "behavior_sources": recipe.sources(),
        "n_transitions": "as given" if recipe.n_transitions is None else str(recipe.n_transitions),
        "seed": "n/a" if recipe.seed is None else str(recipe.seed),
        "build_key": recipe.key(),
        "builder_version": BUILDER_VERSION,
        "store": store,
    }


def _reference_note(entry: dict) -> str:
    """Where the task's ref_min/ref_max come from: D4RL's table unless the index entry says otherwise."""
    source = entry.get("ref_scores", "d4rl")
    return "D4RL reference returns (d4rl/infos.py)" if source == "d4rl" else source


def is_built(recipe: Recipe) -> bool:
    return (recipe.store() / SIDECAR).is_file() and (recipe.store() / "data").is_dir()


def build_local(
    name: str, *, n_transitions: int | None = None, seed: int = 0, force: bool = False
) -> Dataset:
    """Build (or reuse) `local:<name>` and return it.

    random / medium / expert: `n_transitions` (default DEFAULT_TRANSITIONS, 1M) transitions of
    uniform-random or stochastic policy actions, episodes at most 1000 steps, seeded by `seed`.
    medium-replay: the recorded stream as given. medium-expert: medium then expert, each of
    `n_transitions` (D4RL: 2M in all). `force` rebuilds even if a stored build exists.
    """
    n_transitions = DEFAULT_TRANSITIONS if n_transitions is None else n_transitions
    env, quality = parse_name(name)
    if quality == "medium-expert":
        parts = [build_local(f"{env}-{part}", n_transitions=n_transitions, seed=seed, force=force)
                 for part in ("medium", "expert")]
        return _concatenate(Recipe(name, n_transitions, seed), parts)
    recipe = Recipe(name, n_transitions, seed)
    with _build_lock(data_dir() / f".{recipe.minari_id()}.lock"):
        if force or not is_built(recipe):
            _write_minari(recipe, _collect_episodes(recipe))
    return _load_stored(recipe)


def _concatenate(recipe: Recipe, parts: list[Dataset]) -> Dataset:
    provenance = _provenance(recipe, " + ".join(part.provenance["store"] for part in parts))
    provenance["parts"] = ", ".join(f"{part.id} sha256={part.sha256}" for part in parts)
    return Dataset(
        **{field: np.concatenate([getattr(part, field) for part in parts]) for field in TRANSITION_KEYS},
        id=f"local:{recipe.name}",
        env_id=recipe.env_id,
        ref_min_score=recipe.ref_min,
        ref_max_score=recipe.ref_max,
        provenance=provenance,
    )


def local_names() -> list[str]:
    """Every `<env>-<quality>` the behaviour index knows (the three default envs if it is unavailable)."""
    try:
        envs = sources.known_tasks()
    except UserError:
        envs = list(DEFAULT_ENVS)
    return [f"{env}-{quality}" for env in envs for quality in QUALITIES]


def build_status(name: str) -> dict:
    """Whether the default build of `name` is stored, with its size; never builds."""
    status: dict = {"id": f"local:{name}", "source": "local", "built": False}
    env, quality = parse_name(name)
    parts = [f"{env}-medium", f"{env}-expert"] if quality == "medium-expert" else [name]
    try:
        recipes = [Recipe(part, DEFAULT_TRANSITIONS, 0) for part in parts]
    except UserError as err:
        return {**status, "error": str(err)}
    if not all(is_built(recipe) for recipe in recipes):
        return status
    sidecars = [json.loads((recipe.store() / SIDECAR).read_text()) for recipe in recipes]
    return {
        **status,
        "built": True,
        "transitions": sum(sidecar["transitions"] for sidecar in sidecars),
        "episodes": sum(sidecar["episodes"] for sidecar in sidecars),
        "path": ", ".join(str(recipe.store()) for recipe in recipes),
        "bytes": sum(_tree_bytes(recipe.store()) for recipe in recipes),
    }


def _tree_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())

