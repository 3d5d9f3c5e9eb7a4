"""A tracking server that goes away never costs a run: a real `mlflow server` on a loopback port is killed
mid-run (SIGKILL), then restarted on the same port and store. Records wait in the run's spool and reach the
store exactly once: while the run goes on, through `baq sync`, or through the next `baq run`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from suite import spool
from suite.cli import main
from suite.launch import launch
from suite.matrix import load_matrix
from suite.runner import CellJob, cell_dir, cell_tags, run_matrix

# 200 offline + 100 online steps: metrics every 10 steps, an evaluation every 100, a flush at every
# checkpoint (50 steps).
BUDGET = dict(offline_steps=200, online_steps=100, eval_interval=100, eval_episodes=1, utd=1, log_interval=10,
              checkpoint_interval=50, max_episode_steps=50, batch_size=16)
LOG_STEPS = list(range(10, 301, 10))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with a sqlite store; kill() is SIGKILL to its whole process group."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{self.root / 'store.db'}", "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("mlflow server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow_server"))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def matrix_file(tmp_path: Path, tiny_dataset_id: str) -> Path:
    budget = "\n".join(f"{k} = {v}" for k, v in BUDGET.items())
    path = tmp_path / "outage.toml"
    path.write_text(f'name = "outage"\nalgorithms = ["iql"]\ndatasets = ["{tiny_dataset_id}"]\nseeds = [0, 1]\n'
                    f"[budget]\n{budget}\n")
    return path


def train_as_worker(cell, results: Path, uri: str, progress) -> Path:
    """Train one matrix cell in this process exactly as a runner worker does (its directory, its tags)."""
    run_dir = cell_dir(results, "outage", cell.hash)
    job = CellJob(cell, "outage", str(run_dir), uri)
    launch(cell.config, "outage", run_dir, uri, tags=cell_tags(job), progress=progress)
    return run_dir


def assert_complete(uri: str, run_id: str) -> None:
    """The run is FINISHED and every metric of every step is in the store once."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["baq.status"] == "finished"
    assert run.data.params["offline_steps"] == "200"
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), f"{key} logged twice at some step: {steps}"
        if key.startswith(("train/", "perf/")):
            assert steps == LOG_STEPS, key
    assert [m.step for m in client.get_metric_history(run_id, "eval/normalized_score")] == [100, 200, 300]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.json", "eval.csv", "checkpoints"}


def run_id_of(run_dir: Path) -> str:
    import json

    return json.loads((run_dir / "run.json").read_text())["run_id"]


@pytest.mark.xdist_group("mlflow_server")
def test_server_killed_and_back_before_the_run_ends(server: Server, matrix_file: Path, tmp_path: Path) -> None:
    notes: dict[int, str | None] = {}

    def progress(info: dict) -> None:
        notes[info["step"]] = info.get("tracking")
        if info["step"] == 80:
            server.kill()
        elif info["step"] == 220:
            server.start()  # training waits here until the server answers again

    cell = load_matrix(matrix_file).cells()[0]
    run_dir = train_as_worker(cell, tmp_path / "results", server.uri, progress)
    down = [notes[s] for s in range(110, 221, 10)]
    assert all(note and note.startswith("tracking behind: ") for note in down), down
    assert notes[80] is None
    assert_complete(server.uri, run_id_of(run_dir))
    assert not (run_dir / spool.SPOOL_DIR).exists()  # delivered, so removed


@pytest.mark.xdist_group("mlflow_server")
def test_server_away_when_runs_end_then_sync_and_rerun(
    server: Server, matrix_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv("BAQ_RESULTS_DIR", str(results))
    run_dirs = []
    for cell in load_matrix(matrix_file).cells():
        if not server.running:
            server.start()
        run_dirs.append(train_as_worker(cell, results, server.uri,
                                   lambda info: info["step"] == 150 and server.kill()))
        behind, end = spool.pending(run_dirs[-1])
        assert behind > 0 and end == "FINISHED"  # finished here, the store does not know yet
    assert "baq: tracking is behind: " in capsys.readouterr().err
    server.start()
    client = MlflowClient(server.uri)
    first, second = (run_id_of(d) for d in run_dirs)
    assert client.get_run(first).info.status == "RUNNING"
    assert max(m.step for m in client.get_metric_history(first, "perf/updates_per_s")) == 150

    assert main(["sync", str(run_dirs[0])]) == 0
    assert_complete(server.uri, first)
    assert client.get_run(second).info.status == "RUNNING"  # another run directory: not synced

    # The next `baq run` delivers the other spool and counts both cells finished: nothing is trained again.
    assert run_matrix(load_matrix(matrix_file), workers=1, tracking_uri=server.uri, results_dir=results,
                      live=False) == 0
    out = capsys.readouterr().out
    assert "delivered the spooled tracking records of 1 runs" in out and "2/2 cells already finished" in out
    assert_complete(server.uri, second)
    assert not any((d / spool.SPOOL_DIR).exists() for d in run_dirs)
