"""`report(experiment) -> results/<name>/`: tidy scores, the score table, rliable aggregates and figures, and
a README saying what every file is, which runs it came from and what was incomplete."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from analysis import aggregate, figures, files, switch, variants
from analysis.readme import readme_text
from analysis.runs import LoadedRuns, runs_from_records
from analysis.scores import Analysis, analyse
from analysis.sources import collect
from analysis.style import DPI, figure_style, method_colors
from analysis.tables import ScoreTable, score_table
from suite.bundle import RUN_SUFFIX, bundle_folder, safe_name
from suite.errors import UserError
from suite.matrix_spec import read_spec

RUN_CSV_COLUMNS = ["run_id", "method", "algorithm", "dataset", "seed", "status", "used", "in_aggregates",
                   "note", "offline_steps", "n_evals", "offline", "online", "overrides", "git_sha",
                   "git_dirty", "host_cpu", "error"]


def redact_uri(uri: str | None) -> str:
    """The tracking URI without any user:password part, fit to be written into a README."""
    if uri is None:
        return "(MLflow default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)"
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def _check(seed: int, reps: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"seed {seed!r} invalid; accepted: an integer >= 0")
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise UserError(f"reps {reps!r} invalid; accepted: an integer >= 1 (bootstrap replications)")


def _score_upper(finals: pd.DataFrame) -> float:
    """Top of the performance-profile thresholds: 100 (expert), or beyond it when runs score higher."""
    values = finals[["offline", "online"]].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    best = float(values.max()) if values.size else 100.0
    return max(100.0, math.ceil(best / 10.0) * 10.0)


class _Writer:
    """Writes files into the report folder and remembers what each one is, for the README and manifest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.described: dict[str, str] = {}

    def csv(self, name: str, frame: pd.DataFrame, what: str) -> None:
        files.write_csv(self.folder / name, frame)
        self.described[name] = what

    def text(self, name: str, text: str, what: str) -> None:
        files.write_text(self.folder / name, text)
        self.described[name] = what

    def figure(self, stem: str, fig, what: str) -> None:
        for path in files.save_figure(fig, self.folder / stem, dpi=DPI):
            self.described[path.name] = what


def _remove_stale(folder: Path, fresh: set[str]) -> None:
    """Delete files that an earlier report in this folder listed and this one did not write again."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return
    try:
        earlier = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (json.JSONDecodeError, AttributeError):
        return
    for name in earlier:
        if name not in fresh and "/" not in name and (folder / name).is_file():
            (folder / name).unlink()


def report(source: str | None, *, tracking_uri: str | None, out_dir: Path, seed: int = 0, reps: int = 2000,
           matrix: dict | None = None, bundles: list[Path] | tuple[Path, ...] = (), use_store: bool = True) -> Path:
    """Analyse the runs of experiment `source` into `out_dir/<name>/`; returns that folder. The runs come from
    the MLflow store at `tracking_uri` (unless `use_store` is false) and the bundle folders `bundles`; with no
    `source` the bundles name the experiment, and with no `matrix` their recorded matrix gives the cells."""
    _check(seed, reps)
    found = collect(source, tracking_uri=tracking_uri, bundles=list(bundles), use_store=use_store,
                    shown_uri=redact_uri(tracking_uri))
    source = found.experiment
    loaded = runs_from_records(source, found.records)
    analysis = analyse(loaded, matrix if matrix is not None else found.matrix)
    folder = Path(out_dir) / safe_name(source)
    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(folder)

    matrices = aggregate.score_matrices(analysis)
    analysis.warnings.extend(matrices.warnings)
    runs = analysis.runs.assign(in_aggregates=analysis.runs["run_id"].isin(matrices.members["run_id"]))
    table = _write_tables(writer, analysis, loaded, runs)
    aggregates, poi, profiles = _write_aggregates(writer, analysis, matrices, seed, reps)
    used = runs.loc[runs["used"]]
    dips = switch.switch_dips(loaded.scores, used)
    writer.csv("switch.csv", dips, "per run: end of offline, lowest eval right after the switch, drop, "
               "recovery time")
    writer.csv("switch_summary.csv", switch.switch_summary(dips),
               "per (method, task): mean drop after the switch over seeds, worst drop, runs recovered")
    colors = method_colors(analysis.methods)
    curves_input = loaded.scores.merge(used[["run_id", "method", "offline_steps"]], on="run_id")
    variant_lines = variants.write_outputs(writer, analysis, aggregates, matrices, dips, curves_input, colors,
                                           seed=seed, reps=reps)
    switch_of_method = used.groupby("method")["offline_steps"].max().to_dict()
    known = len(matrices.warnings)
    curves = aggregate.iqm_curves(curves_input, matrices, seed, reps, switch_of_method)
    analysis.warnings.extend(matrices.warnings[known:])  # the curve's own warnings, for the README
    writer.csv("iqm_curve.csv", curves, "IQM vs step with 95% intervals")
    with figure_style():
        _curve_figures(writer, analysis, colors, curves_input, curves, sorted(set(switch_of_method.values())))
        _aggregate_figures(writer, analysis, colors, aggregates, profiles, poi)

    fresh = set(writer.described) | {"README.md", "manifest.json"}
    _remove_stale(folder, fresh)
    writer.text("README.md", readme_text(analysis, table, runs, writer.described, seed=seed, reps=reps,
                                         source=found.described, extra=variant_lines), "this file")
    writer.text("manifest.json", json.dumps({"experiment": source, "seed": int(seed), "reps": int(reps),
                                             "files": sorted(fresh)}, indent=2) + "\n", "list of files")
    return folder


def _write_tables(writer: _Writer, analysis: Analysis, loaded: LoadedRuns, runs: pd.DataFrame) -> ScoreTable:
    writer.csv("scores.csv", loaded.scores, "tidy eval history: one row per (run, eval step)")
    writer.csv("runs.csv", runs.reindex(columns=RUN_CSV_COLUMNS + loaded.override_keys), "one row per run")
    table = score_table(analysis)
    writer.text("table.md", table.markdown, "score table (Markdown)")
    writer.text("table.tex", table.latex, "score table (LaTeX, booktabs)")
    writer.csv("cells.csv", analysis.cells, "per (method, task) statistics behind the table")
    return table


def _write_aggregates(writer: _Writer, analysis: Analysis, matrices: aggregate.ScoreMatrices, seed: int,
                      reps: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """rliable's aggregates, BAQ's probability of improvement and the performance profiles, written."""
    aggregates = aggregate.interval_estimates(matrices.matrices, seed, reps)
    writer.csv("aggregates.csv", aggregates, "IQM, mean, median, optimality gap with 95% intervals")
    algorithm_of = dict(zip(analysis.cells["method"], analysis.cells["algorithm"], strict=False))
    pairs = aggregate.improvement_pairs(list(matrices.matrices["online"]), algorithm_of)
    poi = aggregate.improvement_probabilities(matrices.matrices, pairs, seed, reps)
    if aggregates.empty:
        analysis.warnings.append("no rliable aggregates: no method has a finished run on every task kept")
    elif not pairs:
        analysis.warnings.append("no probability of improvement: it needs BAQ and a method of another "
                                 "algorithm in the aggregates")
    writer.csv("probability_of_improvement.csv", poi, "P(BAQ > other) with 95% intervals")
    taus = np.linspace(0.0, _score_upper(analysis.finals), 101)
    profiles = {p: aggregate.performance_profiles(matrices.matrices[p], taus, seed, reps) for p in aggregate.PHASES}
    writer.csv("performance_profiles.csv",
               pd.concat([f.assign(phase=p) for p, f in profiles.items()], ignore_index=True),
               "score distributions with 95% bands")
    return aggregates, poi, profiles


def _curve_figures(writer: _Writer, analysis: Analysis, colors: dict, curves_input: pd.DataFrame,
                   curves: pd.DataFrame, switch_steps: list[int]) -> None:
    if not curves_input.empty:
        switches = {d: sorted(set(g["offline_steps"])) for d, g in curves_input.groupby("dataset")}
        writer.figure("learning_curves", figures.learning_curves(
            curves_input, analysis.methods, analysis.datasets, colors, switches),
            f"per-task learning curves (mean over seeds; {figures.SEED_BAND}; dashed: offline→online)")
    if not curves.empty:
        writer.figure("iqm_curve", figures.iqm_curve(curves, analysis.methods, colors, switch_steps),
                      "aggregate IQM vs step with 95% stratified-bootstrap band")


def _aggregate_figures(writer: _Writer, analysis: Analysis, colors: dict, aggregates: pd.DataFrame,
                       profiles: dict[str, pd.DataFrame], poi: pd.DataFrame) -> None:
    if not aggregates.empty:
        writer.figure("interval_estimates", figures.interval_estimates(aggregates, analysis.methods, colors),
                      "IQM, mean, median, optimality gap with 95% intervals")
        writer.figure("performance_profiles", figures.performance_profiles(profiles, analysis.methods, colors),
                      "performance profiles (score distributions)")
    if not poi.empty:
        writer.figure("probability_of_improvement", figures.improvement_probabilities(poi, colors),
                      "probability of improvement of BAQ over each other method")


# Matrices whose table is the BAQ paper's (local_table is the same 9 tasks on locally built datasets): their
# report prints the published totals beside ours.
PAPER_MATRICES = {"paper_table"}  # published D4RL totals; local_table is not D4RL data


def matrix_from_file(path: Path) -> tuple[str, dict]:
    """(experiment name, expected cells in their JSON form) from a matrix file (experiments/*.toml), read and
    validated by the runner's own parser (suite/matrix_spec.py, which needs no torch)."""
    spec = read_spec(path)
    return spec.name, spec.expected(paper=spec.name in PAPER_MATRICES).as_dict()


def report_cli(source: str, *, tracking_uri: str | None, seed: int = 0, reps: int = 2000,
               out_root: Path | None = None, bundles: list[str] | None = None) -> int:
    """`baq report SOURCE`: a matrix file names the experiment and its expected cells; a folder is a bundle
    (its runs alone, no store); anything else is an experiment name. A matrix file or an experiment reads the
    store and the bundle `results/<name>/runs/` when it exists (or the `--bundle` folders instead). Store and
    output default to the runner's: $BAQ_RESULTS_DIR or ./results."""
    from suite.tracking import default_tracking_uri

    out = Path(out_root) if out_root else Path(os.environ.get("BAQ_RESULTS_DIR", "results"))
    path, matrix, use_store = Path(source), None, True
    extra = [Path(b) for b in bundles or []]
    if path.is_dir():
        experiment, folders, use_store = None, [_bundle_folder(path), *extra], False
    elif path.is_file() or source.endswith(".toml"):
        if not path.is_file():
            raise UserError(f"matrix file {source} not found; accepted: a matrix file, a bundle folder or an "
                            "MLflow experiment name")
        experiment, matrix = matrix_from_file(path)
        folders = extra or _default_bundle(out, experiment)
    else:
        experiment, folders = source, extra or _default_bundle(out, source)
    uri = tracking_uri or default_tracking_uri()
    folder = report(experiment, tracking_uri=uri, out_dir=out, seed=seed, reps=reps, matrix=matrix,
                    bundles=folders, use_store=use_store)
    print(f"report for {folder.name!r} written to {folder} (README.md lists the files and what is incomplete)")
    return 0


def _bundle_folder(path: Path) -> Path:
    """A bundle folder, or a report folder whose `runs/` is one."""
    has_runs = any(path.glob("*" + RUN_SUFFIX))
    return path / "runs" if not has_runs and (path / "runs").is_dir() else path


def _default_bundle(out: Path, experiment: str) -> list[Path]:
    folder = bundle_folder(out, experiment)
    return [folder] if any(folder.glob("*" + RUN_SUFFIX)) else []
