"""Dataset-quality variants in the id (suite/data/variants.py), on the synthetic hopper behaviour folder."""

from __future__ import annotations

import numpy as np
import pytest

from suite.data import canonical_dataset_id, check_dataset_id, load_dataset
from suite.data.dataset import ARRAY_FIELDS
from suite.errors import UserError

REPLAY = "local:hopper-medium-replay"  # 600 recorded random-action transitions, many short episodes


def _episodes(dataset) -> list[bytes]:
    """Every episode's arrays as one byte string, to compare episodes as wholes."""
    starts, stops = dataset.episode_bounds()
    return [b"".join(getattr(dataset, name)[a:b].tobytes() for name in ARRAY_FIELDS)
            for a, b in zip(starts, stops, strict=True)]


def test_fraction_keeps_whole_episodes_in_order_and_the_requested_share() -> None:
    base = load_dataset(REPLAY)
    part = load_dataset(f"{REPLAY}?fraction=0.3")
    originals, kept = _episodes(base), _episodes(part)
    positions = [originals.index(episode) for episode in kept]  # each kept episode is an original, whole
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    lengths = np.diff(np.append(base.episode_bounds()[0], len(base)))
    assert 0.3 * len(base) <= len(part) < 0.3 * len(base) + lengths.max()
    assert part.sha256 != base.sha256 and part.id == f"{REPLAY}?fraction=0.3"
    assert part.provenance["variant"] == "fraction=0.3" and part.provenance["variant_of_sha256"] == base.sha256
    # Seeded: the same id gives the same bytes, another variant seed another subset.
    assert load_dataset(f"{REPLAY}?fraction=0.3").sha256 == part.sha256
    assert load_dataset(f"{REPLAY}?fraction=0.3&seed=1").sha256 != part.sha256


def test_episodes_keeps_that_many_whole_episodes() -> None:
    base = load_dataset(REPLAY)
    part = load_dataset(f"{REPLAY}?episodes=5")
    kept = _episodes(part)
    assert len(kept) == 5 and all(episode in _episodes(base) for episode in kept)
    with pytest.raises(UserError, match=rf"episodes=1000 but {REPLAY} has {len(_episodes(base))} episodes"):
        load_dataset(f"{REPLAY}?episodes=1000")


def test_action_noise_changes_only_actions_clipped_and_seeded() -> None:
    base = load_dataset(REPLAY)
    noisy = load_dataset(f"{REPLAY}?action_noise=0.3")
    for name in ARRAY_FIELDS:
        if name != "actions":
            assert np.array_equal(getattr(noisy, name), getattr(base, name)), name
    assert not np.array_equal(noisy.actions, base.actions)
    assert noisy.actions.min() >= -1.0 and noisy.actions.max() <= 1.0  # Hopper's action bounds
    inside = (np.abs(noisy.actions) < 1.0)  # not clipped: the noise shows as it was drawn
    assert np.std((noisy.actions - base.actions)[inside]) == pytest.approx(0.3, rel=0.1)
    assert load_dataset(f"{REPLAY}?action_noise=0.3").sha256 == noisy.sha256
    assert load_dataset(f"{REPLAY}?action_noise=0.3&seed=7").sha256 != noisy.sha256


def test_variants_compose_subset_first_then_noise() -> None:
    both = load_dataset(f"{REPLAY}?fraction=0.5&action_noise=0.1")
    subset = load_dataset(f"{REPLAY}?fraction=0.5")
    assert len(both) == len(subset) and np.array_equal(both.observations, subset.observations)
    assert not np.array_equal(both.actions, subset.actions)
    assert both.id == f"{REPLAY}?action_noise=0.1&fraction=0.5"


def test_canonical_form_sorts_keys_normalises_values_and_drops_no_ops() -> None:
    assert canonical_dataset_id(f"{REPLAY}?fraction=0.50&action_noise=0.1") == \
        canonical_dataset_id(f"{REPLAY}?action_noise=.1&fraction=0.5") == f"{REPLAY}?action_noise=0.1&fraction=0.5"
    assert canonical_dataset_id(f"{REPLAY}?episodes=1e1&seed=0") == f"{REPLAY}?episodes=10"
    assert canonical_dataset_id(f"{REPLAY}?seed=02&episodes=3") == f"{REPLAY}?episodes=3&seed=2"
    assert canonical_dataset_id(f"{REPLAY}?fraction=1&action_noise=0&seed=3") == REPLAY
    assert canonical_dataset_id(REPLAY) == REPLAY and canonical_dataset_id("d4rl:hopper-medium-v2") == \
        "d4rl:hopper-medium-v2"
    assert load_dataset(f"{REPLAY}?fraction=1.0").sha256 == load_dataset(REPLAY).sha256


@pytest.mark.parametrize(("query", "expected"), [
    ("fraction=0", "dataset variant fraction='0' in .*: expected a number with 0 < fraction <= 1"),
    ("fraction=1.5", "fraction='1.5' .*expected a number with 0 < fraction <= 1"),
    ("fraction=most", "fraction='most' .*expected a number with 0 < fraction <= 1"),
    ("action_noise=-0.1", "action_noise='-0.1' .*expected a finite number >= 0"),
    ("action_noise=inf", "action_noise='inf' .*expected a finite number >= 0"),
    ("episodes=2.5", "episodes='2.5' .*expected an integer >= 1"),
    ("episodes=0", "episodes='0' .*expected an integer >= 1"),
    ("seed=-1", "seed='-1' .*expected an integer >= 0"),
    ("colour=red", "bad dataset variant 'colour=red' .*accepted: fraction=F .*episodes=N .*action_noise=SIGMA"),
    ("fraction", "bad dataset variant 'fraction' .*accepted"),
    ("fraction=0.1&fraction=0.2", "dataset variant 'fraction' given twice"),
    ("fraction=0.5&episodes=3", "fraction and episodes both choose a subset; give one"),
    ("", "ends in '\\?' without variants; accepted"),
])
def test_bad_variants_are_one_line_errors(query: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as info:
        check_dataset_id(f"{REPLAY}?{query}")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=expected):
        load_dataset(f"{REPLAY}?{query}")


def test_variants_of_an_unknown_dataset_name_the_dataset() -> None:
    with pytest.raises(UserError, match="quality one of"):
        check_dataset_id("local:hopper-great?fraction=0.5")
