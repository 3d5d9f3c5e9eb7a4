"""The suite's main job end to end: a real tiny matrix run by the runner, then its report from MLflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from analysis.report import report_cli
from suite.matrix import load_matrix
from suite.runner import run_matrix

MATRIX = """
name = "e2e"
algorithms = ["iql", "baq"]
datasets = ["{dataset}"]
seeds = [0, 1]

[budget]
offline_steps = 30
online_steps = 20
eval_interval = 10
eval_episodes = 1
utd = 1
log_interval = 10
checkpoint_interval = 20
max_episode_steps = 25
batch_size = 16
"""


def test_matrix_then_report(tiny_dataset_id: str, tmp_path: Path) -> None:
    matrix_file = tmp_path / "e2e.toml"
    matrix_file.write_text(MATRIX.format(dataset=tiny_dataset_id))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_matrix(load_matrix(matrix_file), workers=2, tracking_uri=uri, results_dir=tmp_path / "results",
                      live=False) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert sorted((r.data.tags["baq.algo"], r.data.tags["baq.seed"]) for r in runs) == [
        ("baq", "0"), ("baq", "1"), ("iql", "0"), ("iql", "1")]

    assert report_cli(str(matrix_file), tracking_uri=uri, seed=0, reps=50, out_root=tmp_path / "out") == 0
    out = tmp_path / "out" / "e2e"
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["run_id"]) == {r.info.run_id for r in runs}
    # Every eval of every run, and the scores are the ones MLflow holds.
    assert len(scores) == 4 * 5
    for run in runs:
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/normalized_score")}
        mine = scores[scores["run_id"] == run.info.run_id].set_index("step")["normalized_score"].to_dict()
        assert mine == pytest.approx(logged, rel=1e-12)
    table = (out / "table.md").read_text()
    assert "IQL" in table and "BAQ" in table and "Total" in table
    readme = (out / "README.md").read_text()
    assert all(r.info.run_id in readme for r in runs)
    png = imread(out / "learning_curves.png")
    assert png.shape[0] > 200 and png.std() > 0.01


def _report_files(folder: Path) -> dict[str, str]:
    """The text outputs of a report, with the README line that names the source left out."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in (".csv", ".md", ".tex", ".json"):
            lines = path.read_text().splitlines()
            out[path.name] = "\n".join(line for line in lines
                                       if not (path.name == "README.md" and ": 4 runs," in line))
    return out


def test_results_outlive_the_store(tiny_dataset_id: str, tmp_path: Path) -> None:
    """Train, export, then from the bundle alone: the same report, the runs back in a new store, and a runner
    on a fresh machine that trains nothing."""
    from suite.cli import main

    matrix_file = tmp_path / "e2e.toml"
    matrix_file.write_text(MATRIX.format(dataset=tiny_dataset_id))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_matrix(load_matrix(matrix_file), workers=2, tracking_uri=uri, results_dir=tmp_path / "results",
                      live=False) == 0
    assert main(["export", str(matrix_file), "--tracking-uri", uri, "--out", str(tmp_path / "results")]) == 0
    bundle = tmp_path / "results" / "e2e" / "runs"
    first = {p.name: p.read_bytes() for p in bundle.iterdir()}
    assert len(first) == 4 * 2 + 1  # a manifest and a metrics file per run, and matrix.json
    assert main(["export", str(matrix_file), "--tracking-uri", uri, "--out", str(tmp_path / "results")]) == 0
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == first

    assert report_cli(str(matrix_file), tracking_uri=uri, seed=0, reps=50, out_root=tmp_path / "from_store",
                      bundles=[]) == 0
    assert report_cli(str(bundle), tracking_uri=None, seed=0, reps=50, out_root=tmp_path / "from_bundle") == 0
    store_files = _report_files(tmp_path / "from_store" / "e2e")
    assert {"scores.csv", "table.md", "table.tex", "switch.csv", "aggregates.csv"} <= set(store_files)
    assert _report_files(tmp_path / "from_bundle" / "e2e") == store_files
    assert (tmp_path / "from_bundle" / "e2e" / "learning_curves.png").stat().st_size > 0

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["import", str(bundle), "--tracking-uri", fresh]) == 0
    assert main(["import", str(bundle), "--tracking-uri", fresh]) == 0  # twice: nothing added
    old, new = MlflowClient(uri), MlflowClient(fresh)
    copies = new.search_runs([new.get_experiment_by_name("e2e").experiment_id])
    assert len(copies) == 4 and {r.info.status for r in copies} == {"FINISHED"}
    for copy in copies:
        original = old.get_run(copy.data.tags["baq.imported_from"])
        assert copy.data.params == original.data.params
        assert copy.data.tags["baq.cell"] == original.data.tags["baq.cell"]
        for key in original.data.metrics:
            want = {m.step: m.value for m in old.get_metric_history(original.info.run_id, key)}
            assert {m.step: m.value for m in new.get_metric_history(copy.info.run_id, key)} == want

    # A fresh machine (new results folder and store) with the bundle committed trains nothing again.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(bundle, elsewhere / "e2e" / "runs")
    assert run_matrix(load_matrix(matrix_file), workers=1, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}",
                      results_dir=elsewhere, live=False) == 0
    assert not (elsewhere / "e2e" / "cells").exists()
