"""Smoke tests of benchmarks/update_profile.py: it attributes matmul kernels (and only them) to the in-situ
matmul time and derives its columns consistently. No timing is asserted (the machine is shared)."""

from __future__ import annotations

import pytest
import torch

from suite.errors import UserError


@pytest.fixture(scope="module")
def up():
    from benchmarks import update_profile

    return update_profile


def test_only_matmul_kernels_count_as_matmul_time(up) -> None:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    assert up.matmul_seconds_in_situ(lambda: torch.relu(a + b), 3) == 0.0
    assert up.matmul_seconds_in_situ(lambda: torch.relu(a @ b), 3) > 0.0
    ensemble = torch.randn(2, 64, 64)
    assert up.matmul_seconds_in_situ(lambda: torch.baddbmm(ensemble, ensemble, ensemble), 3) > 0.0


def test_dispatched_ops_counts_each_kernel_call(up) -> None:
    a = torch.randn(8, 8)
    assert up.dispatched_ops(lambda: torch.relu(a @ a)) == 2  # mm, relu
    assert up.dispatched_ops(lambda: torch.relu(a @ a).add_(1.0).sum()) == 4


def test_rows_split_the_update_into_matmuls_and_the_rest(up) -> None:
    rows = up.profile_table(["iql", "awac"], [8, 32], updates=2, n_transitions=2_000)
    assert [(r["algorithm"], r["batch"]) for r in rows] == [("iql", 8), ("iql", 32), ("awac", 8), ("awac", 32)]
    for r in rows:
        assert set(up.KEYS) == set(r)
        assert r["matmul_in_situ_ms"] > 0 and r["matmul_isolated_ms"] > 0
        assert r["rest_ms"] == pytest.approx(r["update_ms"] - r["matmul_in_situ_ms"])
        assert r["ceiling"] == pytest.approx(r["matmul_isolated_ms"] / r["matmul_in_situ_ms"])
        assert r["roofline_fraction"] == pytest.approx(r["matmul_isolated_ms"] / r["update_ms"])
        assert r["ops_per_update"] > 100  # forward, backward and Adam of four networks
    # the isolated time is the roofline's: a bigger batch means bigger matmuls
    assert rows[1]["matmul_isolated_ms"] > rows[0]["matmul_isolated_ms"]


@pytest.mark.parametrize("argv, bad", [(["--batches", "0"], "[0]"), (["--batches", "a,2"], "'a,2'"),
                                        (["--updates", "1"], "got 1"), (["--algos", "sac"], "'sac'")])
def test_bad_arguments_are_one_line_errors(up, capsys, argv, bad) -> None:
    with pytest.raises(UserError, match="accepted|must be"):
        up.parse_args(argv)
    assert up.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert bad in err and len(err.splitlines()) == 1
