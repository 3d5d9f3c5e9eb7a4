"""Sum-tree and the BC-divergence prioritized sampler: priorities, prefix sums, sampling frequencies,
importance weights, β annealing, determinism, state round trip, and use through the replay buffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suite.buffer import ReplayBuffer
from suite.errors import UserError
from suite.priority import (
    PrioritizedSampler,
    SumTree,
    anneal_beta,
    divergence_priority,
    importance_weights,
)


def test_priority_is_divergence_plus_eps_to_the_alpha() -> None:
    d = torch.tensor([0.0, 1.0, 3.0, -0.5])  # negative scores count as 0
    expected = [0.01**0.6, 1.01**0.6, 3.01**0.6, 0.01**0.6]
    assert divergence_priority(d, alpha=0.6, eps=0.01).tolist() == pytest.approx(expected)
    assert divergence_priority(d, alpha=0.0, eps=0.01).tolist() == [1.0] * 4  # α = 0: uniform


def test_sum_tree_total_update_and_prefix_lookup() -> None:
    tree = SumTree(5)  # padded to 8 leaves
    tree.update(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.total == 15.0
    # Prefix sums 1, 3, 6, 10, 15: mass m falls in leaf i when cumsum[i-1] <= m < cumsum[i].
    masses = np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.99, 6.0, 9.5, 10.0, 14.99])
    assert tree.find(masses).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    tree.update(np.array([2]), np.array([0.0]))  # a zero leaf is skipped
    assert tree.total == 12.0
    assert tree.find(np.array([2.9, 3.0, 3.5])).tolist() == [1, 3, 3]
    tree.update(np.array([0, 4]), np.array([10.0, 0.5]))
    assert tree.total == 16.5
    assert tree.get(np.array([0, 1, 4])).tolist() == [10.0, 2.0, 0.5]
    # Every inner node is the sum of its children.
    t = tree.tree
    assert all(t[i] == t[2 * i] + t[2 * i + 1] for i in range(1, tree.n_leaves))


def test_rebuild_equals_incremental_updates_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    a, b = SumTree(1000), SumTree(1000)
    for _ in range(50):
        idx = rng.choice(1000, size=rng.integers(1, 30), replace=False)
        a.update(idx, rng.random(len(idx)))
    b.set_leaves(np.arange(1000), a.leaves.copy())
    b.rebuild()
    assert np.array_equal(a.tree, b.tree)


def test_sum_tree_rejects_out_of_range_and_bad_capacity() -> None:
    with pytest.raises(IndexError):
        SumTree(4).update(np.array([4]), np.array([1.0]))
    with pytest.raises(UserError, match="capacity"):
        SumTree(0)


CHI2_4DOF_P001 = 18.47  # P(χ² > 18.47) = 0.001 with 4 degrees of freedom


def test_prefix_lookup_of_uniform_masses_matches_priorities() -> None:
    """Plain inverse-CDF sampling through the tree: chi-square fit of 200k uniform masses over 5 leaves."""
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    tree = SumTree(5)
    tree.update(np.arange(5), priorities)
    counts = np.bincount(tree.find(np.random.default_rng(0).random(200_000) * tree.total), minlength=5)
    expected = 200_000 * priorities / priorities.sum()
    assert ((counts - expected) ** 2 / expected).sum() < CHI2_4DOF_P001, (counts, expected)


def test_sampling_frequencies_match_priorities() -> None:
    """Chi-square goodness of fit with a fixed seed: 200k sampler draws over 5 leaves."""
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    sampler = PrioritizedSampler(8, score_fn=None, alpha=1.0, eps=1e-12)
    sampler.set_scores(torch.arange(5), torch.tensor(priorities))
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(5)
    for _ in range(200):
        idx, _ = sampler.sample(1000, 5, gen)
        counts += np.bincount(idx.numpy(), minlength=5)
    expected = 200_000 * priorities / priorities.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < CHI2_4DOF_P001, (counts, expected)  # stratified sampling only lowers the variance
    assert counts.sum() == 200_000


def test_importance_weights_and_beta_annealing() -> None:
    probs = np.array([0.5, 0.25, 0.125])
    w = importance_weights(probs, size=4, beta=0.5)
    raw = [(4 * 0.5) ** -0.5, (4 * 0.25) ** -0.5, (4 * 0.125) ** -0.5]
    assert w.tolist() == pytest.approx([r / max(raw) for r in raw])
    assert w.max() == 1.0
    assert anneal_beta(0, 0.4, 1000) == pytest.approx(0.4)
    assert anneal_beta(500, 0.4, 1000) == pytest.approx(0.7)
    assert anneal_beta(1000, 0.4, 1000) == 1.0
    assert anneal_beta(5000, 0.4, 1000) == 1.0


def test_sampler_weights_use_annealed_beta() -> None:
    sampler = PrioritizedSampler(4, score_fn=None, alpha=1.0, eps=1e-12, beta0=0.4, anneal_steps=100)
    sampler.set_scores(torch.arange(4), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    sampler.set_step(50)  # β = 0.7
    idx, w = sampler.sample(64, 4, torch.Generator().manual_seed(1))
    probs = np.array([1.0, 1.0, 2.0, 4.0])[idx.numpy()] / 8.0
    raw = (4 * probs) ** -0.7
    assert w.dtype == torch.float32
    assert w.numpy() == pytest.approx(raw / raw.max(), rel=1e-6)
    assert set(idx.tolist()) == {0, 1, 2, 3}


def test_sampling_is_deterministic_given_the_generator() -> None:
    sampler = PrioritizedSampler(100, score_fn=None)
    sampler.set_scores(torch.arange(100), torch.rand(100, generator=torch.Generator().manual_seed(3)))
    a = sampler.sample(32, 100, torch.Generator().manual_seed(7))
    b = sampler.sample(32, 100, torch.Generator().manual_seed(7))
    c = sampler.sample(32, 100, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # Global RNG is untouched by sampling.
    state = torch.get_rng_state()
    sampler.sample(32, 100, torch.Generator().manual_seed(7))
    assert torch.equal(state, torch.get_rng_state())


def test_state_dict_round_trip_reproduces_tree_and_draws() -> None:
    a = PrioritizedSampler(64, score_fn=None, beta0=0.4, anneal_steps=10)
    a.set_scores(torch.arange(40), torch.linspace(0, 3, 40))
    a.tree.update(np.array([7]), np.array([9.0]))
    a.set_step(5)
    b = PrioritizedSampler(64, score_fn=None, beta0=0.4, anneal_steps=10)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.tree.tree, b.tree.tree)
    assert (b.filled, b.step, b.beta) == (40, 5, a.beta)
    ga, gb = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for _ in range(3):
        (ia, wa), (ib, wb) = a.sample(16, 40, ga), b.sample(16, 40, gb)
        assert torch.equal(ia, ib) and torch.equal(wa, wb)


def test_sampler_in_replay_buffer_scores_new_transitions() -> None:
    """Through suite.buffer: priorities come from score_fn on add; batches carry weights and indices."""
    buffer = ReplayBuffer(10, obs_dim=2, act_dim=1)
    buffer.add_batch(np.zeros((4, 2)), np.zeros((4, 1)), np.zeros(4), np.zeros((4, 2)), np.zeros(4))
    score = lambda obs, act: act.abs().sum(-1)  # noqa: E731
    sampler = PrioritizedSampler(10, score, alpha=1.0, eps=0.5)
    sampler.set_scores(torch.arange(4), torch.zeros(4))  # the pre-existing part, scored in bulk
    buffer.sampler = sampler
    buffer.add(np.ones(2), np.array([2.5]), 1.0, np.ones(2), False)
    assert sampler.tree.get(np.array([0, 4])).tolist() == [0.5, 3.0]
    assert sampler.tree.total == pytest.approx(4 * 0.5 + 3.0)
    batch = buffer.sample(1000, torch.Generator().manual_seed(0))
    assert batch.index is not None and batch.weight is not None
    assert torch.equal(batch.act[:, 0], buffer.act[batch.index, 0])
    share = (batch.index == 4).float().mean().item()
    assert share == pytest.approx(3.0 / 5.0, abs=0.01)  # stratified: within one stratum of the exact share
    state = buffer.state_dict()
    assert state["sampler"]["priorities"].tolist() == [0.5] * 4 + [3.0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"alpha": -1.0}, "priority_alpha"), ({"eps": 0.0}, "priority_eps"), ({"beta0": 1.5}, "priority_beta0"),
])
def test_bad_sampler_parameters_are_user_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        PrioritizedSampler(4, score_fn=None, **kwargs)


def test_sampling_beyond_known_priorities_fails_loudly() -> None:
    sampler = PrioritizedSampler(8, score_fn=None)
    sampler.set_scores(torch.arange(3), torch.ones(3))
    with pytest.raises(RuntimeError, match="knows 3 transitions"):
        sampler.sample(4, 5, torch.Generator())
