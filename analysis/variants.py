"""Variants of a swept algorithm (e.g. BAQ's schedule families and one-part-off ablations) measured against the
report's reference algorithm: per variant the final score and the drop after the offline→online switch with
95% stratified-bootstrap intervals over seeds, the sensitivity figures, and the rliable probability of
improvement of each variant over the reference (docs/analysis.md, *Variants and their reference*).

- A **variant** is a method of a swept algorithm: one with more than one method in the report.
- The **reference** is IQL when the report has IQL and does not sweep it; otherwise the one algorithm that
  is not swept, when there is exactly one; otherwise there is none, and nothing is measured against one.

Every bootstrap runs inside `aggregate.seeded_global_rng`, keyed by what is estimated and for which method(s),
so the files are identical for the same runs, seed and reps. The probability of improvement is computed by
`aggregate.improvement_probabilities`, with its keys: a pair also in `probability_of_improvement.csv` has the
same numbers in both files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rliable import library as rly
from rliable import metrics

from analysis import aggregate, figures
from analysis.scores import Analysis, display_name, short_names
from analysis.style import figure_style

PREFERRED_REFERENCE = "iql"
STATS_COLUMNS = ["method", "algorithm", "role", "n_runs", "n_tasks", "final", "final_low", "final_high",
                 "drop", "drop_low", "drop_high", "same_evals", "paired_runs"]
POI_COLUMNS = ["variant", "reference", "phase", "probability", "ci_low", "ci_high", "n_runs_variant",
               "n_runs_reference", "n_tasks"]


class Writer(Protocol):
    """The report's file writer (analysis.report._Writer): writes a file and records what it is."""

    def csv(self, name: str, frame: pd.DataFrame, what: str) -> None: ...

    def text(self, name: str, text: str, what: str) -> None: ...

    def figure(self, stem: str, fig: Figure, what: str) -> None: ...


@dataclass(frozen=True)
class Variants:
    """The swept algorithms' methods and the reference they are measured against."""

    by_algorithm: dict[str, list[str]]  # swept algorithm → its methods, in table order
    reference_algorithm: str | None
    reference: str | None  # the reference's one method (column), or None
    rule: str  # which reference and why (or why none), one sentence for the README

    @property
    def methods(self) -> list[str]:
        return [m for methods in self.by_algorithm.values() for m in methods]


def choose_reference(algorithms: list[str], swept: set[str]) -> tuple[str | None, str]:
    """(reference algorithm or None, the rule's verdict): IQL if present and not swept, else the only
    algorithm that is not swept, else none."""
    others = [a for a in algorithms if a not in swept]
    if PREFERRED_REFERENCE in others:
        return PREFERRED_REFERENCE, "IQL (the report has IQL and does not sweep it)"
    if len(others) == 1:
        return others[0], f"{display_name(others[0])} (no IQL; the one algorithm that is not swept)"
    listed = ", ".join(display_name(a) for a in others) or "none"
    return None, f"none (no IQL, and not exactly one algorithm that is not swept: {listed})"


def find_variants(analysis: Analysis) -> Variants:
    """The methods of every swept algorithm and, when the rule gives one, the reference method."""
    cells = analysis.cells
    algorithm_of = dict(zip(cells["method"], cells["algorithm"], strict=False)) if len(cells) else {}
    methods_of: dict[str, list[str]] = {}
    for method in analysis.methods:
        if method in algorithm_of:
            methods_of.setdefault(algorithm_of[method], []).append(method)
    swept = {a: ms for a, ms in methods_of.items() if len(ms) > 1}
    algorithm, rule = choose_reference(list(methods_of), set(swept))
    reference = methods_of[algorithm][0] if algorithm is not None else None
    return Variants(swept, algorithm, reference, rule)


def _drop_matrix(method: str, matrices: aggregate.ScoreMatrices, dips: pd.DataFrame) -> np.ndarray | None:
    """Seeds × tasks matrix of the drops after the switch of the method's runs in the aggregates (None when
    some of them have no drop)."""
    members = matrices.members[matrices.members["method"] == method]
    drops = members.merge(dips[["run_id", "drop"]], on="run_id", how="left")
    if drops.empty or drops["drop"].isna().any():
        return None
    table = drops.pivot(index="seed", columns="dataset", values="drop")
    return table.loc[sorted(table.index), matrices.tasks].to_numpy(dtype=float)


def same_evals_as_reference(variants: Variants, histories: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per method: (runs whose eval history, every step and normalized score, equals the reference's run on the
    same task and seed exactly; runs that have such a reference run). A variant that switches the method's
    parts off should reproduce the reference number for number (docs/baq.md, *Guarantees*): this counts it."""
    if variants.reference is None or histories.empty:
        return {}
    keyed = {key: run[["step", "normalized_score"]].sort_values("step").to_numpy()
             for key, run in histories.groupby(["method", "dataset", "seed"], sort=False)}
    counts = {}
    for method in variants.methods:
        pairs = [(evals, keyed[(variants.reference, task, seed)]) for (m, task, seed), evals in keyed.items()
                 if m == method and (variants.reference, task, seed) in keyed]
        counts[method] = (sum(a.shape == b.shape and bool((a == b).all()) for a, b in pairs), len(pairs))
    return counts


def _mean(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_mean(scores)])


def variant_stats(variants: Variants, aggregates: pd.DataFrame, matrices: aggregate.ScoreMatrices,
                  dips: pd.DataFrame, seed: int, reps: int,
                  histories: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per variant and the reference: the final score (rliable's Mean of the end-of-online scores, as
    in `aggregates`) and the drop after the switch (mean over tasks of the mean over seeds), each with its 95%
    stratified-bootstrap interval; with `histories` (eval histories with `method`) the count of each variant's
    runs that equal the reference's (`same_evals` of `paired_runs`); and a warning for each method in the
    aggregates without drops."""
    same = same_evals_as_reference(variants, histories) if histories is not None else {}
    finals = aggregates[(aggregates["phase"] == "online") & (aggregates["metric"] == "Mean")].set_index(
        "algorithm")
    rows, warnings = [], []
    roles = [(m, a, "variant") for a, ms in variants.by_algorithm.items() for m in ms]
    if variants.reference is not None:
        roles.append((variants.reference, variants.reference_algorithm, "reference"))
    for method, algorithm, role in roles:
        row = dict.fromkeys(STATS_COLUMNS, np.nan) | {"method": method, "algorithm": algorithm, "role": role}
        if method in finals.index:
            final = finals.loc[method]
            row.update(final=final["value"], final_low=final["ci_low"], final_high=final["ci_high"],
                       n_runs=final["n_runs"], n_tasks=final["n_tasks"])
        if method in same:
            row.update(same_evals=same[method][0], paired_runs=same[method][1])
        drops = _drop_matrix(method, matrices, dips)
        if drops is not None:
            with aggregate.seeded_global_rng(seed, "drop", method):
                points, intervals = rly.get_interval_estimates({method: drops}, _mean, reps=reps)
            row.update(drop=float(points[method][0]), drop_low=float(intervals[method][0, 0]),
                       drop_high=float(intervals[method][1, 0]))
        elif method in set(matrices.members["method"]):
            warnings.append(f"{method}: some of its runs in the aggregates lack an eval on one side of the "
                            "switch; no drop after the switch in variants.csv and the sensitivity figures")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=STATS_COLUMNS)
    return frame.astype({c: "Int64" for c in ("n_runs", "n_tasks", "same_evals", "paired_runs")}), warnings


def improvement_over_reference(variants: Variants, matrices: aggregate.ScoreMatrices, seed: int,
                               reps: int) -> pd.DataFrame:
    """P(variant > reference) at both phase ends with 95% intervals (rliable's independent stratified
    bootstrap of both score matrices), for every variant that, like the reference, is in the aggregates."""
    if variants.reference is None:
        return pd.DataFrame(columns=POI_COLUMNS)
    pairs = [(m, variants.reference) for m in variants.methods]
    poi = aggregate.improvement_probabilities(matrices.matrices, pairs, seed, reps)
    poi = poi.rename(columns={"algorithm_x": "variant", "algorithm_y": "reference"})
    shape = {(p, m): x.shape for p, by_method in matrices.matrices.items() for m, x in by_method.items()}
    poi["n_runs_variant"] = [shape[(p, m)][0] for p, m in zip(poi["phase"], poi["variant"], strict=True)]
    poi["n_runs_reference"] = [shape[(p, m)][0] for p, m in zip(poi["phase"], poi["reference"], strict=True)]
    poi["n_tasks"] = len(matrices.tasks)
    return poi[POI_COLUMNS]


def _interval(value: float, low: float, high: float, digits: int) -> str:
    if not np.isfinite(value):
        return "—"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def improvement_markdown(variants: Variants, stats: pd.DataFrame, poi: pd.DataFrame, *, seed: int,
                         reps: int) -> str:
    """The per-variant table: final score, drop after the switch and P(variant > reference) at both phase
    ends, each as `estimate [95% interval]`; `—` where a variant has no runs in the aggregates."""
    ref = variants.reference
    lines = [f"# Variants against the reference: {ref}", "",
             f"Reference: {variants.rule}. P(X > {ref}) is the probability that a run of X scores higher "
             f"than a run of {ref} on the same task, averaged over tasks (ties count one half). Final score: "
             "mean normalized score at the end of online fine-tuning; drop: end-of-offline score minus the "
             "lowest eval in the first 20% of the online phase (positive = a dip). Each is the estimate and "
             f"its 95% stratified-bootstrap interval over seeds (percentile, {reps} replications, seed "
             f"{seed}). Same evals: how many of the variant's runs have exactly the eval history (every step "
             f"and score) of {ref}'s run on the same task and seed.", "",
             f"| Method | Runs × tasks | Final score | Drop after the switch | P(> {ref}), end of online | "
             f"P(> {ref}), end of offline | Same evals as {ref} |", "|---|---:|---:|---:|---:|---:|---:|"]
    by_pair = poi.set_index(["variant", "phase"])
    for row in stats.itertuples(index=False):
        probs = []
        for phase in ("online", "offline"):
            rec = by_pair.loc[(row.method, phase)] if (row.method, phase) in by_pair.index else None
            probs.append("—" if rec is None else _interval(rec["probability"], rec["ci_low"], rec["ci_high"],
                                                           2))
        if row.role == "reference":
            probs = ["(reference)", "(reference)"]
        size = "—" if pd.isna(row.n_runs) else f"{row.n_runs} × {row.n_tasks}"
        same = "—" if pd.isna(row.paired_runs) or row.paired_runs == 0 else f"{row.same_evals} of {row.paired_runs}"
        lines.append(f"| {row.method} | {size} | {_interval(row.final, row.final_low, row.final_high, 1)} | "
                     f"{_interval(row.drop, row.drop_low, row.drop_high, 1)} | {probs[0]} | {probs[1]} | "
                     f"{same} |")
    return "\n".join(lines) + "\n"


# The figures read the final score under the names of aggregates.csv.
_AS_POINTS = {"final": "value", "final_low": "ci_low", "final_high": "ci_high"}


def sensitivity_figures(analysis: Analysis, stats: pd.DataFrame,
                        reference: pd.Series | None) -> list[tuple[str, Figure, str]]:
    """(file stem, figure, description) of the final score and the drop after the switch vs each swept
    parameter, per swept algorithm: one line per value of the other swept parameters set in those runs."""
    names = short_names(analysis.swept)
    params = analysis.runs.drop_duplicates("method").set_index("method")[analysis.swept]
    points = params.join(stats.set_index("method").rename(columns=_AS_POINTS), how="inner")
    points = points[points["role"] == "variant"].dropna(subset=["value"])
    built = []
    for algorithm, mine in points.groupby("algorithm", sort=True):
        keys = [k for k in analysis.swept if mine[k].notna().any()]
        for key in keys:
            here = mine.dropna(subset=[key])
            if here[key].nunique() < 2:
                continue
            others = [k for k in keys if k != key and here[k].notna().any()]
            label, shown = names[key], display_name(str(algorithm))
            fig = figures.sensitivity(key, label, here, others, names, shown, reference)
            stem = f"sensitivity_{algorithm}_{re.sub(r'[^A-Za-z0-9]+', '_', label).strip('_')}"
            built.append((stem, fig, f"{shown}: mean normalized score at the end of online fine-tuning and drop "
                          f"after the switch vs `{key}`, with 95% bootstrap intervals over seeds, one line per "
                          "value of the other swept parameters; the reference dotted"))
    return built


def write_outputs(writer: Writer, analysis: Analysis, aggregates: pd.DataFrame,
                  matrices: aggregate.ScoreMatrices, dips: pd.DataFrame, histories: pd.DataFrame, colors: dict,
                  *, seed: int, reps: int) -> list[str]:
    """Write the variant outputs that apply (none without a swept algorithm; the probability of improvement
    only with a reference) and return the README's lines about them; warnings go to `analysis.warnings`.
    `histories`: the used runs' eval histories with their `method`."""
    variants = find_variants(analysis)
    if not variants.by_algorithm or aggregates.empty:
        return []
    stats, warnings = variant_stats(variants, aggregates, matrices, dips, seed, reps, histories)
    analysis.warnings.extend(warnings)
    writer.csv("variants.csv", stats, "per variant of a swept algorithm and the reference: final score and "
               "drop after the switch with 95% bootstrap intervals over seeds, runs with the reference's evals")
    lines = [f"- Variants (methods of a swept algorithm) are measured against a reference: {variants.rule}."]
    ref_rows = stats[stats["role"] == "reference"]
    reference = ref_rows.rename(columns=_AS_POINTS).iloc[0] if len(ref_rows) else None
    if variants.reference is not None:
        poi = improvement_over_reference(variants, matrices, seed, reps)
        if poi.empty:
            analysis.warnings.append(f"no probability of improvement over {variants.reference}: it needs the "
                                     "reference and a variant in the aggregates")
        writer.csv("improvement_over_reference.csv", poi, f"P(variant > {variants.reference}) with 95% "
                   "intervals, at both phase ends")
        writer.text("improvement_over_reference.md", improvement_markdown(variants, stats, poi, seed=seed,
                    reps=reps), f"per variant: final score, drop after the switch and P(> {variants.reference})")
        lines.append(f"- `improvement_over_reference.md`: each variant's final score, drop after the switch and "
                     f"probability of improvement over {variants.reference}, with 95% intervals.")
    with figure_style():
        for stem, fig, what in sensitivity_figures(analysis, stats, reference):
            writer.figure(stem, fig, what)
        for algorithm in variants.by_algorithm:
            shown = stats[(stats["algorithm"] == algorithm) | (stats["role"] == "reference")]
            title = f"{display_name(algorithm)}'s variants" + (" and the reference" if len(ref_rows) else "")
            writer.figure(f"variants_{algorithm}", figures.variant_intervals(
                shown.rename(columns=_AS_POINTS), colors, title), f"{title}: final score and drop after the "
                "switch with 95% bootstrap intervals over seeds")
    return lines
