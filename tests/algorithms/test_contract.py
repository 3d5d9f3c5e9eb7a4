"""The contract of suite/algorithm.py, kept by every algorithm: an update moves every network and returns finite
detached scalars; it is reproducible from a seed and from a state dict; `critic_weight` weights each sample's
critic (TD) loss; `actor_penalty` reaches the actor alone; training runs offline → online through suite.train and
resumes exactly; bad configs are user errors.

BAQ (on an IQL base) joins the update tests with its own offline critic weights and penalty switched on, so that
a caller's weight and penalty are composed with BAQ's. It has no critic loss of its own to take a gradient of,
and its checkpoint round trip, training run with resume and config errors are tested in test_baq.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from algo_testkit import make_algo, make_batch, networks, same, same_networks

from suite import checkpoint
from suite.algorithm import Algorithm, Batch, algorithm_names, get_algorithm, make_config
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import TrainConfig, train


def _no_check(algo: Algorithm) -> None:
    pass


@dataclass(frozen=True)
class Contract:
    """What differs between the algorithms in the contract tests."""

    networks: frozenset[str]  # the nn.Modules among `modules()`: every one must move in an update
    metrics: frozenset[str]  # keys every update returns (at least)
    stochastic: bool  # the update draws from the global RNG: reseed before two updates that must agree
    actor: str = "actor"  # the policy's name in `modules()`
    overrides: dict = field(default_factory=dict)  # config on top of algo_testkit.TINY
    # Single parameters that must move too (their module moving is not enough), by name.
    own_parameters: Callable[[Algorithm], dict[str, torch.Tensor]] = lambda algo: {}
    # The per-sample weighted TD loss of `critic_loss(batch, critic_weight)`.
    td_loss: Callable[[Algorithm, Batch, torch.Tensor], torch.Tensor] | None = None
    logged: tuple[str, ...] = ()  # losses that suite.train logs every log_interval
    check_trained: Callable[[Algorithm], None] = _no_check  # more on the algorithm reloaded from final.pt
    actor_target: str | None = None  # a target network that follows the actor (ReBRAC's), moved by a penalty too


def _cql_trained(algo: Algorithm) -> None:
    assert algo.updates == 100 and algo.cql_alpha == algo.cfg.cql_alpha_online


IQL_METRICS = frozenset({"value_loss", "critic_loss", "actor_loss", "q_mean", "v_mean", "adv_mean"})
CONTRACTS = {
    "iql": Contract(
        networks=frozenset({"critic", "critic_target", "value", "actor"}), metrics=IQL_METRICS, stochastic=False,
        td_loss=lambda algo, batch, weight: algo.critic_loss(batch, weight)[0],
        logged=("train/critic_loss", "train/value_loss", "train/actor_loss")),
    "cql": Contract(
        networks=frozenset({"critic", "critic_target", "actor", "temperatures"}),
        metrics=frozenset({"critic_loss", "td_loss", "cql_gap", "actor_loss", "alpha_loss", "alpha", "log_pi",
                           "q_mean"}),
        stochastic=True, own_parameters=lambda algo: {"log_alpha": algo.temperatures["log_alpha"]},
        td_loss=lambda algo, batch, weight: algo.critic_loss(batch, weight)[1]["td_loss"],  # not the CQL term
        logged=("train/critic_loss", "train/actor_loss", "train/cql_gap"), check_trained=_cql_trained),
    "awac": Contract(
        networks=frozenset({"critic", "critic_target", "actor"}),
        metrics=frozenset({"critic_loss", "actor_loss", "q_mean", "adv_mean"}), stochastic=True,
        td_loss=lambda algo, batch, weight: algo.critic_loss(batch, weight)[0],
        logged=("train/critic_loss", "train/actor_loss")),
    "baq": Contract(
        networks=frozenset({"base.critic", "base.critic_target", "base.value", "base.actor", "behavior"}),
        metrics=IQL_METRICS | {"bc_loss", "divergence_raw", "divergence_mean", "critic_weight_mean", "sigma",
                               "kappa", "lambda", "actor_penalty"},
        stochastic=False, actor="base.actor", overrides={"weight_offline": True, "penalty_offline": True}),
    # Cal-QL is CQL's update with the bound: the same networks and metrics, plus how often the bound binds.
    "calql": Contract(
        networks=frozenset({"critic", "critic_target", "actor", "temperatures"}),
        metrics=frozenset({"critic_loss", "td_loss", "cql_gap", "actor_loss", "alpha_loss", "alpha", "log_pi",
                           "q_mean", "bound_rate"}),
        stochastic=True, own_parameters=lambda algo: {"log_alpha": algo.temperatures["log_alpha"]},
        td_loss=lambda algo, batch, weight: algo.critic_loss(batch, weight)[1]["td_loss"],
        logged=("train/critic_loss", "train/actor_loss", "train/cql_gap", "train/bound_rate"),
        check_trained=_cql_trained),
    # ReBRAC's first update steps the actor and both targets too (every policy_freq-th update does).
    "rebrac": Contract(
        networks=frozenset({"critic", "critic_target", "actor", "actor_target"}),
        metrics=frozenset({"critic_loss", "q_mean", "critic_bc", "actor_loss", "actor_bc", "beta_actor"}),
        stochastic=True,
        td_loss=lambda algo, batch, weight: algo.critic_loss(batch, torch.zeros_like(batch.act), 0.01, weight)[0],
        logged=("train/critic_loss", "train/actor_loss"), check_trained=lambda algo: _rebrac_trained(algo),
        actor_target="actor_target"),
}
ALL = list(CONTRACTS)
WITH_CRITIC_LOSS = [name for name, c in CONTRACTS.items() if c.td_loss is not None]
TRAINED = [name for name, c in CONTRACTS.items() if c.logged]
BASES = ["iql", "cql", "awac", "calql", "rebrac"]  # (test_baq.py has BAQ's own checkpoint round trip)


def _rebrac_trained(algo: Algorithm) -> None:
    assert algo.updates == 100 and algo.online and algo.online_step == 50


def batch_for(name: str, b: int = 16, seed: int = 1) -> Batch:
    """`make_batch` with the optional fields the algorithm reads (returns-to-go, next actions)."""
    return make_batch(b, seed, fields=get_algorithm(name).batch_fields)


def make(name: str, seed: int = 0) -> Algorithm:
    return make_algo(name, seed, **CONTRACTS[name].overrides)


def reseed(name: str, seed: int) -> None:
    if CONTRACTS[name].stochastic:
        torch.manual_seed(seed)


def scalars(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: v.item() for k, v in metrics.items()}


def test_every_registered_algorithm_has_a_contract() -> None:
    assert sorted(CONTRACTS) == algorithm_names()
    assert sorted(WITH_CRITIC_LOSS) == sorted(TRAINED) == sorted(BASES) and sorted(ALL) == sorted([*BASES, "baq"])


# --- one update -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_update_changes_every_network_and_returns_finite_detached_scalars(name: str) -> None:
    contract = CONTRACTS[name]
    algo = make(name)
    before = networks(algo)
    own = {key: p.detach().clone() for key, p in contract.own_parameters(algo).items()}
    metrics = algo.update(batch_for(name))
    assert set(before) == contract.networks
    after = networks(algo)
    for key, old in before.items():
        assert not same(old, after[key]), key
    for key, p in contract.own_parameters(algo).items():
        assert not torch.equal(own[key], p), key
    assert set(metrics) >= contract.metrics
    for key, value in metrics.items():
        assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value), key


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_metrics_and_parameters(name: str) -> None:
    runs = []
    for _ in range(2):
        algo = make(name, seed=4)
        reseed(name, 5)
        metrics = [scalars(algo.update(batch_for(name, seed=s))) for s in range(3)]
        runs.append((metrics, networks(algo)))
    assert runs[0][0] == runs[1][0]
    assert same_networks(runs[0][1], runs[1][1])


@pytest.mark.parametrize("name", BASES)
def test_state_dict_round_trip_gives_same_actions_and_next_update(name: str, tmp_path: Path) -> None:
    algo = make(name)
    for s in range(2):
        algo.update(batch_for(name, seed=s))
    checkpoint.save(tmp_path / "algo.pt", algo.state_dict())
    clone = make(name, seed=123)
    clone.load_state_dict(checkpoint.load(tmp_path / "algo.pt"))
    obs = batch_for(name, seed=7).obs
    assert torch.equal(algo.act(obs, deterministic=True), clone.act(obs, deterministic=True))
    batch = batch_for(name, seed=8)
    reseed(name, 11)
    m1 = algo.update(batch)
    reseed(name, 11)
    m2 = clone.update(batch)
    assert scalars(m1) == scalars(m2)
    assert same_networks(networks(algo), networks(clone))


# --- critic weights and actor penalty ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_critic_weight_of_ones_equals_no_weight(name: str) -> None:
    batch = batch_for(name)
    results = []
    for weight in (None, torch.ones(16)):
        algo = make(name, seed=2)
        reseed(name, 6)
        metrics = algo.update(batch, critic_weight=weight)
        results.append((scalars(metrics), networks(algo)))
    assert results[0][0] == results[1][0]
    assert same_networks(results[0][1], results[1][1])


@pytest.mark.parametrize("name", WITH_CRITIC_LOSS)
def test_zero_critic_weight_removes_the_sample_from_the_td_gradient(name: str) -> None:
    algo = make(name)
    td_loss = CONTRACTS[name].td_loss
    batch = batch_for(name)
    changed = batch._replace(rew=batch.rew.clone().index_fill_(0, torch.tensor([3]), 1e3))

    def td_grad(b: Batch, weight: torch.Tensor) -> list[torch.Tensor]:
        algo.critic.zero_grad()
        reseed(name, 0)
        td_loss(algo, b, weight).backward()
        return [p.grad.clone() for p in algo.critic.parameters()]

    zero_at_3 = torch.ones(16).index_fill_(0, torch.tensor([3]), 0.0)
    assert same(td_grad(batch, zero_at_3), td_grad(changed, zero_at_3))
    assert not same(td_grad(batch, torch.ones(16)), td_grad(changed, torch.ones(16)))


@pytest.mark.parametrize("name", ALL)
def test_actor_penalty_changes_only_the_actor(name: str) -> None:
    actor = CONTRACTS[name].actor
    batch = batch_for(name)
    results = []
    for penalty in (None, lambda obs, actor: 10.0 * actor.deterministic(obs).pow(2).sum(-1)):
        algo = make(name, seed=2)
        reseed(name, 6)
        metrics = algo.update(batch, actor_penalty=penalty)
        results.append((metrics, networks(algo)))
    assert "actor_penalty" in results[1][0] and results[1][0]["actor_penalty"].item() > 0
    (_, without), (_, with_penalty) = results
    assert actor in without
    policy = {actor, CONTRACTS[name].actor_target}
    assert same_networks({k: v for k, v in without.items() if k not in policy},
                         {k: v for k, v in with_penalty.items() if k not in policy})
    assert not same(without[actor], with_penalty[actor])


# --- config and training ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "params", "match"), [
    ("cql", {"cql_n_actions": 0}, "cql_n_actions"),
    ("cql", {"cql_temp": 0.0}, "cql_temp"),
    ("awac", {"awac_lambda": 0.0}, "awac_lambda"),
    ("iql", {"expectile": 1.5}, r"expectile must be in \(0, 1\), got 1.5"),
    ("iql", {"temperature": -1.0}, "temperature must be >= 0"),
    ("iql", {"max_weight": 0.0}, "max_weight must be > 0"),
    ("iql", {"actor_dropout": 1.0}, r"actor_dropout must be in \[0, 1\)"),
    # The shared range checks (suite.algorithm.check_common_params) reach every algorithm.
    ("iql", {"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
    ("cql", {"tau": 0.0}, r"tau must be in \(0, 1\], got 0.0"),
    ("awac", {"critic_lr": -3e-4}, "critic_lr must be > 0, got -0.0003"),
    ("cql", {"hidden": []}, "hidden must be a non-empty list of positive layer widths"),
    ("iql", {"hidden": [256, 0]}, r"hidden must be .* got \[256, 0\]"),
    ("awac", {"n_critics": 0}, "n_critics must be >= 1, got 0"),
    ("baq", {"behavior_lr": 0.0}, "behavior_lr must be > 0"),
    ("calql", {"rtg_timeout_tail": "bootstrap"}, "unknown rtg_timeout_tail 'bootstrap' for calql; accepted: zero"),
    ("calql", {"cql_temp": 0.0}, "cql_temp must be > 0"),  # CQL's own checks reach Cal-QL
    ("rebrac", {"policy_freq": 0}, "policy_freq must be a positive integer, got 0"),
    ("rebrac", {"actor_bc_coef": -0.1}, "actor_bc_coef must be >= 0"),
    ("rebrac", {"min_decay_coef": 1.5}, r"min_decay_coef must be in \[0, 1\]"),
])
def test_bad_config_is_a_user_error(name: str, params: dict, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        make_config(name, params)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", TRAINED)
def test_offline_to_online_training_checkpoint_and_resume(name: str, tiny_dataset_id: str, tmp_path: Path) -> None:
    contract = CONTRACTS[name]
    cfg = TrainConfig(algo=name, dataset=tiny_dataset_id, offline_steps=50, online_steps=50, batch_size=32,
                      eval_interval=1000, eval_episodes=1, log_interval=25, checkpoint_interval=75,
                      max_episode_steps=50, algo_params={"hidden": [32, 32]})
    full_sink = MemorySink()
    result = train(cfg, full_sink, run_dir=tmp_path / "full")
    assert [e["step"] for e in result.evals] == [50, 100]
    assert all(np.isfinite(e["return"]) for e in result.evals)
    # Resuming from the mid-online checkpoint (step 75) must reproduce the uninterrupted run exactly.
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "checkpoint.pt").write_bytes((tmp_path / "full" / "checkpoint.pt").read_bytes())
    resumed_sink = MemorySink()
    assert train(cfg, resumed_sink, run_dir=tmp_path / "resumed").evals == result.evals
    for key in contract.logged:
        assert [step for step, _ in full_sink.metrics[key]] == [25, 50, 75, 100]
        assert resumed_sink.metrics[key] == full_sink.metrics[key][-1:]  # only step 100 was re-run
    saved = checkpoint.load(tmp_path / "full" / "final.pt")
    algo = get_algorithm(name)(make_config(name, {"hidden": (32, 32)}), saved["obs_mean"].shape[0], 3)
    algo.load_state_dict(saved["algo"])
    contract.check_trained(algo)
    obs = torch.randn(4, saved["obs_mean"].shape[0])
    assert torch.isfinite(algo.act(obs)).all() and algo.act(obs).abs().max() <= 1.0
