"""The matrix runner under stress: kill -9 and resume, two runners on one store, failing cells, locks,
status, the Ray backend, and the progress board."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from suite.checkpoint import load as load_checkpoint
from suite.errors import UserError
from suite.matrix import Cell, load_matrix
from suite.progress import ProgressBoard
from suite.runner import CellJob, CellLock, cell_dir, cell_runs, execute_cell, matrix_status, run_matrix
from suite.tracking import get_or_create_experiment
from suite.train import CHECKPOINT

# Long enough (160 steps, a checkpoint every 20) for a kill to land mid-cell, short enough for a test.
RESUME_BUDGET = """
[budget]
offline_steps = 100
online_steps = 60
eval_interval = 40
eval_episodes = 1
utd = 1
log_interval = 10
checkpoint_interval = 20
max_episode_steps = 50
"""
SHORT_BUDGET = RESUME_BUDGET.replace("= 100", "= 30").replace("= 60", "= 20")
RUNNER = ("import sys; from pathlib import Path; from suite.matrix import load_matrix; "
          "from suite.runner import run_matrix; sys.exit(run_matrix(load_matrix(sys.argv[1]), workers=2, "
          "results_dir=Path(sys.argv[2]), tracking_uri=sys.argv[3], live=False))")
COMPARED = ("eval/", "train/", "online/")  # perf/* is wall-clock
# The tests that compare against the `reference` fixture (a minute of training) share one xdist worker, so the
# fixture is built once.
SHARES_REFERENCE = pytest.mark.xdist_group("runner_reference")


def write_matrix(path: Path, name: str, dataset_id: str | list[str], body: str) -> Path:
    ids = [dataset_id] if isinstance(dataset_id, str) else dataset_id
    path.write_text(f'name = "{name}"\nalgorithms = ["iql"]\ndatasets = {json.dumps(ids)}\n' + body)
    return path


def store(root: Path) -> tuple[Path, str]:
    return root / "results", f"sqlite:///{root / 'results' / 'mlflow.db'}"


def start_runner(matrix: Path, root: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    results, uri = store(root)
    log = root / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(matrix), str(results), uri],
                                stdout=out, stderr=subprocess.STDOUT, cwd=root)
    return proc, log


def wait_for_a_checkpoint(proc: subprocess.Popen, log: Path, checkpoints: list[Path]) -> None:
    """Until one cell of the running runner has written a checkpoint: then a kill lands mid-cell."""
    deadline = time.monotonic() + 300
    while not any(p.exists() for p in checkpoints):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)


def runs_of(uri: str, experiment: str) -> dict[str, list[Any]]:
    """Every run of the experiment (superseded ones included), by cell tag."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out: dict[str, list[Any]] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000) if exp else []:
        out.setdefault(run.data.tags["baq.cell"], []).append(run)
    return out


def histories(uri: str, run_id: str) -> dict[str, dict[int, float]]:
    """Compared metric histories by step; a step logged twice (after a resume) must hold one value."""
    client = MlflowClient(uri)
    out = {}
    for key in client.get_run(run_id).data.metrics:
        if not key.startswith(COMPARED):
            continue
        by_step: dict[int, float] = {}
        for m in client.get_metric_history(run_id, key):
            assert by_step.setdefault(m.step, m.value) == m.value, f"{key}@{m.step} logged with two values"
        out[key] = by_step
    return out


def assert_each_cell_once_finished(uri: str, matrix_path: Path) -> dict[str, Any]:
    matrix = load_matrix(matrix_path)
    runs = runs_of(uri, matrix.name)
    assert set(runs) == {c.hash for c in matrix.cells()}
    for cell_hash, cell_runs_ in runs.items():
        assert len(cell_runs_) == 1, f"cell {cell_hash} has {len(cell_runs_)} runs"
        assert cell_runs_[0].info.status == "FINISHED"
    return {h: r[0] for h, r in runs.items()}


@pytest.fixture(scope="module")
def reference(tiny_dataset_id: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runners started at once on one store: together they must train every cell exactly once."""
    root = tmp_path_factory.mktemp("reference")
    matrix = write_matrix(root / "resume.toml", "resume", tiny_dataset_id, "seeds = [0, 1]\n" + RESUME_BUDGET)
    procs = [start_runner(matrix, root, f"runner{i}.log") for i in range(2)]
    for proc, _ in procs:
        proc.wait(timeout=600)
    logs = [log.read_text() for _, log in procs]
    return {"matrix": matrix, "uri": store(root)[1], "logs": logs, "codes": [p.returncode for p, _ in procs]}


@SHARES_REFERENCE
def test_two_runners_at_once_never_duplicate_a_cell(reference: dict[str, Any]) -> None:
    runs = assert_each_cell_once_finished(reference["uri"], reference["matrix"])
    for cell_hash in runs:  # each cell was started by exactly one of the runners
        starts = sum(line.endswith("start") and f"[{cell_hash[:8]}]" in line
                     for log in reference["logs"] for line in log.splitlines())
        assert starts == 1, reference["logs"]
    for run in runs.values():
        assert run.data.tags["baq.matrix"] == "resume" and run.data.tags["baq.overrides"] == "{}"
        assert run.data.tags["baq.status"] == "finished" and "eval/normalized_score" in run.data.metrics
    assert 0 in reference["codes"], reference["logs"]  # whoever ended last saw every cell finished


@SHARES_REFERENCE
def test_kill_9_mid_matrix_then_rerun_resumes_the_same_runs_exactly(
    reference: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = load_matrix(reference["matrix"])
    results, uri = store(tmp_path)
    proc, log = start_runner(reference["matrix"], tmp_path, "killed.log")
    checkpoints = [cell_dir(results, matrix.name, c.hash) / CHECKPOINT for c in matrix.cells()]
    wait_for_a_checkpoint(proc, log, checkpoints)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The workers die with the runner (PR_SET_PDEATHSIG): their cell locks come free.
    for path in checkpoints:
        lock = CellLock(path.parent / ".lock")
        deadline = time.monotonic() + 20
        while path.parent.exists() and not lock.acquire():
            assert time.monotonic() < deadline, f"a worker outlived the runner: {lock.holder()}"
            time.sleep(0.1)
        lock.release()
    interrupted = runs_of(uri, matrix.name)
    assert any(r.info.status != "FINISHED" for rs in interrupted.values() for r in rs), "killed too late"
    before = {h: rs[0].info.run_id for h, rs in interrupted.items()}
    # `baq status` shows how far each interrupted cell got: at least to its checkpoint (metrics are flushed
    # before a checkpoint is written), short of the end.
    assert matrix_status(matrix, uri, results) == 1
    lines = {h: line.split() for line in capsys.readouterr().out.splitlines() for h in before if h in line}
    checked = 0
    for cell_hash, path in zip([c.hash for c in matrix.cells()], checkpoints, strict=True):
        words = lines.get(cell_hash)
        if words and words[words.index(cell_hash) + 1] == "interrupted" and path.exists():
            done, total = map(int, words[words.index(cell_hash) + 2].split("/"))
            assert total == 160 and 20 <= done < 160, words
            checked += 1
    assert checked, f"no interrupted cell with a checkpoint in {lines}"

    assert run_matrix(matrix, workers=2, tracking_uri=uri, results_dir=results, live=False) == 0
    resumed = assert_each_cell_once_finished(uri, reference["matrix"])
    expected = {h: histories(reference["uri"], r.info.run_id) for h, r in
                assert_each_cell_once_finished(reference["uri"], reference["matrix"]).items()}
    for cell_hash, run in resumed.items():
        if cell_hash in before:
            assert run.info.run_id == before[cell_hash], "the interrupted run is continued, not replaced"
        got = histories(uri, run.info.run_id)
        assert got == expected[cell_hash]
        assert {"eval/normalized_score", "train/critic_loss"} <= set(got)


@SHARES_REFERENCE
def test_sigterm_stops_every_cell_at_a_checkpoint_then_rerun_redoes_nothing(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    matrix = load_matrix(reference["matrix"])
    results, uri = store(tmp_path)
    log = tmp_path / "stopped.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suite.cli", "run", str(reference["matrix"]), "--workers", "2",
             "--tracking-uri", uri], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "BAQ_RESULTS_DIR": str(results)})
    checkpoints = {c.hash: cell_dir(results, matrix.name, c.hash) / CHECKPOINT for c in matrix.cells()}
    wait_for_a_checkpoint(proc, log, list(checkpoints.values()))
    os.kill(proc.pid, signal.SIGTERM)  # the runner only, as `kill` or a scheduler's preemption would
    assert proc.wait(timeout=120) == 130, log.read_text()
    text = log.read_text()
    assert "rerun the same command to continue" in text, text
    stopped = {}
    for cell_hash, run in assert_runs(uri, matrix.name).items():
        if run.info.status == "FINISHED":
            continue
        assert run.info.status == "KILLED", run.info.status
        step = load_checkpoint(checkpoints[cell_hash])["step"]
        assert f"stopped on request after step {step} (checkpoint saved)" in run.data.tags["baq.error"]
        assert f"[{cell_hash[:8]}] interrupted (stopped on request after step {step}" in text, text
        stopped[cell_hash] = run.info.run_id
    assert stopped, "stopped too late: every cell had finished"

    assert run_matrix(matrix, workers=2, tracking_uri=uri, results_dir=results, live=False) == 0
    expected = {h: histories(reference["uri"], r.info.run_id) for h, r in
                assert_each_cell_once_finished(reference["uri"], reference["matrix"]).items()}
    client = MlflowClient(uri)
    for cell_hash, run in assert_each_cell_once_finished(uri, reference["matrix"]).items():
        assert histories(uri, run.info.run_id) == expected[cell_hash]
        if cell_hash in stopped:
            assert run.info.run_id == stopped[cell_hash]
            # The stop lost no work, so no step was trained, and logged, twice (unlike after kill -9).
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/critic_loss")]
            assert steps == sorted(set(steps)), steps


def assert_runs(uri: str, experiment: str) -> dict[str, Any]:
    """The one run of each cell."""
    runs = runs_of(uri, experiment)
    assert all(len(rs) == 1 for rs in runs.values()), runs
    return {h: rs[0] for h, rs in runs.items()}


def test_failing_cells_are_failed_with_reason_others_finish(
    tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Minari dataset is not in the (empty) local Minari root, so its cells fail when they load it;
    # gamma = 0.95 on the good dataset is locked "by another runner" (this test).
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    path = write_matrix(tmp_path / "fail.toml", "fail", [tiny_dataset_id, "minari:mujoco/hopper/expert-v0"],
                        "seeds = [0]\n" + SHORT_BUDGET + "[sweep.iql]\ngamma = [0.99, 0.95]\n")
    matrix = load_matrix(path)
    good, broken, locked, broken_too = matrix.cells()
    assert (good.dataset, locked.dataset) == (tiny_dataset_id, tiny_dataset_id)
    results, uri = store(tmp_path)
    held = CellLock(cell_dir(results, "fail", locked.hash) / ".lock")
    assert held.acquire()
    try:
        code = run_matrix(matrix, workers=1, tracking_uri=uri, results_dir=results, live=False)
    finally:
        held.release()
    out = capsys.readouterr().out
    assert code == 1
    assert "4 cells: 1 finished, 2 failed, 1 running elsewhere, 0 not run" in out
    assert f"running elsewhere: {locked.label} [{locked.hash}]: locked by pid {os.getpid()}" in out
    runs = runs_of(uri, "fail")
    assert locked.hash not in runs  # skipped, not duplicated
    assert runs[good.hash][0].info.status == "FINISHED"
    failed = runs[broken.hash][0]
    assert failed.info.status == "FAILED" and failed.data.tags["baq.status"] == "failed"
    assert "mujoco/hopper/expert-v0" in failed.data.tags["baq.error"]
    assert failed.data.tags["baq.error"].splitlines()[0][:200] in out  # the reason, on one line
    assert runs[broken_too.hash][0].info.status == "FAILED"

    assert matrix_status(matrix, uri, results) == 1
    status, steps = {}, {}
    for line in capsys.readouterr().out.splitlines():
        words = line.split()
        hashes = (good.hash, locked.hash, broken.hash)
        status.update({h: words[words.index(h) + 1] for h in hashes if h in words})
        steps.update({h: words[words.index(h) + 2] for h in (good.hash, broken.hash) if h in words})
    assert status == {good.hash: "finished", locked.hash: "missing", broken.hash: "failed"}
    assert steps == {good.hash: "50/50", broken.hash: "0/50"}  # the broken cell failed before its first step

    # A retry continues the failed cell's own run (still one run); the freed cell trains now.
    outcome = execute_cell(job(broken, results, uri), lambda *_: None)
    assert outcome["status"] == "failed" and outcome["run_id"] == failed.info.run_id
    assert execute_cell(job(locked, results, uri), lambda *_: None)["status"] == "finished"
    runs = runs_of(uri, "fail")
    assert [len(runs[c.hash]) for c in (good, locked, broken, broken_too)] == [1, 1, 1, 1]


def job(cell: Cell, results: Path, uri: str, matrix: str = "fail", force: bool = False) -> CellJob:
    return CellJob(cell, matrix, str(cell_dir(results, matrix, cell.hash)), uri, force)


def test_dataset_that_fails_to_load_fails_its_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    path = write_matrix(tmp_path / "m.toml", "fail", "minari:mujoco/hopper/expert-v0",
                        "seeds = [0]\n" + SHORT_BUDGET)
    cell = load_matrix(path).cells()[0]
    results, uri = store(tmp_path)
    outcome = execute_cell(job(cell, results, uri), lambda *_: None)
    assert outcome["status"] == "failed" and "not found" in outcome["error"] and "\n" not in outcome["error"]
    run = runs_of(uri, "fail")[cell.hash][0]
    assert run.info.status == "FAILED" and "mujoco/hopper/expert-v0" in run.data.tags["baq.error"]


def test_run_created_before_run_json_is_continued_and_force_supersedes(
    tiny_dataset_id: str, tmp_path: Path
) -> None:
    path = write_matrix(tmp_path / "m.toml", "orphan", tiny_dataset_id, "seeds = [0]\n" + SHORT_BUDGET)
    cell = load_matrix(path).cells()[0]
    results, uri = store(tmp_path)
    client = MlflowClient(uri)
    # What a runner killed right after creating the run leaves: a tagged RUNNING run, no run.json.
    # (The experiment as the runner makes it: artifacts beside the store, not in the cwd's ./mlruns.)
    exp_id = get_or_create_experiment(client, "orphan", uri)
    orphan = client.create_run(exp_id, tags={"baq.cell": cell.hash}).info.run_id
    events: list[tuple[str, dict]] = []
    outcome = execute_cell(job(cell, results, uri, "orphan"), lambda e: events.append((e.kind, e.payload)))
    assert outcome["status"] == "finished" and outcome["run_id"] == orphan
    assert [r.info.run_id for r in runs_of(uri, "orphan")[cell.hash]] == [orphan]
    progress = [p for kind, p in events if kind == "progress"]
    assert events[0][0] == "start" and [p["step"] for p in progress] == [10, 20, 30, 40, 50]

    # Finished: a plain rerun does nothing; --force trains a new run and takes the old one out.
    again = execute_cell(job(cell, results, uri, "orphan"), lambda *_: None)
    assert (again["status"], again["run_id"], again["detail"]) == ("finished", orphan, "already finished")
    forced = execute_cell(job(cell, results, uri, "orphan", force=True), lambda *_: None)
    assert forced["status"] == "finished" and forced["run_id"] != orphan
    assert client.get_run(orphan).data.tags["baq.superseded"] == "true"
    assert [r.info.run_id for r in cell_runs(client, exp_id, cell.hash)] == [forced["run_id"]]
    assert (histories(uri, orphan) == histories(uri, forced["run_id"])), "same config + seed, same numbers"


def test_cell_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first, second = CellLock(tmp_path / "c" / ".lock"), CellLock(tmp_path / "c" / ".lock")
    assert first.acquire()
    assert not second.acquire()
    assert second.holder().startswith(f"pid {os.getpid()} on ")
    first.release()
    assert second.acquire()
    second.release()


def test_bad_runner_arguments_are_user_errors(tiny_dataset_id: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_matrix(tmp_path / "m.toml", "args", tiny_dataset_id, "seeds = [0]\n" + SHORT_BUDGET)
    matrix = load_matrix(path)
    with pytest.raises(UserError, match="unknown backend 'slurm'; accepted: local, ray"):
        run_matrix(matrix, workers=1, backend="slurm")
    with pytest.raises(UserError, match="workers must be >= 1, got 0"):
        run_matrix(matrix, workers=0)
    with pytest.raises(UserError, match="threads must be >= 1, got 0"):
        run_matrix(matrix, workers=1, threads=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'baq-suite\[ray\]'"):
        run_matrix(matrix, workers=1, backend="ray")


def test_threads_per_worker_reach_the_cells(tiny_dataset_id: str, tmp_path: Path) -> None:
    """`threads` sets each worker's torch threads (recorded in the run's device tag); one is the default."""
    results, uri = store(tmp_path)
    for name, threads in (("one", 1), ("two", 2)):
        path = write_matrix(tmp_path / f"{name}.toml", name, tiny_dataset_id, "seeds = [0]\n" + SHORT_BUDGET)
        kwargs = {"threads": threads} if threads > 1 else {}
        assert run_matrix(load_matrix(path), workers=1, tracking_uri=uri, results_dir=results, live=False,
                          **kwargs) == 0
        (run,) = runs_of(uri, name).values()
        assert run[0].data.tags["device"] == f"cpu ({threads} thread)"
        assert run[0].data.tags["host.cpu"] not in ("", "unknown")


def test_only_some_cells_then_the_whole_matrix_skips_them(
    tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--only` trains a subset under the matrix's own name and hashes: the full file then skips it."""
    results, uri = store(tmp_path)
    full = load_matrix(write_matrix(tmp_path / "m.toml", "subset", tiny_dataset_id, "seeds = [0, 1]\n"
                                    + SHORT_BUDGET))
    assert run_matrix(full.restrict(["seed=1"]), workers=1, tracking_uri=uri, results_dir=results,
                      live=False) == 0
    (only,) = [c for c in full.cells() if c.seed == 1]
    assert set(runs_of(uri, "subset")) == {only.hash}
    capsys.readouterr()
    assert run_matrix(full, workers=1, tracking_uri=uri, results_dir=results, live=False) == 0
    assert "subset: 1/2 cells already finished, skipped" in capsys.readouterr().out
    assert_each_cell_once_finished(uri, tmp_path / "m.toml")


@SHARES_REFERENCE
def test_ray_backend_trains_the_same_cells(reference: dict[str, Any], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'baq-suite[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results, uri = store(tmp_path)
        matrix = load_matrix(reference["matrix"])
        assert run_matrix(matrix, workers=None, backend="ray", tracking_uri=uri, results_dir=results,
                          live=False) == 0
    finally:
        ray.shutdown()
    runs = assert_each_cell_once_finished(uri, reference["matrix"])
    expected = assert_each_cell_once_finished(reference["uri"], reference["matrix"])
    for cell_hash, run in runs.items():
        assert histories(uri, run.info.run_id) == histories(reference["uri"], expected[cell_hash].info.run_id)


def test_ray_backend_stops_its_tasks_at_a_checkpoint_on_sigterm(
    tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'baq-suite[ray]'")
    # Periodic checkpoints every 500 steps: the first one shows the task is in the training loop (a stop during
    # set-up, inside a store call, ends the cell before training, with nothing to save).
    long_budget = RESUME_BUDGET.replace("= 100\n", "= 100000\n").replace("= 20\n", "= 500\n")
    matrix = load_matrix(write_matrix(tmp_path / "m.toml", "raystop", tiny_dataset_id,
                                      "seeds = [0]\n" + long_budget))
    (cell,) = matrix.cells()
    results, uri = store(tmp_path)
    checkpoint = cell_dir(results, matrix.name, cell.hash) / CHECKPOINT

    def terminate_once_training() -> None:
        # A Ray worker's start and imports take minutes on a loaded 2-core machine (5 seen under a full test run
        # beside two trainings); past the deadline the stop lands wherever the task is.
        deadline = time.monotonic() + 600
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_training, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):  # the runner starts Ray itself, as `baq run --backend ray` does
        run_matrix(matrix, workers=1, backend="ray", tracking_uri=uri, results_dir=results, live=False)
    assert not ray.is_initialized()
    step = load_checkpoint(checkpoint)["step"]  # the step it stopped at, saved on the way out
    assert 0 < step < 100_000
    (run,) = assert_runs(uri, matrix.name).values()
    assert run.info.status == "KILLED"
    assert run.data.tags["baq.error"] == f"StopRequested: stopped on request after step {step} (checkpoint saved)"
    assert f"interrupted (stopped on request after step {step}" in capsys.readouterr().out


# --- progress board ---------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_board_counts_rates_and_eta(tiny_dataset_id: str, tmp_path: Path) -> None:
    path = write_matrix(tmp_path / "m.toml", "board", tiny_dataset_id,
                        "seeds = [0, 1, 2, 3]\n" + SHORT_BUDGET)
    cells = load_matrix(path).cells()
    clock, out = FakeClock(), io.StringIO()
    board = ProgressBoard(cells, "board", workers=2, live=True, out=out, clock=clock)
    assert not board.live  # StringIO is not a terminal: one line per event instead
    a, b, c, d = (cell.hash for cell in cells)
    assert board.eta_seconds() is None
    board.started(a, {})
    board.progress(a, {"phase": "offline", "step": 10, "total": 50, "score": float("nan")})
    clock.now = 2.0
    board.progress(a, {"phase": "offline", "step": 30, "total": 50, "score": 12.5})
    board.finished(b, {"status": "failed", "error": "FloatingPointError: non-finite train/loss"})
    board.finished(c, {"status": "elsewhere", "detail": "locked by pid 1 on x"})
    # 10 steps/s per cell; left: 20 of a + 50 of d, over min(2 workers, 2 cells) cells in parallel.
    assert board.eta_seconds() == pytest.approx((20 + 50) / (10.0 * 2))
    assert board.counts() == {"finished": 0, "running": 1, "failed": 1, "elsewhere": 1, "interrupted": 0,
                              "pending": 1}
    assert board.header() == ("board: 0/4 finished · 1 running · 1 failed · 1 pending · 1 running elsewhere"
                              " · ETA 4s")
    clock.now = 5.0
    board.finished(a, {"status": "finished", "score": 40.0})
    lines = out.getvalue().splitlines()
    assert lines[0] == f"[0/4] {cells[0].label} [{a[:8]}] start"
    assert lines[1].endswith("FAILED: FloatingPointError: non-finite train/loss")
    assert lines[-1] == f"[3/4] {cells[0].label} [{a[:8]}] finished in 5s, score 40.0"
    assert not board.all_finished()
    summary = board.summary()
    assert summary[0] == "board: 4 cells: 1 finished, 1 failed, 1 running elsewhere, 1 not run"
    assert board.table().row_count == 1  # running and failed cells are listed; b is the failed one
    assert len(board.render().renderables) == 2  # the header line and that table
    # A cell stopped on request (SIGINT/SIGTERM) is counted and listed as interrupted, not failed.
    board.started(d, {})
    board.finished(d, {"status": "interrupted", "detail": "stopped on request after step 7 (checkpoint saved)"})
    assert out.getvalue().splitlines()[-1] == (f"[4/4] {cells[3].label} [{d[:8]}] interrupted (stopped on "
                                               "request after step 7 (checkpoint saved))")
    assert board.summary() == [
        "board: 4 cells: 1 finished, 1 failed, 1 running elsewhere, 1 interrupted, 0 not run",
        f"  failed: {cells[1].label} [{b}]: FloatingPointError: non-finite train/loss",
        f"  running elsewhere: {cells[2].label} [{c}]: locked by pid 1 on x",
        f"  interrupted: {cells[3].label} [{d}]: stopped on request after step 7 (checkpoint saved)"]


def test_status_of_a_matrix_never_run_lists_every_cell_missing(
    tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_matrix(tmp_path / "m.toml", "never", tiny_dataset_id, "seeds = [0, 1]\n" + SHORT_BUDGET)
    matrix = load_matrix(path)
    results, uri = store(tmp_path)
    assert matrix_status(matrix, uri, results) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 cells: 2 missing"
    for cell in matrix.cells():
        assert any(cell.hash in line and "missing" in line for line in out)
    assert MlflowClient(uri).get_experiment_by_name("never") is None  # status only reads
