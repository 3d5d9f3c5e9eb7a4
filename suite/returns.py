"""Per-transition quantities computed once from a dataset's episodes: Monte-Carlo returns-to-go (Cal-QL's lower
bound) and the dataset's next actions (ReBRAC's critic penalty).

Episodes are split where `terminals | timeouts` is set; a trailing piece without either flag is an episode cut
like a time-out. Arrays are flat (first axis = transitions), as `suite.data.Dataset` holds them.
"""

from __future__ import annotations

import numpy as np

from suite.errors import UserError

# What follows the last step of an episode cut by a time limit (not a true termination):
#   "zero":        nothing: G_T = r_T (CORL's `get_return_to_go`: the discounted sum stops at the cut);
#   "last_reward": the last reward forever: G_T = r_T/(1 − γ) (the Cal-QL authors' `calc_return_to_go` with
#                  `infinite_horizon=True`, which they use on Kitchen).
TIMEOUT_TAILS = ("zero", "last_reward")


def episode_ends(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Indices of the last transition of every episode (the trailing piece's last index included)."""
    n = len(terminals)
    ends = np.flatnonzero((np.asarray(terminals) > 0) | (np.asarray(timeouts) > 0))
    if n and (len(ends) == 0 or ends[-1] != n - 1):
        ends = np.append(ends, n - 1)
    return ends


def discounted_returns(
    rewards: np.ndarray, terminated: bool, gamma: float, tail: str = "zero"
) -> np.ndarray:
    """G_t = r_t + γ·G_{t+1} over one episode, backwards from its end: G_T = r_T if it `terminated`, else
    r_T + γ·(0 or r_T/(1 − γ)) as `tail` says. float64."""
    if tail not in TIMEOUT_TAILS:
        raise UserError(f"unknown time-out tail {tail!r}; accepted: {', '.join(TIMEOUT_TAILS)}")
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    if len(rewards) == 0:
        return out
    after = 0.0
    if not terminated and tail == "last_reward":
        after = rewards[-1] / (1.0 - gamma) if gamma < 1.0 else 0.0
    for t in range(len(rewards) - 1, -1, -1):
        after = rewards[t] + gamma * after
        out[t] = after
    return out


def returns_to_go(
    rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray, gamma: float, tail: str = "zero"
) -> np.ndarray:
    """The discounted Monte-Carlo return from every transition to the end of its episode, (N,) float32."""
    out = np.empty(len(rewards), dtype=np.float32)
    start = 0
    for end in episode_ends(terminals, timeouts):
        terminated = bool(terminals[end] > 0)
        out[start:end + 1] = discounted_returns(rewards[start:end + 1], terminated, gamma, tail)
        start = end + 1
    return out


def next_actions(actions: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """a_{t+1} of the same episode for every transition, (N, |A|) float32; NaN at an episode's last transition,
    where the data hold no next action (a termination or a cut)."""
    actions = np.asarray(actions, dtype=np.float32)
    out = np.full_like(actions, np.nan)
    out[:-1] = actions[1:]
    out[episode_ends(terminals, timeouts)] = np.nan
    return out
