"""The Dataset type: validation, hashing, episode returns, normalised scores."""

from __future__ import annotations

import numpy as np
import pytest

from suite.data import Dataset
from suite.data.scores import REF_SCORES, normalized_score, ref_scores
from suite.errors import UserError


def arrays(n: int = 6, obs_dim: int = 3, act_dim: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observations": rng.standard_normal((n, obs_dim)),
        "actions": rng.uniform(-1, 1, (n, act_dim)),
        "rewards": np.arange(n, dtype=np.float64),
        "next_observations": rng.standard_normal((n, obs_dim)),
        "terminals": np.zeros(n),
        "timeouts": np.zeros(n),
    }


def make(**overrides) -> Dataset:
    data = {**arrays(), **overrides}
    return Dataset(**data, id="test:x", env_id="HalfCheetah-v5", ref_min_score=-280.178953,
                   ref_max_score=12135.0, provenance={"source": "test"})


def test_arrays_become_float32_and_dims_are_reported() -> None:
    dataset = make()
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        assert getattr(dataset, name).dtype == np.float32
    assert (len(dataset), dataset.obs_dim, dataset.act_dim) == (6, 3, 2)


def test_sha256_is_stable_and_sensitive_to_every_array() -> None:
    first, second = make(), make()
    assert first.sha256 == second.sha256 and len(first.sha256) == 64
    changed_reward = arrays()["rewards"].copy()
    changed_reward[2] += 0.5
    assert make(rewards=changed_reward).sha256 != first.sha256
    flagged = np.zeros(6)
    flagged[3] = 1.0
    assert make(timeouts=flagged).sha256 != first.sha256
    assert make(terminals=flagged).sha256 not in (first.sha256, make(timeouts=flagged).sha256)


def test_dataset_is_frozen() -> None:
    dataset = make()
    with pytest.raises(AttributeError):
        dataset.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("rewards", np.zeros(5), "array rewards has 5 transitions, others have 6"),
        ("actions", np.zeros((7, 2)), "array actions has 7 transitions"),
        ("observations", np.zeros(6), "array observations has shape (6,)"),
        ("terminals", np.zeros((6, 1)), "array terminals has shape (6, 1)"),
        ("next_observations", np.zeros((6, 4)), "next_observations has shape (6, 4)"),
        ("timeouts", np.full(6, 0.5), "timeouts must hold only 0.0 and 1.0"),
    ],
)
def test_bad_arrays_raise_one_line_user_error(name: str, value: np.ndarray, message: str) -> None:
    with pytest.raises(UserError) as caught:
        make(**{name: value})
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_with_their_row(bad: float) -> None:
    obs = arrays()["next_observations"].copy()
    obs[4, 1] = bad
    with pytest.raises(UserError, match=r"array next_observations holds NaN or inf \(first at row 4\)"):
        make(next_observations=obs)


def test_empty_dataset_is_rejected() -> None:
    empty = {name: value[:0] for name, value in arrays().items()}
    with pytest.raises(UserError, match="no transitions"):
        make(**empty)


def test_episode_returns_split_at_terminals_and_timeouts_with_trailing_piece() -> None:
    terminals = np.array([0, 1, 0, 0, 0, 0], dtype=np.float32)
    timeouts = np.array([0, 0, 0, 1, 0, 0], dtype=np.float32)
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    returns = make(terminals=terminals, timeouts=timeouts, rewards=rewards).episode_returns()
    np.testing.assert_allclose(returns, [1 + 2, 3 + 4, 5 + 6])
    whole = make(rewards=rewards).episode_returns()
    np.testing.assert_allclose(whole, [21.0])


def test_normalized_score_matches_d4rl_formula() -> None:
    dataset = make()
    assert dataset.normalized_score(12135.0) == pytest.approx(100.0)
    assert dataset.normalized_score(-280.178953) == pytest.approx(0.0)
    mid = 5000.0
    assert dataset.normalized_score(mid) == pytest.approx(100 * (mid + 280.178953) / (12135.0 + 280.178953))
    np.testing.assert_allclose(dataset.normalized_score(np.array([12135.0, -280.178953])), [100.0, 0.0])


def test_reference_scores_and_module_level_normalisation() -> None:
    assert REF_SCORES["hopper"] == (-20.272305, 3234.3)
    assert REF_SCORES["walker2d"] == (1.629008, 4592.3)
    assert ref_scores("HalfCheetah-v4") == ref_scores("halfcheetah-medium-replay-v2") == (-280.178953, 12135)
    assert ref_scores("mujoco/walker2d/expert-v0") == REF_SCORES["walker2d"]
    assert normalized_score("hopper", 3234.3) == pytest.approx(100.0)
    assert normalized_score("Walker2d-v5", 1.629008) == pytest.approx(0.0)
    expected = 100 * (1000 + 20.272305) / (3234.3 + 20.272305)
    assert normalized_score("hopper", 1000.0) == pytest.approx(expected)
    with pytest.raises(UserError, match="no D4RL reference scores for env 'Humanoid-v5'"):
        ref_scores("Humanoid-v5")
