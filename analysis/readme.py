"""The README of a report folder: every file, the runs behind it, git commits, seed, reps, what is missing."""

from __future__ import annotations

import pandas as pd

from analysis.code_versions import training_code_lines
from analysis.scores import Analysis, format_value
from analysis.style import task_names
from analysis.tables import ScoreTable

# Which runs feed each kind of file (README wording), by file name prefix.
_ALL, _USED, _AGG = "all runs", "used runs", "runs in the aggregates"
_SOURCES = {"scores.csv": _ALL, "runs.csv": _ALL, "table.": _USED, "cells.csv": _USED,
            "learning_curves.": _USED, "sensitivity_": _AGG, "aggregates.csv": _AGG,
            "interval_estimates.": _AGG,
            "probability_of_improvement.": _AGG, "performance_profiles.": _AGG, "iqm_curve.": _AGG,
            "variants": _AGG, "improvement_over_reference.": _AGG}


def _source(name: str) -> str:
    return next((who for prefix, who in _SOURCES.items() if name.startswith(prefix)), "—")


def _git_lines(runs: pd.DataFrame) -> list[str]:
    """One line per commit the runs record, then whether those commits share their training code."""
    shas = runs["git_sha"].fillna("").astype(str)
    dirty = runs["git_dirty"].astype(str).str.lower() == "true"
    lines = []
    for sha, group in runs.groupby(shas.replace("", "(unknown)"), sort=True):
        flag = " (dirty working tree in some runs)" if dirty[group.index].any() else ""
        lines.append(f"  - `{sha}`: {len(group)} run(s){flag}")
    return lines + training_code_lines(shas.tolist(), any_dirty=bool(dirty.any()))


def _cpu_lines(runs: pd.DataFrame) -> list[str]:
    """The processor models the runs name (their `host.cpu` tag): one config and seed gives bit-identical
    numbers on one kind of CPU only, so a comparison across kinds differs by more than the algorithms."""
    models = runs["host_cpu"].fillna("").astype(str).replace("", "(not recorded)")
    lines = [f"  - {model}: {count} run(s)" for model, count in sorted(models.value_counts().items())]
    if len(lines) > 1:
        lines.append("  - Runs come from more than one kind of CPU (or do not say which): the same config and "
                     "seed agrees across kinds only to rounding, and then drifts.")
    return lines


def readme_text(analysis: Analysis, table: ScoreTable, runs: pd.DataFrame, described: dict[str, str], *,
                seed: int, reps: int, source: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """The README; `extra` lines (Markdown list items) close its Reproducibility section."""
    n_all, n_used, n_agg = len(runs), int(runs["used"].sum()), int(runs["in_aggregates"].sum())
    counts = {_ALL: f"all {n_all} runs", _USED: f"{n_used} used runs",
              _AGG: f"{n_agg} runs in the aggregates"}
    lines = [
        f"# Report: {analysis.experiment}", "",
        f"{source}: {n_all} runs, {n_used} used in the "
        f"table (one finished run per method × task × seed), {n_agg} in the rliable aggregates.", "",
        "## Reproducibility", "",
        f"- Bootstrap seed: `{seed}`; bootstrap replications: `{reps}`. 95% intervals are rliable's "
        "stratified bootstrap (percentile method). The same runs, seed and reps give identical numbers.",
        "- Scores are normalized scores (0 = random, 100 = expert) with D4RL's reference returns, or for a task "
        "D4RL lacks the behaviour files' own (the runs' `dataset.reference_scores` tag); optimality gap "
        "threshold = 100.",
        "- Git commits of the runs:", *_git_lines(runs),
        "- CPU models of the runs:", *_cpu_lines(runs),
    ]
    if analysis.common_overrides:
        common = ", ".join(f"`{k}={format_value(v)}`" for k, v in sorted(analysis.common_overrides.items()))
        lines.append(f"- Overrides shared by every run: {common}")
    if analysis.swept:
        lines.append(f"- Swept parameters (one table column per combination): "
                     f"{', '.join(f'`{k}`' for k in analysis.swept)}")
    lines += list(extra)
    lines += ["", "## Files", "", "| File | What | From |", "|---|---|---|"]
    for name in sorted(described):
        if name in ("README.md", "manifest.json"):
            continue
        source = _source(name)
        lines.append(f"| `{name}` | {described[name]} | {counts.get(source, source)} |")
    lines += ["| `manifest.json` | names of the files of this report (stale files of earlier reports are "
              "removed) | — |", "", "## Incomplete", ""]
    if table.notes or analysis.warnings:
        lines += [f"- {note}" for note in table.notes] + [f"- {w}" for w in analysis.warnings]
    else:
        lines.append("Nothing: every expected cell has all its seeds and every run was used.")
    names = task_names(sorted(set(runs["dataset"])))
    lines += ["", "## Runs", "",
              "| Method | Task | Seed | MLflow run id | Status | Used | In aggregates | Note |",
              "|---|---|---:|---|---|---|---|---|"]
    ordered = runs.sort_values(["method", "dataset", "seed", "start_time"], kind="stable")
    for r in ordered.itertuples(index=False):
        lines.append(f"| {r.method} | {names[r.dataset]} | {r.seed} | `{r.run_id}` | {r.status} | "
                     f"{'yes' if r.used else 'no'} | {'yes' if r.in_aggregates else 'no'} | {r.note} |")
    return "\n".join(lines) + "\n"
