"""The `baq` command line: help on every subcommand, one-line errors, a real tiny `baq train`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from suite.checkpoint import load
from suite.cli import build_parser, main

SWITCH = Path(__file__).resolve().parents[2] / "experiments" / "switch.toml"


@pytest.mark.parametrize("sub", ["train", "run", "status", "report", "datasets", "algos", "sync"])
def test_every_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([sub, "--help"])
    assert exit_.value.code == 0
    assert f"usage: baq {sub}" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "baq"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "report" in out.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--algo", "ppo"], "unknown algorithm 'ppo'; accepted: "),
        (["train", "--set", "expectile"], "--set expects KEY=VALUE, got 'expectile'"),
        (["train", "--set", "expectile=high"], "parameter 'expectile' of algorithm 'iql' must be float"),
        (["train", "--dataset", "kaggle:foo"], "kaggle"),
        (["algos", "dqn"], "unknown algorithm 'dqn'"),
        (["train", "--set", "actor_dropout=0.1", "--vectorize-seeds", "2"], "not available for algorithm 'iql'"),
        (["train", "--vectorize-seeds", "1"], "--vectorize-seeds must be >= 2, got 1"),
        (["train", "--threads", "0"], "threads must be >= 1, got 0"),
        (["run", str(SWITCH), "--only", "algo=ppo", "--dry-run"], "--only algo=ppo: not in "),
        (["status", str(SWITCH), "--only", "seed"], "--only expects KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture,
                                     tmp_path: Path) -> None:
    code = main([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("baq: error: ") and message in err
    assert err.count("\n") == 1


def test_run_only_narrows_the_dry_run(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(SWITCH), "--only", "algo=cql", "--only", "dataset=local:hopper-medium",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out[:-1] if line[:1].isdigit()]  # the last line is the count
    assert [(r[1], r[2], r[3]) for r in rows] == [("cql", "local:hopper-medium", "0"),
                                                  ("cql", "local:hopper-medium", "1")]
    assert out[-1] == "2 cells"


def test_algos_lists_defaults(capsys: pytest.CaptureFixture) -> None:
    assert main(["algos", "iql"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("iql: ") and '"expectile": 0.7' in out and '"temperature": 3.0' in out


def test_train_end_to_end(tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["train", "--algo", "iql", "--dataset", tiny_dataset_id, "--offline-steps", "20",
                 "--online-steps", "10", "--eval-interval", "10", "--eval-episodes", "1", "--log-interval", "10",
                 "--max-episode-steps", "20", "--batch-size", "16", "--set", "expectile=0.8",
                 "--tracking-uri", uri, "--run-dir", str(tmp_path / "run"), "--experiment", "cli"])
    out = capsys.readouterr().out
    assert code == 0
    assert "offline normalized score: " in out and "online normalized score: " in out
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["algo_params.expectile"] == "0.8"
    assert f"MLflow run {run.info.run_id}" in out


def test_train_ctrl_c_checkpoints_and_the_same_command_continues(tiny_dataset_id: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "suite.cli", "train", "--dataset", tiny_dataset_id, "--offline-steps", "1000",
               "--online-steps", "0", "--eval-interval", "1000", "--eval-episodes", "1", "--log-interval", "100",
               "--checkpoint-interval", "100000", "--batch-size", "16", "--tracking-uri", uri,
               "--run-dir", str(tmp_path / "run"), "--experiment", "stop"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "run.json").exists():  # written once the stop handlers are in place
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = load(tmp_path / "run" / "checkpoint.pt")["step"]  # no periodic checkpoint: the stop wrote it
    assert 0 < step < 1000
    assert f"baq: stopped on request after step {step} (checkpoint saved); rerun the same command" in err
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert run.info.status == "KILLED"

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("stop").experiment_id])  # the same run, finished
    assert run.info.status == "FINISHED" and run.info.run_id in again.stdout
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/critic_loss")]
    assert steps == list(range(100, 1001, 100))  # every logged step once: nothing was trained twice


def test_train_vectorized_seeds(tiny_dataset_id: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["train", "--algo", "iql", "--dataset", tiny_dataset_id, "--seed", "3", "--vectorize-seeds", "2",
                 "--offline-steps", "20", "--online-steps", "10", "--eval-interval", "10", "--eval-episodes", "1",
                 "--log-interval", "10", "--max-episode-steps", "20", "--batch-size", "16",
                 "--tracking-uri", uri, "--run-dir", str(tmp_path / "run"), "--experiment", "vec"])
    out = capsys.readouterr().out
    assert code == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("vec").experiment_id])
    by_seed = {r.data.params["seed"]: r for r in runs}
    assert sorted(by_seed) == ["3", "4"]  # one MLflow run per seed, recorded like a separate run
    for seed, run in by_seed.items():
        assert run.info.status == "FINISHED" and run.data.tags["baq.vectorized_seeds"] == "2"
        assert (tmp_path / "run" / f"s{seed}" / "eval.csv").exists()
        assert f"seed {seed}: offline normalized score" in out and run.info.run_id in out
