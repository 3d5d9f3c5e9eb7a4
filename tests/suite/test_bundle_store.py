"""`baq import` on a real MLflow sqlite store: a run goes in whole or not at all, and twice adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from suite.bundle import RunRecord, store_records, write_bundle
from suite.bundle_store import INCOMPLETE, import_bundle
from suite.errors import UserError


def _record(cell: str, run_id: str, metric: str = "train/loss") -> RunRecord:
    return RunRecord("imp", run_id, f"iql-{cell[:4]}", "FINISHED", 1_700_000_000_000, 1_700_000_100_000,
                     {"algo": "iql", "algo_params.expectile": "0.7"},
                     {"baq.algo": "iql", "baq.cell": cell, "baq.dataset": "local:hopper-medium",
                      "baq.offline_steps": "10", "baq.seed": "0", "baq.status": "finished"},
                     {"eval/normalized_score": ((10, 1.5), (20, 2.5)), metric: ((5, 0.25),)})


@pytest.fixture
def target(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    return uri, MlflowClient(tracking_uri=uri)


def _live_runs(client: MlflowClient) -> list:
    return client.search_runs([client.get_experiment_by_name("imp").experiment_id])


def test_import_recreates_runs_once(target, tmp_path: Path) -> None:
    uri, client = target
    write_bundle([_record("1" * 16, "a" * 32), _record("2" * 16, "b" * 32)], tmp_path / "runs")
    assert import_bundle([tmp_path / "runs"], uri) == {"imported": 2, "skipped": 0}
    assert import_bundle([tmp_path / "runs"], uri) == {"imported": 0, "skipped": 2}
    runs = _live_runs(client)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" and INCOMPLETE not in r.data.tags for r in runs)
    back = {r.tags["baq.cell"]: r for r in store_records(client, "imp")}
    assert back["1" * 16].metrics == _record("1" * 16, "a" * 32).metrics
    assert back["1" * 16].start_time == 1_700_000_000_000 and back["1" * 16].end_time == 1_700_000_100_000


def test_a_refused_run_leaves_nothing(target, tmp_path: Path) -> None:
    uri, client = target
    # MLflow refuses a metric name that would resolve to another path; params and tags were in by then.
    write_bundle([_record("1" * 16, "a" * 32), _record("2" * 16, "b" * 32, metric="../escape")], tmp_path / "runs")
    with pytest.raises(UserError) as err:
        import_bundle([tmp_path / "runs"], uri)
    assert "nothing of that run was kept" in str(err.value) and "\n" not in str(err.value)
    assert [r.data.tags["baq.cell"] for r in _live_runs(client)] == ["1" * 16]


def test_an_interrupted_import_is_redone(target, tmp_path: Path) -> None:
    uri, client = target
    write_bundle([_record("1" * 16, "a" * 32)], tmp_path / "runs")
    experiment_id = client.create_experiment("imp", artifact_location=(tmp_path / "art").as_uri())
    half = client.create_run(experiment_id, tags={"baq.cell": "1" * 16, INCOMPLETE: "true"}).info.run_id
    assert import_bundle([tmp_path / "runs"], uri) == {"imported": 1, "skipped": 0}
    runs = _live_runs(client)
    assert len(runs) == 1 and runs[0].info.run_id != half and runs[0].info.status == "FINISHED"
