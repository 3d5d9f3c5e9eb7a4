"""Smoke tests of benchmarks/throughput.py: its functions run with tiny repeat counts, count FLOPs as an
independent hand count does, and produce the table's columns. No timing is asserted (the machine is shared)."""

from __future__ import annotations

import pytest

from suite.errors import UserError


@pytest.fixture(scope="module")
def tp():
    """The benchmark modules under one name, as the tests knew the single script."""
    from types import SimpleNamespace

    from benchmarks import common, e2e, flops, peer, throughput, vectorized

    names = {}
    for module in (common, flops, peer, vectorized, e2e, throughput):
        names.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return SimpleNamespace(**names)


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
    data = tp.synthetic_transitions(2_000)
    assert tp.update_flops(tp.update_matmuls(tp.our_stepper("iql", data))) == expected
    behaviour_fwd, behaviour_dx = mlp_counts(17, 6)
    assert tp.update_flops(tp.update_matmuls(tp.our_stepper("baq", data))) == (
        expected + 2 * behaviour_fwd + behaviour_dx)


def test_cql_scores_every_proposal_with_the_twin_critic(tp) -> None:
    gemms = tp.update_matmuls(tp.our_stepper("cql", tp.synthetic_transitions(2_000)))
    # The trained twin critic's first layer sees the dataset action and 3 proposals × 10 actions per state.
    assert (2, (1 + 3 * 10) * 256, 17 + 6, 256) in gemms


@pytest.mark.parametrize("name", ["iql", "cql", "awac", "baq", "calql", "rebrac"])
def test_recorded_matmuls_are_torchs_flop_count(tp, name) -> None:
    # torch's FLOP counter counts the same update independently (forward and backward).
    from torch.utils.flop_counter import FlopCounterMode

    step, period = tp.our_stepper(name, tp.synthetic_transitions(2_000)), tp.update_period(name)
    step()
    gemms = tp.update_matmuls(step, period)
    with FlopCounterMode(display=False) as counter:
        for _ in range(period):
            step()
    assert counter.get_total_flops() == tp.update_flops(gemms) > 0


def test_calql_and_rebrac_are_timed_on_their_own_defaults(tp) -> None:
    data = tp.synthetic_transitions(2_000)
    # ReBRAC: batch 1024, 3×256 networks (a 256→256 layer in the twin critic and in the actor); its critic
    # target reads the dataset's next action, the next row's action as s' is the next row's state.
    assert tp.update_period("rebrac") == 2 and tp.update_period("iql") == 1  # its actor steps every 2nd update
    gemms = set(tp.update_matmuls(tp.our_stepper("rebrac", data), calls=2))
    assert {(2, 1024, 17 + 6, 256), (2, 1024, 256, 256), (1, 1024, 17, 256), (1, 1024, 256, 256)} <= gemms
    assert {rows for _, rows, _, _ in gemms if rows not in (6, 23, 256)} == {1024}
    assert tp.synthetic_extras(data, ("next_act",))["next_act"][:-1].tolist() == data.act[1:].tolist()
    # Cal-QL: CQL's twin critic scoring the dataset action and 3 × 10 proposals per state, batch 256.
    assert (2, 31 * 256, 17 + 6, 256) in tp.update_matmuls(tp.our_stepper("calql", data))
    assert tp.synthetic_extras(data, ("rtg",))["rtg"].shape == (2_000,)
    (row,) = tp.throughput_table(["rebrac"], updates=2, warmup=1, repeats=1, n_transitions=2_000)
    assert (row["algorithm"], row["batch"], row["d3rlpy_upd_s"], row["ratio"]) == ("rebrac", 1024, None, None)
    assert row["ours_upd_cpu_s"] > 0


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
    import torch

    a, w = torch.randn(8, 3, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    gemms = tp.update_matmuls(lambda: (a @ w).sum().backward())
    assert sorted(gemms) == sorted([(1, 8, 3, 4), (1, 8, 4, 3), (1, 3, 8, 4)])  # forward, ∂a, ∂w
    cache: dict = {}
    roof = tp.roofline(gemms, cache, repeats=1)
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
    table = tp.markdown_table(rows, tp.ROW_KEYS).splitlines()
    assert table[0] == "| " + " | ".join(tp.ROW_KEYS) + " |"
    assert len(table) == 2 + len(rows) and table[-1].startswith("| baq (ours) | 2 | 256 |")


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
    for key in ("evaluation", "env_steps", "checkpoints", "set_up", "final_outputs", "tracking"):
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
