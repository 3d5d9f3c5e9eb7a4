"""From raw runs to analysed cells: method labels (algorithm + swept overrides), the run chosen for each
(method, dataset, seed), end-of-offline / end-of-online scores and the completeness of every expected cell."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.runs import LoadedRuns, flatten_overrides, override_column
from suite.matrix_spec import ExpectedCells
from suite.states import FAILED, FINISHED, INTERRUPTED, RUNNING

DISPLAY_NAMES = {"baq": "BAQ", "iql": "IQL", "cql": "CQL", "awac": "AWAC", "calql": "Cal-QL", "rebrac": "ReBRAC"}
ALGORITHM_ORDER = ["baq", "iql", "cql", "awac", "calql", "rebrac"]


@dataclass
class Analysis:
    """Runs annotated with their method and use, per-run final scores and per-cell statistics."""

    experiment: str
    runs: pd.DataFrame          # every run, with `method`, `used` and `note`
    finals: pd.DataFrame        # one row per used run: method, algorithm, dataset, seed, offline, online
    cells: pd.DataFrame         # one row per expected (method, dataset)
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    swept: list[str]
    common_overrides: dict[str, object]
    paper: bool
    warnings: list[str] = field(default_factory=list)


def display_name(algorithm: str) -> str:
    return DISPLAY_NAMES.get(algorithm.lower(), algorithm.upper())


def format_value(value: object) -> str:
    """Short text for an override value: 0.1 not 0.1000, 3 not 3.0."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def swept_and_common(runs: pd.DataFrame, keys: list[str]) -> tuple[list[str], dict[str, object]]:
    """A key is swept when it takes more than one value (absent counts as one) among the runs of one
    algorithm; the others are fixed per algorithm and stay out of the method labels."""
    swept, common = [], {}
    for key in keys:
        per_algorithm = {algorithm: {None if _is_missing(v) else v for v in group[key]}
                         for algorithm, group in runs.groupby("algorithm", sort=True)}
        if any(len(values) > 1 for values in per_algorithm.values()):
            swept.append(key)
            continue
        fixed = {algorithm: next(iter(values)) for algorithm, values in per_algorithm.items()}
        if len(set(fixed.values())) == 1:
            common[key] = next(iter(fixed.values()))
        else:
            common[key] = "; ".join(f"{display_name(a)}: {format_value(v)}" for a, v in fixed.items()
                                    if v is not None)
    return swept, common


def short_names(keys: list[str]) -> dict[str, str]:
    """`algo.lambda0` → `lambda0` unless two keys would share a short name."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(keys, tails, strict=True)}


def method_label(algorithm: str, overrides: dict[str, object], names: dict[str, str]) -> str:
    parts = [f"{names[k]}={format_value(v)}" for k, v in sorted(overrides.items()) if not _is_missing(v)]
    return display_name(algorithm) + (f" ({', '.join(parts)})" if parts else "")


def _sort_key(value: object) -> tuple:
    if _is_missing(value):
        return (0, 0.0, "")
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def _method_order(runs: pd.DataFrame, swept: list[str]) -> list[str]:
    """BAQ, IQL, CQL, AWAC, then other algorithms by name; variants of one algorithm by their swept values."""
    def key(row: pd.Series) -> tuple:
        algorithm = row["algorithm"]
        rank = ALGORITHM_ORDER.index(algorithm) if algorithm in ALGORITHM_ORDER else len(ALGORITHM_ORDER)
        return (rank, algorithm, tuple(_sort_key(row[k]) for k in swept))

    firsts = [row for _, row in runs.drop_duplicates("method").iterrows()]
    return [row["method"] for row in sorted(firsts, key=key)]


def _final_scores(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """End of offline = last eval with step <= offline_steps; end of online = last eval overall."""
    evals = scores.dropna(subset=["normalized_score"])
    rows = []
    for run_id, hist in evals.groupby("run_id", sort=False):
        offline = hist[hist["phase"] == "offline"]
        rows.append({"run_id": run_id, "final_step": int(hist["step"].max()),
                     "offline": float(offline["normalized_score"].iloc[-1]) if len(offline) else np.nan,
                     "online": float(hist["normalized_score"].iloc[-1])})
    finals = pd.DataFrame(rows, columns=["run_id", "final_step", "offline", "online"])
    return runs[["run_id"]].merge(finals, on="run_id", how="left")


def _expected_variants(spec: ExpectedCells | None) -> pd.DataFrame:
    """One row per expected (algorithm, variant): `algorithm` plus the variant's override columns."""
    rows = [{"algorithm": algorithm, **{override_column(k): v for k, v in flatten_overrides(variant).items()}}
            for algorithm, options in (spec.variants if spec else {}).items() for variant in options]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(["algorithm", *(k for r in rows for k in r)])))


def _choose_runs(runs: pd.DataFrame, spec: ExpectedCells | None, warnings: list[str],
                 expected: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    runs["used"] = False
    runs["note"] = ""
    if spec is not None:
        # A run of a listed algorithm whose overrides match none of its expected variants (e.g. from an older
        # version of the sweep) is outside the matrix, like a run on an unlisted dataset.
        listed = runs["algorithm"].isin(set(expected["algorithm"]))
        foreign = listed & ~runs["method"].isin(set(expected["method"]))
        outside = (~runs["algorithm"].isin(spec.algorithms) | ~runs["dataset"].isin(spec.datasets)
                   | ~runs["seed"].isin(spec.seeds) | foreign)
        runs.loc[outside, "note"] = "outside the matrix"
        if outside.any():
            warnings.append(f"{int(outside.sum())} run(s) outside the expected matrix were left out of the "
                            "table and aggregates (kept in scores.csv and runs.csv)")
    candidates = runs[runs["note"] == ""]
    for (method, dataset, seed), group in candidates.groupby(["method", "dataset", "seed"], sort=False):
        good = group[(group["status"] == "finished") & group["online"].notna()]
        # A re-run of the same cell supersedes older ones: prefer finished runs with evals, then the newest.
        chosen = (good if len(good) else group).sort_values("start_time").index[-1]
        for other in group.index.drop(chosen):
            runs.loc[other, "note"] = f"superseded by {runs.loc[chosen, 'run_id']}"
        if len(group) > 1:
            warnings.append(f"{method} on {dataset} seed {seed}: {len(group)} runs, using "
                            f"{runs.loc[chosen, 'run_id']}")
        if len(good):
            runs.loc[chosen, "used"] = True
        elif runs.loc[chosen, "status"] == "finished":
            runs.loc[chosen, "note"] = "finished without any eval/normalized_score"
    return runs


def _std(values: pd.Series) -> float:
    # Sample standard deviation over seeds (ddof=1); undefined, hence NaN, for a single seed.
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def analyse(loaded: LoadedRuns, matrix: dict | None = None) -> Analysis:
    """Label methods, choose one run per cell, compute final scores and each expected cell's statistics."""
    spec = None if matrix is None else ExpectedCells.from_dict(matrix)
    warnings = list(loaded.warnings)
    runs = loaded.runs.copy()
    expected = _expected_variants(spec)
    keys = sorted(set(loaded.override_keys) | set(expected.columns.drop("algorithm")))
    runs = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *keys])))
    expected = expected.reindex(columns=["algorithm", *keys])
    # Swept keys come from the runs and the matrix together, so that a variant nobody ran still gets its label.
    swept, common = swept_and_common(pd.concat([runs[["algorithm", *keys]], expected], ignore_index=True), keys)
    names = short_names(swept)
    for frame in (runs, expected):
        frame["method"] = [method_label(r["algorithm"], {k: r[k] for k in swept}, names)
                           for _, r in frame.iterrows()]
    runs = runs.merge(_final_scores(loaded.scores, runs), on="run_id", how="left")
    runs = _choose_runs(runs, spec, warnings, expected)
    seen = runs[runs["note"] != "outside the matrix"]
    if spec is not None:
        unrun = expected[~expected["method"].isin(set(seen["method"]))]
        present = set(seen["algorithm"]) | set(expected["algorithm"])
        unrun = pd.concat([unrun, pd.DataFrame({"algorithm": [a for a in spec.algorithms if a not in present]})],
                          ignore_index=True).reindex(columns=["algorithm", "method", *keys])
        unrun["method"] = unrun["method"].fillna(unrun["algorithm"].map(display_name))
        listed = pd.concat([seen[["algorithm", "method", *keys]], unrun], ignore_index=True)
        datasets, seeds = spec.datasets, sorted(spec.seeds)
    else:
        listed = seen
        datasets, seeds = sorted(runs["dataset"].unique()), sorted(int(s) for s in runs["seed"].unique())
    methods = _method_order(listed, swept) if len(listed) else []
    algorithm_of = dict(zip(listed["method"], listed["algorithm"], strict=False))
    finals = runs.loc[runs["used"], ["run_id", "method", "algorithm", "dataset", "seed", "offline", "online"]]
    cell_rows = []
    for method in methods:
        for dataset in datasets:
            here = seen[(seen["method"] == method) & (seen["dataset"] == dataset)
                        & ~seen["note"].str.startswith("superseded")]
            done = finals[(finals["method"] == method) & (finals["dataset"] == dataset)]
            unused = here.loc[~here["used"]]
            by_status = {s: sorted(int(x) for x in unused.loc[unused["status"].isin(group), "seed"])
                         for s, group in (("failed", [FAILED]), ("running", [RUNNING, INTERRUPTED]),
                                          ("finished", [FINISHED]))}
            cell_rows.append({
                "method": method, "algorithm": algorithm_of[method], "dataset": dataset,
                "n": len(done), "n_expected": len(seeds),
                "failed_seeds": by_status["failed"], "running_seeds": by_status["running"],
                "no_eval_seeds": by_status["finished"],
                "missing_seeds": sorted(set(seeds) - set(int(x) for x in here["seed"])),
                "errors": sorted({e for e in here.loc[here["status"] == "failed", "error"] if e}),
                "offline_mean": float(done["offline"].mean()) if len(done) else np.nan,
                "offline_std": _std(done["offline"]),
                "online_mean": float(done["online"].mean()) if len(done) else np.nan,
                "online_std": _std(done["online"]),
            })
    cells = pd.DataFrame(cell_rows)
    if len(cells):
        cells["complete"] = cells["n"] >= cells["n_expected"]
    return Analysis(loaded.experiment, runs, finals.reset_index(drop=True), cells, methods, list(datasets),
                    list(seeds), swept, common, bool(spec and spec.paper), warnings)
