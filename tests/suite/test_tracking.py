"""The MLflow sink: batching, flattening, run continuation, and a new sqlite store opened by many processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from suite.tracking import MLflowSink, flatten


def test_flatten_nested_config() -> None:
    flat = flatten({"algo": "iql", "algo_params": {"hidden": (256, 256), "expectile": 0.7}, "seed": 0})
    assert flat == {"algo": "iql", "algo_params.hidden": "[256, 256]", "algo_params.expectile": 0.7, "seed": 0}


def test_metrics_are_buffered_until_flush(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sink = MLflowSink("exp", tracking_uri=uri)
    for step in range(1, 2501):  # more than one log_batch (MLflow takes at most 1000 metrics per call)
        sink.log_metrics({"train/loss": step * 0.5}, step)
    client = MlflowClient(uri)
    assert client.get_metric_history(sink.run_id, "train/loss") == []
    sink.flush()
    history = client.get_metric_history(sink.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, s * 0.5) for s in range(1, 2501)]
    sink.log_params({f"p{i}": i for i in range(150)})  # more than one batch of params too
    sink.log_params({"p0": 0})  # a resumed run re-logging its params is fine
    sink.flush()
    assert len(client.get_run(sink.run_id).data.params) == 150
    sink.end("FINISHED")
    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["baq.status"] == "finished"


OPEN_STORE = (
    "import sys\n"
    "from suite.tracking import MLflowSink\n"
    "MLflowSink('parallel', tracking_uri=sys.argv[1]).end('FINISHED')\n"
)


def test_new_sqlite_store_opened_by_parallel_workers(tmp_path: Path) -> None:
    """Three processes open one new sqlite store at once (as runner workers do): MLflow's schema migrations
    must not collide ("duplicate column name"), and every process gets its run."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
