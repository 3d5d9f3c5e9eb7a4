"""The MLflow sink: batching, flattening, a new sqlite store opened by many processes, and its spool: records
kept on disk until the store has them, delivered once (suite.spool, suite.delivery, `baq sync`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from suite import spool
from suite.cli import main
from suite.spool import Spool, SpoolBusy
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


def test_spool_file_keeps_whole_records_and_the_delivered_count(tmp_path: Path) -> None:
    writer = Spool.create(tmp_path, "r1", "sqlite:///unused.db", "exp")
    writer.append({"k": "metrics", "step": 1, "time": 5, "values": {"a": 1.0}})
    writer.append({"k": "end", "status": "FINISHED", "time": 6})
    writer.acknowledge(1)
    with pytest.raises(SpoolBusy):  # its writer holds it: nobody else delivers these records
        Spool.open(writer.path)
    with open(writer.path, "ab") as f:
        f.write(b'{"k":"tags","val')  # a write cut short by a power loss
    writer.close()
    assert spool.pending(tmp_path) == (1, "FINISHED")
    reader = Spool.open(writer.path)
    assert reader.peek(10) == [{"k": "end", "status": "FINISHED", "time": 6}]
    assert writer.path.read_bytes().endswith(b'"time":6}\n')  # the torn tail is gone before anything follows
    reader.close()


CRASH = (
    "import os, sys\n"
    "from pathlib import Path\n"
    "from suite.tracking import MLflowSink\n"
    "sink = MLflowSink('crash', tracking_uri=sys.argv[1], spool_dir=Path(sys.argv[2]))\n"
    "sink.log_params({'lr': 0.1})\n"
    "for step in range(1, 101):\n"
    "    sink.log_metrics({'m': step * 0.5}, step)\n"
    "print(sink.run_id, flush=True)\n"
    "os.kill(os.getpid(), 9)\n"
)


def test_kill_9_loses_nothing_logged_and_sync_delivers_it_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Metrics logged but never flushed are in the spool when the process is SIGKILLed; `baq sync` delivers
    them, and delivering the same records again (a count lost with the connection) adds nothing."""
    uri, run_dir = f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CRASH, uri, str(run_dir)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr
    run_id = proc.stdout.strip()
    client = MlflowClient(uri)
    assert client.get_metric_history(run_id, "m") == []
    (spool_file,) = spool.spool_files(run_dir)
    copy = spool_file.read_bytes()
    assert main(["sync", str(run_dir)]) == 0
    assert f"run {run_id}: delivered " in capsys.readouterr().out
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "m")]
    assert history == [(s, s * 0.5) for s in range(1, 101)]
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    assert not spool_file.exists()
    spool_file.parent.mkdir()
    spool_file.write_bytes(copy)  # the same records once more, none marked delivered
    assert main(["sync", str(tmp_path)]) == 0
    assert len(client.get_metric_history(run_id, "m")) == 100
