"""The suite's main job end to end: a real tiny matrix run by the runner, then its report from MLflow."""

from __future__ import annotations

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
