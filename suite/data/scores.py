"""D4RL reference returns for normalised scores.

Values are D4RL's REF_MIN_SCORE / REF_MAX_SCORE for the Gym-MuJoCo locomotion tasks
(d4rl/infos.py, Fu et al. 2020): min = a random policy's mean return, max = an expert's (SAC) return.
They are the same for every dataset of one environment (random, medium, ..., -v0/-v1/-v2).
"""

from __future__ import annotations

import re

import numpy as np

from suite.errors import UserError

# env name -> (ref_min_score, ref_max_score), from d4rl/infos.py.
REF_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

_VERSION_SUFFIX = re.compile(r"-v\d+$")


def env_name(name: str) -> str:
    """Canonical env name: 'HalfCheetah-v5', 'halfcheetah-medium-v2', 'mujoco/halfcheetah/medium-v0',
    'halfcheetah' -> 'halfcheetah' (case-insensitive)."""
    candidates = [_VERSION_SUFFIX.sub("", part).lower().split("-")[0] for part in name.strip().split("/")]
    # Minari ids carry the env in a namespace ("mujoco/halfcheetah/medium-v0"): take the known part.
    known = [c for c in candidates if c in REF_SCORES]
    return known[0] if known else candidates[-1]


def ref_scores(name: str) -> tuple[float, float]:
    """(ref_min_score, ref_max_score) for an env name, Gymnasium id or D4RL dataset name."""
    key = env_name(name)
    if key not in REF_SCORES:
        raise UserError(
            f"no D4RL reference scores for env {name!r}; known: {', '.join(sorted(REF_SCORES))}"
        )
    return REF_SCORES[key]


def normalized_score(env: str, episode_return: float | np.ndarray) -> float | np.ndarray:
    """100 * (R - ref_min) / (ref_max - ref_min), D4RL's normalisation (Fu et al. 2020)."""
    low, high = ref_scores(env)
    scaled = 100.0 * (np.asarray(episode_return, dtype=np.float64) - low) / (high - low)
    return float(scaled) if scaled.ndim == 0 else scaled
