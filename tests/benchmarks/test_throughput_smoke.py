"""Smoke tests of benchmarks/throughput.py: its functions run with tiny repeat counts, count FLOPs as an
independent hand count does, and produce the table's columns. No timing is asserted (the machine is shared)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from suite.errors import UserError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("throughput_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def linear(d_in: int, d_out: int, rows: int = 256) -> int:
    return 2 * rows * d_in * d_out


def mlp_counts(d_in: int, d_out: int, rows: int = 256) -> tuple[int, int]:
    """(forward FLOPs, input-gradient FLOPs past the first layer) of a d_in→256→256→d_out MLP."""
    forward = linear(d_in, 256, rows) + linear(256, 256, rows) + linear(256, d_out, rows)
    return forward, linear(256, 256, rows) + linear(256, d_out, rows)


def test_iql_flops_match_a_hand_count(tp) -> None:
    critic_fwd, critic_dx = mlp_counts(17 + 6, 1)
    value_fwd, value_dx = mlp_counts(17, 1)
    actor_fwd, actor_dx = mlp_counts(17, 6)
    expected = (
        2 * critic_fwd  # target twin critic on (s, a), no backward
        + 2 * (2 * critic_fwd + critic_dx)  # twin critic: forward, weight grads (= forward), input grads
        + (2 * value_fwd + value_dx) + value_fwd  # V(s) trained, V(s') for the TD target
        + (2 * actor_fwd + actor_dx)  # actor: log π(a|s), trained
    )
    assert tp.update_flops(tp.network_passes("iql", tp.our_config("iql"))) == expected
    behaviour_fwd, behaviour_dx = mlp_counts(17, 6)
    assert tp.update_flops(tp.network_passes("baq", tp.our_config("baq"))) == (
        expected + 2 * behaviour_fwd + behaviour_dx)


def test_cql_passes_score_every_proposal_with_the_twin_critic(tp) -> None:
    passes = tp.network_passes("cql", tp.our_config("cql"))
    trained_critic = [p for p in passes if p.members == 2 and p.grad == "params"]
    assert [p.rows for p in trained_critic] == [1 + 3 * 10]  # dataset action + 3 proposals × 10 actions
    frozen = next(p for p in passes if p.grad == "inputs")
    # Gradients reach the inputs only: one forward and one input-gradient matmul per layer, no weight grads.
    gemms = tp.pass_gemms(frozen, batch=4)
    assert len(gemms) == 2 * 3
    assert sum(tp.gemm_flops(g) for g in gemms) == 2 * 2 * sum(
        linear(i, o, 4) for i, o in ((23, 256), (256, 256), (256, 1)))


@pytest.mark.parametrize("name", ["iql", "cql", "awac", "baq"])
def test_flop_tables_equal_the_matmuls_an_update_runs(tp, name) -> None:
    # The tables are read off each `update` by hand; torch's FLOP counter counts the matmuls a real update
    # runs (forward and backward), so a pass added, removed or resized in the code fails here.
    from torch.utils.flop_counter import FlopCounterMode

    step = tp.our_stepper(name, tp.synthetic_transitions(2_000))
    with FlopCounterMode(display=False) as counter:
        step()
    assert counter.get_total_flops() == tp.update_flops(tp.network_passes(name, tp.our_config(name)))


def test_unknown_algorithm_is_a_user_error(tp) -> None:
    with pytest.raises(UserError, match="'sac'.*accepted: iql, cql, awac, baq"):
        tp.parse_args(["--algos", "iql,sac"])
    with pytest.raises(UserError, match="--updates must be a positive integer, got 0"):
        tp.parse_args(["--updates", "0"])


def test_main_prints_a_one_line_error(tp, capsys) -> None:
    assert tp.main(["--algos", "nope", "--no-d3rlpy", "--no-e2e"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown algorithm 'nope'") and "\n" not in err


def test_roofline_is_flops_over_summed_matmul_time(tp) -> None:
    passes = [tp.Pass("tiny", 3, 2, (4,), rows=1, grad="params")]
    cache: dict = {}
    roof = tp.roofline(passes, cache, repeats=1, batch=8)
    gemms = tp.pass_gemms(passes[0], batch=8)
    assert set(cache) == set(gemms)
    assert roof["flops"] == sum(tp.gemm_flops(g) for g in gemms)
    assert roof["gflop_s"] == pytest.approx(roof["flops"] / sum(cache.values()) / 1e9)


def test_table_without_d3rlpy_has_the_expected_columns(tp) -> None:
    rows = tp.throughput_table(["iql", "baq"], updates=2, warmup=1, repeats=1, with_d3rlpy=False,
                               n_transitions=2_000)
    assert [r["algorithm"] for r in rows] == ["iql", "baq (ours)"]
    for row in rows:
        assert set(tp.ROW_KEYS) <= set(row)
        assert row["ours_upd_s"] > 0 and row["ours_upd_cpu_s"] > 0
        assert row["d3rlpy_upd_s"] is None and row["ratio"] is None
        assert row["achieved_gflop_s"] == pytest.approx(row["mflop_per_update"] * row["ours_upd_cpu_s"] / 1e3)
        assert row["roofline_fraction"] == pytest.approx(row["achieved_gflop_s"] / row["roofline_gflop_s"])
    table = tp.markdown_table(rows).splitlines()
    assert table[0] == "| " + " | ".join(tp.ROW_KEYS) + " |"
    assert len(table) == 2 + len(rows) and table[-1].startswith("| baq (ours) | 2 |")


def test_d3rlpy_row_uses_the_identical_config(tp) -> None:
    pytest.importorskip("d3rlpy")
    cql, ours = tp.d3rlpy_config("cql", tp.our_config("cql")), tp.our_config("cql")
    assert (cql.conservative_weight, cql.n_action_samples, cql.alpha_learning_rate) == (ours.cql_alpha, 10, 0.0)
    assert (cql.actor_learning_rate, cql.critic_learning_rate) == (ours.policy_lr, ours.critic_lr)
    assert cql.critic_encoder_factory.hidden_units == [256, 256] and cql.batch_size == 256
    iql = tp.d3rlpy_config("iql", tp.our_config("iql"))
    assert (iql.expectile, iql.weight_temp, iql.n_critics) == (0.7, 3.0, 2)
    with pytest.raises(UserError, match="d3rlpy has no 'baq'"):
        tp.d3rlpy_config("baq", tp.our_config("baq"))
    rows = tp.throughput_table(["awac"], updates=2, warmup=1, repeats=1, n_transitions=3_000)
    row = rows[0]
    assert row["ratio"] == pytest.approx(row["ours_upd_s"] / row["d3rlpy_upd_s"])
    assert row["ratio_cpu"] == pytest.approx(row["ours_upd_cpu_s"] / row["d3rlpy_upd_cpu_s"])


def test_end_to_end_overhead_breakdown(tp, tiny_dataset_id: str) -> None:
    cfg = tp.E2EConfig(algo="iql", dataset=tiny_dataset_id, offline_steps=12, online_steps=8, eval_interval=10,
                       eval_episodes=1, log_interval=5, checkpoint_interval=15)
    e2e = tp.end_to_end(cfg, tracking="memory")
    parts = e2e["breakdown_s"]
    assert e2e["overhead"] == pytest.approx(e2e["run_wall_s"] / e2e["bare_wall_s"] - 1)
    # Evaluations at 10 and 20, online env steps 13..20, one checkpoint at 15: every timer saw work.
    for key in ("evaluation", "env_steps", "checkpoints", "dataset_load", "final_outputs", "tracking"):
        assert parts[key] > 0, key
    assert parts["other"] == pytest.approx(e2e["run_wall_s"] - e2e["bare_wall_s"]
                                           - sum(v for k, v in parts.items() if k != "other"))
    assert 0 < e2e["metrics_logging_share"] <= e2e["tracking_share"] < 1
    # The run's own sampling + update time: positive, less than the run, and the in-run overhead is the rest.
    assert 0 < e2e["updates_in_run_s"] < e2e["run_wall_s"]
    assert e2e["overhead_in_run"] == pytest.approx(e2e["run_wall_s"] / e2e["updates_in_run_s"] - 1)
    from suite.algorithm import get_algorithm
    from suite.buffer import ReplayBuffer

    assert "update" not in vars(get_algorithm("iql")) and ReplayBuffer.sample.__name__ == "sample"  # unpatched
    report = tp.e2e_report(e2e)
    assert "overhead" in report and "in the same run" in report


def test_vectorize_table_compares_the_same_seeds(tp) -> None:
    rows = tp.vectorize_table(["iql"], seeds=2, updates=2, warmup=1, repeats=1, n_transitions=2_000)
    (row,) = rows
    assert row["algo"] == "iql" and row["seeds"] == 2 and row["device"] == "cpu"
    assert row["separate_seed_upd_s"] > 0 and row["vectorized_seed_upd_s"] > 0
    assert row["ratio"] == pytest.approx(row["vectorized_seed_upd_s"] / row["separate_seed_upd_s"])
    with pytest.raises(UserError, match="--vectorize-seeds must be >= 2, got 1"):
        tp.parse_args(["--vectorize-seeds", "1"])
