"""Dataset-quality variants, written into the dataset id: `local:hopper-medium?fraction=0.1&action_noise=0.3`.

| key | value | effect |
|---|---|---|
| `fraction` | 0 < f <= 1 | a seeded random subset of whole episodes holding at least f of the transitions |
| `episodes` | integer n >= 1 | a seeded random subset of n whole episodes |
| `action_noise` | sigma >= 0 | actions a -> clip(a + sigma * eps, low, high), eps ~ N(0, I), the env's bounds |
| `seed` | integer >= 0 | the variant's random seed (default 0); not the training seed |

Subsets keep the chosen episodes in their original order; noise is drawn after the subset, for the kept
transitions. Only actions change under noise: observations, rewards and end flags stay those of the recorded
step (the data's labels no longer match its actions exactly, which is the point of the corruption).

The canonical form of an id sorts the keys, writes each value in one way (floats as Python's shortest repr,
integers as integers) and drops no-op and default values (`fraction=1`, `action_noise=0`, `seed=0`, and `seed`
when nothing is random), so `?b=2&a=1` and `?a=1&b=2` name the same dataset and train the same cell (the cell
hash hashes the id). An id without `?` is its own canonical form, so existing ids keep their cells.
"""

from __future__ import annotations

import math

import numpy as np

from suite.data.dataset import ARRAY_FIELDS, Dataset
from suite.errors import UserError

KEYS = ("action_noise", "episodes", "fraction", "seed")
ACCEPTED = ("fraction=F (0 < F <= 1), episodes=N (integer >= 1), action_noise=SIGMA (>= 0), "
            "seed=S (integer >= 0)")


def split(dataset_id: str) -> tuple[str, dict[str, float | int]]:
    """'local:hopper-medium?fraction=0.1' -> ('local:hopper-medium', {'fraction': 0.1}); validated, no-ops dropped."""
    base, sep, query = dataset_id.partition("?")
    if not sep:
        return dataset_id, {}
    if not query:
        raise UserError(f"dataset id {dataset_id!r} ends in '?' without variants; accepted: {ACCEPTED}")
    params: dict[str, float | int] = {}
    for item in query.split("&"):
        key, eq, text = item.partition("=")
        if key not in KEYS or not eq:
            raise UserError(f"bad dataset variant {item!r} in {dataset_id!r}; accepted: {ACCEPTED}")
        if key in params:
            raise UserError(f"dataset variant {key!r} given twice in {dataset_id!r}")
        params[key] = _value(key, text, dataset_id)
    if "fraction" in params and "episodes" in params:
        raise UserError(f"dataset id {dataset_id!r}: fraction and episodes both choose a subset; give one")
    return base, _without_no_ops(params)


def _value(key: str, text: str, dataset_id: str) -> float | int:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if key in ("episodes", "seed"):
        low = 1 if key == "episodes" else 0
        if not (math.isfinite(number) and number == int(number) and number >= low and text.strip() == text):
            raise UserError(f"dataset variant {key}={text!r} in {dataset_id!r}: expected an integer >= {low}")
        return int(number)
    ok = 0 < number <= 1 if key == "fraction" else 0 <= number < math.inf
    if not ok:
        wanted = "a number with 0 < fraction <= 1" if key == "fraction" else "a finite number >= 0"
        raise UserError(f"dataset variant {key}={text!r} in {dataset_id!r}: expected {wanted}")
    return number


def _without_no_ops(params: dict[str, float | int]) -> dict[str, float | int]:
    kept = {k: v for k, v in params.items()
            if not (k == "fraction" and v == 1.0) and not (k == "action_noise" and v == 0.0)
            and not (k == "seed" and v == 0)}
    if set(kept) == {"seed"}:
        return {}
    return kept


def canonical_id(dataset_id: str) -> str:
    """The one spelling of an id (sorted keys, canonical values, no no-ops); ids without '?' are unchanged."""
    base, params = split(dataset_id)
    if not params:
        return base
    parts = [f"{key}={_text(params[key])}" for key in sorted(params)]
    return f"{base}?{'&'.join(parts)}"


def _text(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def apply(dataset: Dataset, params: dict[str, float | int], variant_id: str) -> Dataset:
    """`dataset` with the variants applied, as a new Dataset with id `variant_id` (canonical)."""
    if not params:
        return dataset
    subset_seed, noise_seed = np.random.SeedSequence(int(params.get("seed", 0))).spawn(2)
    arrays = {name: getattr(dataset, name) for name in ARRAY_FIELDS}
    if "fraction" in params or "episodes" in params:
        keep = _episode_subset(dataset, params, np.random.default_rng(subset_seed), variant_id)
        arrays = {name: array[keep] for name, array in arrays.items()}
    if "action_noise" in params:
        arrays["actions"] = _noisy(arrays["actions"], float(params["action_noise"]), dataset.env_id,
                                   np.random.default_rng(noise_seed))
    provenance = {**dataset.provenance, "variant": variant_id.partition("?")[2],
                  "variant_of": dataset.id, "variant_of_sha256": dataset.sha256}
    return Dataset(**arrays, id=variant_id, env_id=dataset.env_id, ref_min_score=dataset.ref_min_score,
                   ref_max_score=dataset.ref_max_score, provenance=provenance)


def _episode_subset(dataset: Dataset, params: dict[str, float | int], rng: np.random.Generator,
                    variant_id: str) -> np.ndarray:
    """Row indices of a seeded random subset of whole episodes, in dataset order."""
    starts, stops = dataset.episode_bounds()
    order = rng.permutation(len(starts))
    if "episodes" in params:
        count = int(params["episodes"])
        if count > len(starts):
            raise UserError(f"{variant_id}: episodes={count} but {dataset.id} has {len(starts)} episodes")
    else:
        # The shortest prefix of the shuffled episodes holding at least fraction·N transitions.
        needed = math.ceil(float(params["fraction"]) * len(dataset))
        count = int(np.searchsorted(np.cumsum((stops - starts)[order]), needed) + 1)
    chosen = np.sort(order[:count])
    return np.concatenate([np.arange(starts[i], stops[i]) for i in chosen])


def _noisy(actions: np.ndarray, sigma: float, env_id: str, rng: np.random.Generator) -> np.ndarray:
    """clip(a + sigma·eps, low, high) with the env's action bounds."""
    from suite.envs import make_env

    env = make_env(env_id, seed=0)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    noise = rng.standard_normal(actions.shape).astype(np.float32)
    return np.clip(actions + np.float32(sigma) * noise, low, high).astype(np.float32)
