"""The one matrix-file parser (suite/matrix_spec.py): torch-free, and what its three readers (the runner's cells,
the report's expected cells, the analysis of a bundle's matrix.json) make of a file agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.report import matrix_from_file
from analysis.runs import flatten_overrides, override_column
from analysis.scores import _expected_variants
from suite.algorithm import _REGISTRY, _load_all
from suite.algorithm_names import algorithm_names
from suite.matrix import load_matrix
from suite.matrix_spec import ExpectedCells, read_spec

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
BUDGET = "[budget]\noffline_steps = 30\nonline_steps = 20\neval_interval = 10\neval_episodes = 1\nutd = 1\n"


def test_the_spec_and_its_readers_import_without_torch() -> None:
    code = ("import sys; import suite.matrix_spec, analysis.report, analysis.scores; "
            "spec = suite.matrix_spec.read_spec(sys.argv[1]); spec.expected(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code, str(EXPERIMENTS / "ablation_small.toml")], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_algorithm_names_without_importing_them_are_the_registry() -> None:
    _load_all()
    assert algorithm_names() == sorted(_REGISTRY)


@pytest.mark.parametrize("name", ["ablation_small.toml", "switch.toml", "ablation_schedule.toml",
                                  "data_quality.toml"])
def test_runner_report_and_scores_expect_the_same_cells(name: str) -> None:
    matrix = load_matrix(EXPERIMENTS / name)
    experiment, expected = matrix_from_file(EXPERIMENTS / name)
    assert experiment == matrix.name
    cells = matrix.cells()
    assert expected["datasets"] == matrix.datasets == list(dict.fromkeys(c.dataset for c in cells))
    assert expected["seeds"] == sorted({c.seed for c in cells})
    assert expected["algorithms"] == list(dict.fromkeys(c.algo for c in cells))
    for algo in expected["algorithms"]:
        # The runner's variants of `algo`, in the order it trains them: each (dataset, seed) block repeats them.
        runner = []
        for cell in cells:
            if cell.algo == algo and cell.overrides not in runner:
                runner.append(cell.overrides)
        assert expected["variants"][algo] == runner
    # The analysis of the JSON form (a bundle's matrix.json) expects one row per runner variant.
    rows = _expected_variants(ExpectedCells.from_dict(json.loads(json.dumps(expected))))
    flat = [{"algorithm": c.algo, **{override_column(k): v for k, v in flatten_overrides(c.overrides).items()}}
            for c in cells if c.dataset == matrix.datasets[0] and c.seed == matrix.seeds[0]]
    got = [{k: v for k, v in row.items() if v == v} for row in rows.to_dict("records")]  # NaN: not this algo's
    assert got == flat


def test_the_committed_bundle_matrix_is_what_the_matrix_file_exports() -> None:
    committed = (ROOT / "results" / "switch" / "runs" / "matrix.json").read_text()
    _, expected = matrix_from_file(EXPERIMENTS / "switch.toml")
    assert json.dumps(expected, indent=1, sort_keys=True) + "\n" == committed  # suite.bundle.write_bundle's form
    assert ExpectedCells.from_dict(json.loads(committed)) == read_spec(EXPERIMENTS / "switch.toml").expected()


def test_the_report_expects_the_canonical_dataset_spelling_the_runner_trains(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('algorithms = ["iql"]\ndatasets = ["d4rl:hopper-medium-v2?fraction=0.50&action_noise=.1"]\n'
                    "seeds = [0]\n" + BUDGET)
    _, expected = matrix_from_file(path)
    assert expected["datasets"] == [c.dataset for c in load_matrix(path).cells()] == [
        "d4rl:hopper-medium-v2?action_noise=0.1&fraction=0.5"]


def test_restrict_keeps_a_spec_a_spec_and_a_matrix_a_matrix(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('algorithms = ["iql", "awac"]\ndatasets = ["d4rl:hopper-medium-v2"]\nseeds = [0, 1]\n' + BUDGET)
    spec = read_spec(path).restrict(["algo=awac"])
    assert type(spec).__name__ == "MatrixSpec" and spec.expected().algorithms == ["awac"]
    matrix = load_matrix(path)
    assert [c.algo for c in matrix.cells()] == ["iql", "iql", "awac", "awac"]
    assert [c.algo for c in matrix.restrict(["algo=awac"]).cells()] == ["awac", "awac"]
