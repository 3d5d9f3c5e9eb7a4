"""`baq`: train one run, run a matrix, show its status, write its report, manage datasets.

The CLI is thin: every subcommand parses its arguments and calls one function of the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from suite import stop
from suite.errors import UserError


def _parse_value(text: str) -> Any:
    """TOML scalar/array syntax for --set values (1e-4, true, [256, 256], "cosine"); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from suite.tracking import check_store

    check_store(args.tracking_uri)  # a tracking server that is not there: seconds, before torch is imported
    from suite.launch import launch
    from suite.progress_bar import TrainProgress
    from suite.train import TrainConfig

    cfg = TrainConfig(
        algo=args.algo, dataset=args.dataset, seed=args.seed, offline_steps=args.offline_steps,
        online_steps=args.online_steps, batch_size=args.batch_size, utd=args.utd,
        eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
        checkpoint_interval=args.checkpoint_interval, log_interval=args.log_interval,
        max_episode_steps=args.max_episode_steps, device=args.device, compile=args.compile,
        algo_params=_parse_sets(args.set),
    ).validate()
    if args.vectorize_seeds is not None:
        return _train_vectorized(cfg, args)
    run_dir = _train_run_dir(cfg, args.run_dir)
    _set_threads(args.threads)
    with stop.graceful(announce=True), TrainProgress(cfg) as bar:  # Ctrl-C / SIGTERM: checkpoint, then stop
        result = launch(cfg, args.experiment, run_dir, args.tracking_uri, progress=bar.update)
    print(f"offline normalized score: {_fmt(result.offline_score)}")
    print(f"online normalized score:  {_fmt(result.online_score)}")
    print(f"MLflow run {result.run_id} in experiment {args.experiment!r} at {_uri(args.tracking_uri)}")
    print(f"run directory: {run_dir}")
    return 0


def _train_run_dir(cfg: Any, run_dir: str | None) -> Path:
    if run_dir:
        return Path(run_dir)
    return (Path(os.environ.get("BAQ_RESULTS_DIR", "results")) / "train"
            / f"{cfg.algo}-{re.sub(r'[^A-Za-z0-9_.=-]', '-', cfg.dataset)}-s{cfg.seed}")  # ':/?&' -> '-'


def _train_vectorized(cfg: Any, args: argparse.Namespace) -> int:
    """`--vectorize-seeds N`: seeds seed … seed+N−1 as one batched network, one MLflow run and one run
    directory each (`<run-dir>/s<seed>` when --run-dir is given)."""
    import dataclasses

    from suite.launch import launch_vectorized
    from suite.progress_bar import TrainProgress

    if args.vectorize_seeds < 2:
        raise UserError(f"--vectorize-seeds must be >= 2, got {args.vectorize_seeds}")
    cfgs = [dataclasses.replace(cfg, seed=cfg.seed + k) for k in range(args.vectorize_seeds)]
    run_dirs = [Path(args.run_dir) / f"s{c.seed}" if args.run_dir else _train_run_dir(c, None) for c in cfgs]
    _set_threads(args.threads)
    with stop.graceful(announce=True), TrainProgress(cfg) as bar:
        results = launch_vectorized(cfgs, args.experiment, run_dirs, args.tracking_uri,
                                    progress=[bar.update] + [None] * (len(cfgs) - 1))  # the bar follows the first seed
    for c, result, run_dir in zip(cfgs, results, run_dirs, strict=True):
        print(f"seed {c.seed}: offline normalized score {_fmt(result.offline_score)}, online "
              f"{_fmt(result.online_score)}, MLflow run {result.run_id}, run directory {run_dir}")
    print(f"experiment {args.experiment!r} at {_uri(args.tracking_uri)}")
    return 0


def _load_matrix(args: argparse.Namespace) -> Any:
    """The matrix file of `baq run` / `baq status`, narrowed by their `--only` options."""
    from suite.matrix import load_matrix

    matrix = load_matrix(Path(args.file))
    return matrix.restrict(args.only) if args.only else matrix


def _cmd_run(args: argparse.Namespace) -> int:
    from suite.tracking import check_store

    if not args.dry_run:
        check_store(args.tracking_uri)
    from suite.runner import print_dry_run, run_matrix

    matrix = _load_matrix(args)
    if args.dry_run:
        print_dry_run(matrix)
        return 0
    return run_matrix(
        matrix, workers=args.workers, backend=args.backend, address=args.address, force=args.force,
        tracking_uri=args.tracking_uri, results_dir=Path(os.environ.get("BAQ_RESULTS_DIR", "results")),
        vectorize_seeds=args.vectorize_seeds, threads=args.threads,
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from suite.runner import matrix_status

    return matrix_status(_load_matrix(args), args.tracking_uri)


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import report_cli

    return report_cli(args.source, tracking_uri=args.tracking_uri, seed=args.seed, reps=args.reps,
                      out_root=Path(args.out) if args.out else None, bundles=args.bundle)


def _cmd_export(args: argparse.Namespace) -> int:
    from analysis.report import matrix_from_file
    from suite.bundle import bundle_folder
    from suite.bundle_store import export_runs

    path, matrix = Path(args.source), None
    if path.is_file():
        experiment, matrix = matrix_from_file(path)
    elif args.source.endswith(".toml"):
        raise UserError(f"matrix file {args.source} not found; accepted: a matrix file or an MLflow experiment name")
    else:
        experiment = args.source
    folder = bundle_folder(Path(args.out or os.environ.get("BAQ_RESULTS_DIR", "results")), experiment)
    counts = export_runs(experiment, _uri(args.tracking_uri), folder, matrix=matrix,
                         include_unfinished=args.include_unfinished)
    size = sum(f.stat().st_size for f in folder.iterdir()) if folder.is_dir() else 0
    print(f"exported {experiment!r} to {folder}: {counts['new']} new, {counts['updated']} updated, "
          f"{counts['unchanged']} unchanged run(s); {counts['left_out']} unfinished cell(s) left out"
          f"{'' if args.include_unfinished else ' (--include-unfinished exports them)'}; {size / 1024:.0f} KB")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from suite.bundle_store import import_bundle

    uri = _uri(args.tracking_uri)
    counts = import_bundle([Path(b) for b in args.bundle], uri)
    print(f"imported {counts['imported']} run(s) into {uri}; {counts['skipped']} already there")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from suite import data

    if args.action == "list":
        for row in data.list_datasets():
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    elif args.action == "info":
        print(json.dumps(data.dataset_info(args.id), indent=2, default=str))
    elif args.action == "download":
        print(data.download_dataset(args.id))
    elif args.action == "build":
        name = args.id.removeprefix("local:")
        ds = data.build_local(name, n_transitions=args.transitions, seed=args.seed, force=args.force)
        print(f"built local:{name}: {len(ds)} transitions, sha256 {ds.sha256[:12]}")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from suite.sync import sync_command

    target = Path(args.target or os.environ.get("BAQ_RESULTS_DIR", "results"))
    if target.suffix != ".toml":
        return sync_command(target)
    from suite.matrix import load_matrix
    from suite.runner import cell_dir

    matrix, results = load_matrix(target), Path(os.environ.get("BAQ_RESULTS_DIR", "results"))
    return sync_command(target, [cell_dir(results, matrix.name, c.hash) for c in matrix.cells()])


def _cmd_behavior(args: argparse.Namespace) -> int:
    from suite.behavior.cli import behavior_train

    return behavior_train(args)


def _cmd_algos(args: argparse.Namespace) -> int:
    from suite.algorithm import algorithm_names, config_dict, make_config

    names = [args.name] if args.name else algorithm_names()
    for name in names:
        print(f"{name}: {json.dumps(config_dict(make_config(name)))}")
    return 0


def _set_threads(n: int) -> None:
    import torch

    if n < 1:
        raise UserError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _uri(uri: str | None) -> str:
    from suite.tracking import default_tracking_uri

    return uri or default_tracking_uri()


ONLY_HELP = ("only the cells with this algo, dataset, seed or cell hash prefix (comma-separated alternatives; "
             "repeat for several keys), e.g. --only algo=cql --only seed=0,1, or --only cell=319df94b")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="baq", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add_commands in (_add_train, _add_matrix_commands, _add_result_commands, _add_data_commands):
        add_commands(sub)
    return p


def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train one algorithm offline then online, tracked in MLflow")
    t.add_argument("--algo", default="iql", help="algorithm name (see `baq algos`)")
    t.add_argument("--dataset", default="local:halfcheetah-medium",
                   help="dataset id: d4rl:<name>, minari:<id> or local:<env>-<quality>")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--offline-steps", type=int, default=1_000_000)
    t.add_argument("--online-steps", type=int, default=1_000_000)
    t.add_argument("--batch-size", type=int, default=None, help="default: the algorithm's paper's (see `baq algos`)")
    t.add_argument("--utd", type=int, default=1, help="gradient updates per online env step")
    t.add_argument("--eval-interval", type=int, default=5_000)
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--checkpoint-interval", type=int, default=50_000)
    t.add_argument("--log-interval", type=int, default=1_000)
    t.add_argument("--max-episode-steps", type=int, default=1_000)
    t.add_argument("--device", default="cpu")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (opt-in; pays on GPUs, not on one CPU core)")
    t.add_argument("--vectorize-seeds", type=int, default=None, metavar="N",
                   help="train seeds SEED..SEED+N-1 as one batched network (for GPUs; iql, cql)")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="algorithm parameter override, repeatable (e.g. --set expectile=0.9)")
    t.add_argument("--experiment", default="baq", help="MLflow experiment name")
    t.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI "
                   "or sqlite:///results/mlflow.db)")
    t.add_argument("--run-dir", default=None, help="checkpoint directory; an existing checkpoint is resumed")
    t.set_defaults(func=_cmd_train)


def _add_matrix_commands(sub: Any) -> None:
    r = sub.add_parser("run", help="run an experiment matrix (algorithms x datasets x seeds x overrides)")
    r.add_argument("file", help="matrix file, e.g. experiments/quickstart.toml")
    r.add_argument("--workers", type=int, default=None, help="parallel processes (default: cores)")
    r.add_argument("--backend", choices=["local", "ray"], default="local")
    r.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    r.add_argument("--force", action="store_true", help="rerun finished cells")
    r.add_argument("--dry-run", action="store_true", help="print the expanded cells and exit")
    r.add_argument("--vectorize-seeds", action="store_true",
                   help="train the seeds of each cell group as one batched network, one job per group "
                        "(for GPUs; iql, cql; other algorithms run as usual)")
    r.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (default 1: the most updates per core; more finish a "
                        "matmul-bound cell such as CQL sooner when cells are fewer than cores)")
    r.add_argument("--only", action="append", default=[], metavar="KEY=VALUE", help=ONLY_HELP)
    r.add_argument("--tracking-uri", default=None)
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("status", help="show a matrix's state from MLflow")
    s.add_argument("file")
    s.add_argument("--only", action="append", default=[], metavar="KEY=VALUE", help=ONLY_HELP)
    s.add_argument("--tracking-uri", default=None)
    s.set_defaults(func=_cmd_status)


def _add_result_commands(sub: Any) -> None:
    rep = sub.add_parser("report", help="score table, rliable aggregates and figures into results/<name>/")
    rep.add_argument("source", help="matrix file, bundle folder (results/<name>/runs) or MLflow experiment name")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (same seed -> identical intervals)")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions")
    rep.add_argument("--out", default=None, help="output root (default: results/)")
    rep.add_argument("--tracking-uri", default=None)
    rep.add_argument("--bundle", action="append", default=[], metavar="DIR",
                     help="bundle folder to read besides the store (repeatable; default: results/<name>/runs)")
    rep.set_defaults(func=_cmd_report)

    ex = sub.add_parser("export", help="write a matrix's runs as plain-text bundles into results/<name>/runs/")
    ex.add_argument("source", help="matrix file or MLflow experiment name")
    ex.add_argument("--include-unfinished", action="store_true",
                    help="also runs that did not finish (marked \"finished\": false)")
    ex.add_argument("--out", default=None, help="output root (default: results/)")
    ex.add_argument("--tracking-uri", default=None)
    ex.set_defaults(func=_cmd_export)

    im = sub.add_parser("import", help="recreate a bundle's runs in an MLflow store (for `mlflow ui`)")
    im.add_argument("bundle", nargs="+", help="bundle folder(s), e.g. results/switch/runs")
    im.add_argument("--tracking-uri", default=None)
    im.set_defaults(func=_cmd_import)


def _add_data_commands(sub: Any) -> None:
    d = sub.add_parser("datasets", help="build, list and inspect datasets")
    dsub = d.add_subparsers(dest="action", required=True)
    b = dsub.add_parser("build", help="build a local D4RL-protocol dataset from the behaviour files")
    b.add_argument("id", help="local:<env>-<quality>, e.g. local:hopper-medium")
    b.add_argument("--transitions", type=int, default=1_000_000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true")
    dsub.add_parser("list", help="list known and built datasets")
    i = dsub.add_parser("info", help="statistics of one dataset")
    i.add_argument("id")
    dl = dsub.add_parser("download", help="fetch a d4rl: or minari: dataset into its local store")
    dl.add_argument("id", help="d4rl:<name>-v2 or minari:<id>, e.g. minari:mujoco/hopper/medium-v0")
    d.set_defaults(func=_cmd_datasets)

    y = sub.add_parser("sync", help="deliver tracking records spooled while the MLflow store was away")
    y.add_argument("target", nargs="?", help="run directory, directory of runs or matrix file (default: results/)")
    y.set_defaults(func=_cmd_sync)

    from suite.behavior.cli import add_parser as add_behavior_parser

    add_behavior_parser(sub).set_defaults(func=_cmd_behavior)

    a = sub.add_parser("algos", help="list algorithms and their default configs")
    a.add_argument("name", nargs="?")
    a.set_defaults(func=_cmd_algos)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"baq: error: {err}", file=sys.stderr)
        return 2
    except stop.StopRequested as request:
        print(f"baq: {request}; rerun the same command to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("baq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
