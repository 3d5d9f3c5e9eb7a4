"""Sessions: `nox -s quickstart` (install, run a small real matrix, write its report), `nox -s tests`,
`nox -s lint`, `nox -s bench` (throughput against d3rlpy and the roofline), `nox -s gpu` (the prepared GPU
check)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
# torch 2.13.0 is a CPU wheel on these machines' disk; an unpinned torch pulls a multi-GB CUDA build, and uv
# does not see the local wheel, so installs go through pip with torch pinned first.
TORCH = os.environ.get("BAQ_TORCH", "torch==2.13.0")


def install(session: nox.Session, extras: str = "") -> None:
    session.install(TORCH)
    session.install("-e", f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    install(session, "[dev,ray]")  # ray: the runner's Ray backend is tested on a local Ray instance
    # One xdist worker per core, at most 4 (each holds ~1 GB and some tests start 2-worker runners of their own);
    # `loadgroup` keeps the tests that share one expensive fixture in one worker. `nox -s tests -- -n 0` runs serially.
    xdist = ["-n", "auto", "--maxprocesses", "4", "--dist", "loadgroup"]
    session.run("pytest", "-q", "-p", "no:cacheprovider", *xdist, *session.posargs, env={"MPLBACKEND": "Agg"})


@nox.session
def quickstart(session: nox.Session) -> None:
    install(session)
    # The matrix trains on local:hopper-medium-replay. Where no behaviour source has hopper (a fresh clone without
    # ../shared/behavior), a short SAC run makes one into ~/.cache/baq-suite/behavior: 3000 steps (1000 random),
    # a snapshot every 1000, about a minute on a free core. Its small replay stream is enough for the smoke test.
    session.run("baq", "behavior", "train", "Hopper-v5", "--if-missing", "--steps", "3000", "--random-steps", "1000",
                "--eval-interval", "1000", "--eval-episodes", "5", "--checkpoint-interval", "1000")
    matrix = "experiments/quickstart.toml"
    session.run("baq", "run", matrix)
    session.run("baq", "report", matrix)
    session.log("Results: results/quickstart/  (table.md, aggregates.csv, figures, README.md)")
    session.log("MLflow store: results/mlflow.db  ->  mlflow ui --backend-store-uri sqlite:///results/mlflow.db")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    install(session)
    # d3rlpy 2.8.1 pins gymnasium==1.0.0; the peer only needs its update step, so keep the suite's gymnasium
    # and install d3rlpy without its pins, plus what it imports.
    session.install("--no-deps", "d3rlpy==2.8.1")
    session.install("gym==0.26.2", "structlog", "colorama", "dataclasses-json", "click", "tqdm")
    session.run("python", "-m", "benchmarks.throughput", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """The prepared GPU check (benchmarks/gpu_check.py): every algorithm on cuda offline and online, seed
    vectorisation against separate seeds, the throughput table on cuda; says so and exits 0 without a GPU.
    Needs a CUDA build of torch: set BAQ_TORCH to the pin that pulls one on that machine."""
    install(session)
    session.run("python", "-m", "benchmarks.gpu_check", *session.posargs)
