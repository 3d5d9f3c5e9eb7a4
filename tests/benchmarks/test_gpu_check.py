"""The prepared GPU check (benchmarks/gpu_check.py): without CUDA it says so and exits 0; on the CPU
(`--device cpu`) every part runs and reports real numbers. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from suite.errors import UserError


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_and_exits_0(capsys) -> None:
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_check: no CUDA device here") and "nothing to check" in out


def test_every_part_runs_on_the_cpu(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))  # the check points it at its own temp dir
    out_file = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--steps", "8", "--seeds", "2", "--updates", "2",
                           "--algos", "iql,awac", "--json", str(out_file)]) == 0
    printed = capsys.readouterr().out
    assert "gpu_check passed" in printed
    result = json.loads(out_file.read_text())
    assert [r["algo"] for r in result["training"]] == ["iql", "awac"]
    for row in result["training"]:
        assert row["steps"] == 12 and row["finite"] and row["steps_s"] > 0
        assert row["offline_score"] is not None and row["online_score"] is not None
    assert [r["algo"] for r in result["vectorized"]] == ["iql", "awac"]
    for vec in result["vectorized"]:  # the same seeds, batched: float rounding apart, the same training
        assert vec["seeds"] == 2 and vec["finite"] and vec["max_final_loss_gap"] < 1e-3
    assert [r["algorithm"] for r in result["throughput"]] == ["iql", "awac"]


@pytest.mark.parametrize("argv, needle", [(["--steps", "2"], "--steps >= 4"), (["--algos", "sac"], "'sac'"),
                                           (["--device", "tpu"], "'tpu'")])
def test_bad_arguments_are_one_line_errors(argv, needle, capsys) -> None:
    with pytest.raises(UserError, match="accepted"):
        gpu_check.parse_args(argv)
    assert gpu_check.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
