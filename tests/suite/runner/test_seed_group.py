"""`baq run --vectorize-seeds`: cells identical but for the seed train as one batched job, each cell still
its own locked, resumable MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from suite.launch import launch
from suite.matrix import load_matrix
from suite.runner import CellJob, CellLock, SeedGroupJob, cell_dir, group_jobs, run_matrix
from suite.tracking import MemorySink
from suite.train import CHECKPOINT, train
from tests.suite.runner.test_run import SHORT_BUDGET, runs_of, store
from tests.suite.test_train import deterministic_metrics

BUDGET = SHORT_BUDGET.replace("checkpoint_interval = 20", "checkpoint_interval = 10")


# BAQ on IQL with actor dropout draws random numbers inside its update: it cannot be vectorized, and its cells
# show that such cells still train one per worker.
NOT_VECTORIZABLE = "[overrides.baq]\nbase_params = {actor_dropout = 0.1}\n"


def matrix_file(path: Path, dataset_id: str, algorithms: str = '["iql", "baq"]', seeds: str = "[0, 1]") -> Path:
    path.write_text(f'name = "{path.stem}"\nalgorithms = {algorithms}\ndatasets = ["{dataset_id}"]\n'
                    f"seeds = {seeds}\n{BUDGET}\n{NOT_VECTORIZABLE if 'baq' in algorithms else ''}")
    return path


def jobs_of(matrix_path: Path, root: Path) -> list[CellJob]:
    matrix = load_matrix(matrix_path)
    results, uri = store(root)
    return [CellJob(c, matrix.name, str(cell_dir(results, matrix.name, c.hash)), uri) for c in matrix.cells()]


def test_group_jobs_groups_seeds_of_vectorizable_cells(tiny_dataset_id: str, tmp_path: Path) -> None:
    path = matrix_file(tmp_path / "groups.toml", tiny_dataset_id, '["iql", "baq"]', "[0, 1, 2]")
    jobs = jobs_of(path, tmp_path)
    grouped = group_jobs(jobs)
    groups = [g for g in grouped if isinstance(g, SeedGroupJob)]
    singles = [g for g in grouped if isinstance(g, CellJob)]
    assert len(groups) == 1 and [j.cell.seed for j in groups[0].jobs] == [0, 1, 2]
    assert {j.cell.algo for j in groups[0].jobs} == {"iql"}
    assert sorted((j.cell.algo, j.cell.seed) for j in singles) == [("baq", 0), ("baq", 1), ("baq", 2)]


def test_run_matrix_vectorized_records_each_cell_like_a_separate_run(tiny_dataset_id: str, tmp_path: Path) -> None:
    path = matrix_file(tmp_path / "vec.toml", tiny_dataset_id, '["iql", "baq"]', "[0, 1]")
    results, uri = store(tmp_path)
    code = run_matrix(load_matrix(path), workers=1, results_dir=results, tracking_uri=uri, live=False,
                      vectorize_seeds=True)
    assert code == 0
    matrix = load_matrix(path)
    runs = runs_of(uri, matrix.name)
    assert set(runs) == {c.hash for c in matrix.cells()}
    client = MlflowClient(uri)
    for cell in matrix.cells():
        (run,) = runs[cell.hash]
        assert run.info.status == "FINISHED" and run.data.tags["baq.status"] == "finished"
        assert run.data.tags.get("baq.vectorized_seeds") == ("2" if cell.algo == "iql" else None)
        if cell.algo == "iql":  # the same numbers as the cell trained on its own, up to rounding
            sink = MemorySink()
            train(cell.config, sink)
            for key, history in deterministic_metrics(sink).items():
                stored = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                assert stored.keys() == history.keys(), key
                for step, value in history.items():
                    assert stored[step] == pytest.approx(value, rel=1e-3, abs=1e-3), (key, step)


def test_a_locked_cell_drops_out_and_the_rest_still_trains(tiny_dataset_id: str, tmp_path: Path) -> None:
    path = matrix_file(tmp_path / "locked.toml", tiny_dataset_id, '["iql"]', "[0, 1]")
    jobs = jobs_of(path, tmp_path)
    lock = CellLock(Path(jobs[0].cell_dir) / ".lock")
    assert lock.acquire()
    events: list[tuple[str, str]] = []
    try:
        outcomes = SeedGroupJob(tuple(jobs)).execute(lambda e: events.append((e.kind, e.cell)))
    finally:
        lock.release()
    first, second = (j.cell.hash for j in jobs)
    assert outcomes[first]["status"] == "elsewhere" and "locked by pid" in outcomes[first]["detail"]
    assert outcomes[second]["status"] == "finished" and outcomes[second]["score"] is not None
    assert ("start", second) in events and ("progress", second) in events
    assert all(h == second for _, h in events)
    (run,) = runs_of(store(tmp_path)[1], "locked")[second]
    assert "baq.vectorized_seeds" not in run.data.tags  # one cell left: trained alone


def test_seeds_interrupted_at_different_steps_resume_one_by_one(tiny_dataset_id: str, tmp_path: Path) -> None:
    path = matrix_file(tmp_path / "uneven.toml", tiny_dataset_id, '["iql"]', "[0, 1]")
    jobs = jobs_of(path, tmp_path)

    class Interrupt(Exception):
        pass

    for job, stop_at in zip(jobs, (20, 40), strict=True):  # checkpoints at 10 and 30
        def stop(info: dict, stop_at: int = stop_at) -> None:
            if info["step"] == stop_at:
                raise Interrupt
        tags = {"baq.cell": job.cell.hash, "baq.matrix": job.matrix, "baq.overrides": "{}"}
        with pytest.raises(Interrupt):
            launch(job.cell.config, job.matrix, Path(job.cell_dir), job.tracking_uri, tags=tags, progress=stop)
    assert [Path(j.cell_dir, CHECKPOINT).exists() for j in jobs] == [True, True]
    outcomes = SeedGroupJob(tuple(jobs)).execute(lambda _: None)
    assert [outcomes[j.cell.hash]["status"] for j in jobs] == ["finished", "finished"]
    runs = runs_of(store(tmp_path)[1], "uneven")
    for job in jobs:  # each cell continued its own run from its checkpoint, and ended FINISHED
        (run,) = runs[job.cell.hash]
        assert run.info.status == "FINISHED" and run.info.run_id == outcomes[job.cell.hash]["run_id"]
        assert "baq.error" not in run.data.tags and "baq.vectorized_seeds" not in run.data.tags
