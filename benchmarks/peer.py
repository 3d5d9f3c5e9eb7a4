"""The peer: d3rlpy 2.x's update on the identical configuration, in the same process as ours."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import BATCH, Transitions, our_config
from suite.errors import UserError


def import_d3rlpy() -> Any:
    """d3rlpy, with its import-time gym notice and its info logs silenced (warnings still show)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy
    except ImportError:
        raise UserError("d3rlpy is not installed: `pip install d3rlpy`, or pass --no-d3rlpy") from None
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def d3rlpy_config(name: str, cfg: Any) -> Any:
    """d3rlpy's config of algorithm `name` with every setting that shapes the update taken from our `cfg`."""
    if name not in ("iql", "cql", "awac"):
        raise UserError(f"d3rlpy has no {name!r}; it is compared on: iql, cql, awac")
    d3rlpy = import_d3rlpy()
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden))
    common = {"batch_size": BATCH, "gamma": cfg.gamma, "tau": cfg.tau, "n_critics": cfg.n_critics,
              "actor_encoder_factory": encoder, "critic_encoder_factory": encoder}
    if name == "iql":  # d3rlpy trains V with the critic's optimiser and lr (ours: value_lr == critic_lr)
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.critic_lr, expectile=cfg.expectile,
            weight_temp=cfg.temperature, max_weight=cfg.max_weight, value_encoder_factory=encoder, **common)
    if name == "cql":
        if cfg.max_target_backup or cfg.cql_lagrange or not cfg.cql_importance_sample:
            raise UserError("the CQL benchmark covers max_target_backup=False, cql_lagrange=False, "
                            "cql_importance_sample=True only")
        # alpha_learning_rate=0 with initial_alpha=1: α' fixed at 1 (ours without the Lagrange variant);
        # temp_learning_rate: the SAC temperature (ours tunes log α with the policy lr).
        return d3rlpy.algos.CQLConfig(
            actor_learning_rate=cfg.policy_lr, critic_learning_rate=cfg.critic_lr,
            temp_learning_rate=cfg.policy_lr if cfg.auto_entropy else 0.0, alpha_learning_rate=0.0,
            initial_alpha=1.0, conservative_weight=cfg.cql_alpha, n_action_samples=cfg.cql_n_actions,
            soft_q_backup=cfg.backup_entropy, max_q_backup=False, **common)
    # AWAC: one policy action per state for the advantage's V(s), as ours.
    return d3rlpy.algos.AWACConfig(
        actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.critic_lr, lam=cfg.awac_lambda,
        n_action_samples=1, **common)


def d3rlpy_steppers(name: str, data: Transitions, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """d3rlpy's update on a fresh minibatch from its own replay buffer, and on pre-sampled minibatches (its
    update alone: d3rlpy samples transition by transition in Python)."""
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    dataset = d3rlpy.dataset.MDPDataset(data.obs, data.act, data.rew.reshape(-1, 1),
                                        data.terminals, data.timeouts)
    algo = d3rlpy_config(name, our_config(name)).create(device="cpu:0")
    algo.build_with_dataset(dataset)
    pool = [dataset.sample_transition_batch(BATCH) for _ in range(16)]
    count = iter(range(sys.maxsize))
    return {
        "d3rlpy": lambda: algo.update(dataset.sample_transition_batch(BATCH)),
        "d3rlpy_update_only": lambda: algo.update(pool[next(count) % len(pool)]),
    }
