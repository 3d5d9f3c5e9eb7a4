"""Reports from a store, a bundle, or both (analysis/sources.py) on a real MLflow store: the same bytes from a
store and its export, cells from either source, and one-line errors for conflicts and foreign bundles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.entities import Metric

from analysis.report import report, report_cli
from suite.bundle import store_records, write_bundle
from suite.bundle_store import export_runs
from suite.errors import UserError

DATASETS = ["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"]
MATRIX = {"algorithms": ["baq", "iql"], "datasets": DATASETS, "seeds": [0, 1]}


@pytest.fixture
def store_with_runs(store, tmp_path, curve):
    """Eight finished runs, each tagged with its cell; one logs a step twice (resume) and a NaN loss."""
    exp = store.experiment("mixed", tmp_path)
    for i, (algo, dataset, seed) in enumerate((a, d, s) for a in ("baq", "iql") for d in DATASETS for s in (0, 1)):
        run_id = store.log_run(exp, algo=algo, dataset=dataset, seed=seed, offline_steps=100,
                               scores=curve(100, 100, 30.0 + i, 40.0 + 1.7 * i, 25), repeat_steps=(50,))
        store.client.set_tag(run_id, "baq.cell", f"{i:016x}")
        store.client.log_batch(run_id, metrics=[Metric("train/loss", v, 0, s)
                                                for s, v in ((10, 0.1 + 0.2), (20, math.nan))])
    return store


def _texts(folder: Path) -> dict[str, list[str]]:
    return {p.name: [line for line in p.read_text().splitlines() if " runs, " not in line]
            for p in sorted(folder.iterdir()) if p.suffix in (".csv", ".md", ".tex")}


def test_bundle_gives_the_stores_report(store_with_runs, tmp_path: Path) -> None:
    store = store_with_runs
    assert export_runs("mixed", store.uri, tmp_path / "runs")["new"] == 8
    from_store = report("mixed", tracking_uri=store.uri, out_dir=tmp_path / "a", reps=100, matrix=MATRIX)
    from_bundle = report(None, tracking_uri=None, out_dir=tmp_path / "b", reps=100, matrix=MATRIX,
                         bundles=[tmp_path / "runs"], use_store=False)
    assert _texts(from_store) == _texts(from_bundle)
    readme = (from_bundle / "README.md").read_text()
    assert "Runs of `mixed` from the bundle" in readme and "8 runs, 8 used" in readme
    # The repeated step and the NaN survive the trip exactly.
    records = store_records(store.client, "mixed")
    assert all(len(r.metrics["eval/normalized_score"]) == 9 for r in records)


def test_store_and_bundle_together(store_with_runs, store, tmp_path: Path, curve) -> None:
    """Half the cells exported on one machine, the other half in this store: one report of all of them."""
    records = store_records(store_with_runs.client, "mixed")
    write_bundle(records[:4], tmp_path / "runs")
    for rec in records[:4]:
        store_with_runs.client.delete_run(rec.run_id)
    folder = report("mixed", tracking_uri=store.uri, out_dir=tmp_path / "out", reps=100, matrix=MATRIX,
                    bundles=[tmp_path / "runs"])
    readme = (folder / "README.md").read_text()
    assert "8 runs, 8 used" in readme and "and the MLflow store" in readme
    assert "Nothing: every expected cell has all its seeds" in readme


def test_a_cell_in_both_with_other_content_is_an_error(store_with_runs, tmp_path: Path) -> None:
    store = store_with_runs
    export_runs("mixed", store.uri, tmp_path / "runs")
    run_id = store_records(store.client, "mixed")[0].run_id
    store.client.log_metric(run_id, "eval/normalized_score", 99.0, step=500)  # the run went on after export
    with pytest.raises(UserError) as err:
        report("mixed", tracking_uri=store.uri, out_dir=tmp_path / "out", reps=100,
               bundles=[tmp_path / "runs"])
    assert run_id in str(err.value) and "different content" in str(err.value) and "\n" not in str(err.value)


def test_bundle_of_another_matrix(store_with_runs, tmp_path: Path) -> None:
    export_runs("mixed", store_with_runs.uri, tmp_path / "runs")
    matrix_file = tmp_path / "other.toml"
    matrix_file.write_text('name = "other"\nalgorithms = ["iql"]\ndatasets = ["d4rl:hopper-medium-v2"]\n'
                           'seeds = [0]\n[budget]\noffline_steps = 100\nonline_steps = 100\n'
                           'eval_interval = 50\neval_episodes = 1\nutd = 1\n')
    with pytest.raises(UserError, match="holds runs of experiment 'mixed'; accepted: runs of 'other'"):
        report_cli(str(matrix_file), tracking_uri=f"sqlite:///{tmp_path / 'none.db'}",
                   bundles=[str(tmp_path / "runs")], out_root=tmp_path / "out")
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_nothing_to_read(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no runs of experiment 'ghost'"):
        report_cli("ghost", tracking_uri=f"sqlite:///{tmp_path / 'none.db'}", out_root=tmp_path / "out")


def test_a_warning_of_the_iqm_curve_reaches_the_readme(store, tmp_path: Path) -> None:
    """Two seeds that share no eval step (99/201 against 100/200) still give finals, but no IQM curve; the
    README's Incomplete section says so."""
    exp = store.experiment("steps", tmp_path)
    for seed, scores in ((0, {100: 10.0, 200: 20.0}), (1, {99: 11.0, 201: 21.0})):
        store.log_run(exp, algo="iql", dataset=DATASETS[0], seed=seed, offline_steps=100, scores=scores)
    folder = report("steps", tracking_uri=store.uri, out_dir=tmp_path / "out", reps=50)
    assert "IQL: its runs share no eval step; no IQM curve" in (folder / "README.md").read_text()
