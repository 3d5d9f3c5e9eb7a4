"""Cal-QL: CQL's conservative term with the policy proposals lower-bounded by the returns-to-go, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from algo_testkit import make_algo, make_batch, networks, same_networks


def _lse(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


def _gap(algo, q_ood: torch.Tensor, q_data: torch.Tensor, rtg: torch.Tensor) -> tuple[float, float]:
    """CQL's own gap on the proposals as Cal-QL bounds them, and the bound rate."""
    batch = make_batch(b=2)._replace(rtg=rtg)
    bounded, metrics = algo.bound_proposals(q_ood, batch)
    return algo.conservative_gap(q_data, bounded, torch.zeros(2, 3)).item(), metrics["bound_rate"].item()


# One critic, two states, one proposal of each kind (uniform, π(·|s), π(·|s')); plain log-sum-exp (no importance
# weights) over the proposals and the dataset action, so the gap is easy to write down.
Q_OOD = torch.tensor([[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]])
Q_DATA = torch.tensor([[0.5, 0.5]])
RTG = torch.tensor([5.0, -10.0])  # binding for the first state (5 > 1, 2), not for the second


def test_bound_lifts_policy_proposals_below_the_return_to_go_and_leaves_the_rest() -> None:
    algo = make_algo("calql", cql_n_actions=1, cql_importance_sample=False)
    gap, rate = _gap(algo, Q_OOD, Q_DATA, RTG)
    # State 0: the policy proposals 1 and 2 become 5 and 5, the uniform one (0) stays. State 1: unchanged.
    expected = ((_lse(0.0, 5.0, 5.0, 0.5) - 0.5) + (_lse(0.0, 1.0, 2.0, 0.5) - 0.5)) / 2
    assert gap == pytest.approx(expected, rel=1e-6)
    assert rate == 0.5  # 2 of the 4 policy proposals were below their bound


def test_bound_is_off_online_with_calibrate_online_false_but_its_rate_still_reported() -> None:
    algo = make_algo("calql", cql_n_actions=1, cql_importance_sample=False, calibrate_online=False)
    algo.on_online_start(None)
    gap, rate = _gap(algo, Q_OOD, Q_DATA, RTG)
    assert gap == pytest.approx(_lse(0.0, 1.0, 2.0, 0.5) - 0.5, rel=1e-6)  # CQL's gap, both states alike
    assert rate == 0.5
    on = make_algo("calql", cql_n_actions=1, cql_importance_sample=False)  # the authors' default: stays on
    on.on_online_start(None)
    assert _gap(on, Q_OOD, Q_DATA, RTG)[0] > gap


def test_a_bound_that_never_binds_is_exactly_cql() -> None:
    batch = make_batch()
    results = []
    for name in ("cql", "calql"):
        algo = make_algo(name, cql_n_actions=4)
        torch.manual_seed(3)
        b = batch._replace(rtg=torch.full((16,), -math.inf)) if name == "calql" else batch
        metrics = {k: v.item() for k, v in algo.update(b).items()}
        results.append((metrics, networks(algo)))
    (cql_metrics, cql_nets), (calql_metrics, calql_nets) = results
    assert calql_metrics.pop("bound_rate") == 0.0
    assert calql_metrics == cql_metrics and same_networks(cql_nets, calql_nets)
    # A binding bound changes the critic's update.
    algo = make_algo("calql", cql_n_actions=4)
    torch.manual_seed(3)
    algo.update(batch._replace(rtg=torch.full((16,), 100.0)))
    assert not same_networks(cql_nets, networks(algo))


def test_returns_to_go_use_the_discount_and_the_configured_tail() -> None:
    rew, term, cut = np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([0.0, 1.0])
    zero = make_algo("calql", gamma=0.5).returns_to_go(rew, term, cut)
    assert zero.tolist() == [1.5, 1.0]
    last = make_algo("calql", gamma=0.5, rtg_timeout_tail="last_reward").returns_to_go(rew, term, cut)
    assert last.tolist() == [2.0, 2.0]  # G1 = 1/(1 − 0.5), G0 = 1 + 0.5·2
