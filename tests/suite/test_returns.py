"""Returns-to-go and next actions from a dataset's flat arrays, against an episode computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from suite.errors import UserError
from suite.returns import discounted_returns, episode_ends, next_actions, returns_to_go

GAMMA = 0.5
# Three episodes: [1, 2, 3] cut by a time limit, [4, 5] terminated, [6] a trailing piece without a flag.
REWARDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=np.float32)
TERMINALS = np.array([0, 0, 0, 0, 1, 0], dtype=np.float32)
TIMEOUTS = np.array([0, 0, 1, 0, 0, 0], dtype=np.float32)


def test_episode_ends_include_the_trailing_piece() -> None:
    assert episode_ends(TERMINALS, TIMEOUTS).tolist() == [2, 4, 5]


def test_returns_to_go_stop_at_a_time_limit_cut_with_the_zero_tail() -> None:
    # Cut episode: G2 = 3, G1 = 2 + 0.5·3 = 3.5, G0 = 1 + 0.5·3.5 = 2.75. Terminated: G4 = 5, G3 = 4 + 2.5 = 6.5.
    # Trailing piece: G5 = 6.
    got = returns_to_go(REWARDS, TERMINALS, TIMEOUTS, GAMMA, "zero")
    assert got.dtype == np.float32
    assert got.tolist() == [2.75, 3.5, 3.0, 6.5, 5.0, 6.0]


def test_last_reward_tail_continues_cut_episodes_but_not_terminated_ones() -> None:
    # After a cut the last reward continues forever: G2 = 3/(1 − 0.5) = 6, G1 = 2 + 3 = 5, G0 = 1 + 2.5 = 3.5.
    # The terminated episode is unchanged; the trailing piece (a cut) gets G5 = 6/(1 − 0.5) = 12.
    got = returns_to_go(REWARDS, TERMINALS, TIMEOUTS, GAMMA, "last_reward")
    assert got.tolist() == [3.5, 5.0, 6.0, 6.5, 5.0, 12.0]


def test_one_online_episode_and_bad_tail() -> None:
    assert discounted_returns(np.array([1.0, 1.0]), terminated=True, gamma=0.9).tolist() == pytest.approx([1.9, 1.0])
    with pytest.raises(UserError, match="unknown time-out tail 'bootstrap'; accepted: zero, last_reward"):
        discounted_returns(np.array([1.0]), terminated=False, gamma=0.9, tail="bootstrap")


def test_next_actions_are_the_episodes_own_and_absent_at_its_end() -> None:
    actions = np.arange(12, dtype=np.float32).reshape(6, 2)
    got = next_actions(actions, TERMINALS, TIMEOUTS)
    assert got[0].tolist() == [2.0, 3.0] and got[1].tolist() == [4.0, 5.0] and got[3].tolist() == [8.0, 9.0]
    assert np.isnan(got[[2, 4, 5]]).all()  # cut, terminated, trailing: no next action in the data
