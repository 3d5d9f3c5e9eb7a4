"""rliable aggregates over runs × tasks: interval estimates, probability of improvement, performance profiles
and the IQM-vs-step curve, all with stratified-bootstrap 95% intervals (Agarwal et al., 2021, "Deep RL at the
Edge of the Statistical Precipice"; the `rliable` package).

Reproducibility: rliable's bootstraps draw their indices from numpy's *global* RNG (`np.random.choice` in
`StratifiedBootstrap.update_indices`), so every estimate runs inside `seeded_global_rng`, which seeds the
global RNG from (seed, what is estimated, for which method) and restores the caller's state afterwards.
Seeding per estimate, not once, keeps a method's intervals independent of the other methods in the report."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats
from rliable import library as rly
from rliable import metrics

from analysis.scores import Analysis

METRICS = ("IQM", "Mean", "Median", "Optimality gap")
# Normalized scores are on a 0–100 scale (100 = D4RL expert). rliable's optimality gap defaults to gamma=1,
# meant for a 0–1 scale; gamma=100 is the same threshold (the expert score) on ours.
OPTIMALITY_THRESHOLD = 100.0
PHASES = ("online", "offline")
MAX_CURVE_POINTS = 60


@contextmanager
def seeded_global_rng(seed: int, *keys: str) -> Iterator[None]:
    """Seed numpy's global RNG from `seed` and `keys` for the duration of the block, then restore it."""
    state = np.random.get_state()
    words = [int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in keys)]
    np.random.seed(int(np.random.SeedSequence(words).generate_state(1)[0]))
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """IQM, mean, median and optimality gap of a runs × tasks matrix (rliable's estimators)."""
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                     metrics.aggregate_median(scores),
                     metrics.aggregate_optimality_gap(scores, gamma=OPTIMALITY_THRESHOLD)])


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks, ties counting one half: the value of rliable.metrics.
    probability_of_improvement (the Mann–Whitney U statistic over num_runs_x · num_runs_y), computed by a
    vectorised pairwise count because scipy's test per task and bootstrap sample is ~100× slower."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = ((x > y).astype(float) + 0.5 * (x == y)).mean(axis=(0, 1))
    return float(per_task.mean())


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all run × task scores above each threshold (rliable's `score_distributions`, vectorised).
    """
    return (scores.reshape(-1)[:, None] > np.asarray(taus)[None, :]).mean(axis=0)


@dataclass
class ScoreMatrices:
    """Rectangular runs × tasks matrices per phase and method (rows = common seeds, sorted)."""

    tasks: list[str]
    matrices: dict[str, dict[str, np.ndarray]]
    members: pd.DataFrame  # method, dataset, seed, run_id of every run inside a matrix
    warnings: list[str] = field(default_factory=list)


def _task_set(finals: pd.DataFrame, datasets: list[str], warnings: list[str]) -> tuple[list[str], list[str]]:
    """Tasks and methods for the aggregates: every method needs at least one run on every task."""
    tasks_all = [d for d in datasets if d in set(finals["dataset"])]
    covered = finals.groupby("method")["dataset"].agg(set)
    methods = [m for m in finals["method"].unique()]
    full = [m for m in methods if set(tasks_all) <= covered[m]]
    if full:
        for method in (m for m in methods if m not in full):
            lacking = [t for t in tasks_all if t not in covered[method]]
            warnings.append(f"{method} left out of the aggregates: no finished run on {', '.join(lacking)}")
        return tasks_all, full
    tasks = [t for t in tasks_all if all(t in covered[m] for m in methods)]
    dropped = [t for t in tasks_all if t not in tasks]
    if dropped:
        warnings.append(f"tasks {', '.join(dropped)} left out of the aggregates: not every method has a "
                        "finished run there")
    return tasks, methods if tasks else []


def score_matrices(analysis: Analysis) -> ScoreMatrices:
    """Per-method matrices over the common seeds; what is dropped to make them rectangular is reported."""
    warnings: list[str] = []
    finals = analysis.finals
    tasks, methods = _task_set(finals, analysis.datasets, warnings) if len(finals) else ([], [])
    matrices: dict[str, dict[str, np.ndarray]] = {phase: {} for phase in PHASES}
    members = []
    for method in [m for m in analysis.methods if m in methods]:
        mine = finals[(finals["method"] == method) & finals["dataset"].isin(tasks)]
        seed_sets = [set(mine.loc[mine["dataset"] == t, "seed"]) for t in tasks]
        seeds = sorted(set.intersection(*seed_sets))
        extra = len(mine) - len(seeds) * len(tasks)
        if not seeds:
            warnings.append(f"{method} left out of the aggregates: no seed finished on every task")
            continue
        if extra:
            warnings.append(f"{method}: {extra} run(s) dropped from the aggregates to keep the seeds "
                            f"common to all tasks (seeds {', '.join(map(str, seeds))})")
        inside = mine[mine["seed"].isin(seeds)]
        members.append(inside[["method", "dataset", "seed", "run_id"]])
        for phase in PHASES:
            table = inside.pivot(index="seed", columns="dataset", values=phase).loc[seeds, tasks]
            if table.isna().to_numpy().any():
                warnings.append(f"{method}: no {phase} score for some runs; left out of the {phase} "
                                "aggregates")
                continue
            matrices[phase][method] = table.to_numpy(dtype=float)
    members_frame = (pd.concat(members, ignore_index=True) if members
                     else pd.DataFrame(columns=["method", "dataset", "seed", "run_id"]))
    return ScoreMatrices(tasks, matrices, members_frame, warnings)


def interval_estimates(matrices: dict[str, dict[str, np.ndarray]], seed: int, reps: int) -> pd.DataFrame:
    """One row per (method, phase, metric): point estimate and 95% stratified-bootstrap interval."""
    rows = []
    for phase, by_method in matrices.items():
        for method, matrix in by_method.items():
            with seeded_global_rng(seed, "interval_estimates", phase, method):
                points, intervals = rly.get_interval_estimates({method: matrix}, aggregate_metrics, reps=reps)
            for i, name in enumerate(METRICS):
                rows.append({"algorithm": method, "phase": phase, "metric": name,
                             "value": float(points[method][i]), "ci_low": float(intervals[method][0, i]),
                             "ci_high": float(intervals[method][1, i]), "n_runs": matrix.shape[0],
                             "n_tasks": matrix.shape[1]})
    return pd.DataFrame(rows, columns=["algorithm", "phase", "metric", "value", "ci_low", "ci_high", "n_runs",
                                       "n_tasks"])


def improvement_pairs(methods: list[str], algorithm_of: dict[str, str]) -> list[tuple[str, str]]:
    """BAQ (every BAQ variant in a sweep) against every method of another algorithm."""
    ours = [m for m in methods if algorithm_of[m] == "baq"]
    others = [m for m in methods if algorithm_of[m] != "baq"]
    return [(x, y) for x in ours for y in others]


def improvement_probabilities(matrices: dict[str, dict[str, np.ndarray]], pairs: list[tuple[str, str]],
                              seed: int, reps: int) -> pd.DataFrame:
    """P(X > Y) with 95% intervals from rliable's independent stratified bootstrap of both matrices."""
    rows = []
    for phase, by_method in matrices.items():
        for x, y in pairs:
            if x not in by_method or y not in by_method:
                continue
            with seeded_global_rng(seed, "probability_of_improvement", phase, x, y):
                points, intervals = rly.get_interval_estimates(
                    {"pair": [by_method[x], by_method[y]]}, probability_of_improvement, reps=reps)
            low, high = np.ravel(intervals["pair"])
            rows.append({"algorithm_x": x, "algorithm_y": y, "phase": phase,
                         "probability": float(points["pair"]), "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows, columns=["algorithm_x", "algorithm_y", "phase", "probability", "ci_low",
                                       "ci_high"])


def performance_profiles(by_method: dict[str, np.ndarray], taus: np.ndarray, seed: int,
                         reps: int) -> pd.DataFrame:
    """Score distributions (fraction of runs above each tau) with 95% bootstrap bands."""
    rows = []
    for method, matrix in by_method.items():
        with seeded_global_rng(seed, "performance_profile", method):
            profiles, bands = rly.create_performance_profile({method: matrix}, taus, reps=reps,
                                                             custom_profile_func=score_distribution)
        rows.append(pd.DataFrame({"algorithm": method, "tau": taus, "fraction": profiles[method],
                                  "ci_low": bands[method][0], "ci_high": bands[method][1]}))
    columns = ["algorithm", "tau", "fraction", "ci_low", "ci_high"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def _curve_steps(steps: np.ndarray, keep: set[int]) -> np.ndarray:
    """At most MAX_CURVE_POINTS evenly spread steps, always keeping the phase switch and the last step."""
    if len(steps) <= MAX_CURVE_POINTS:
        return steps
    picked = set(steps[np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).round().astype(int)].tolist())
    return np.array(sorted(picked | (keep & set(steps.tolist()))))


def iqm_curves(scores: pd.DataFrame, matrices: ScoreMatrices, seed: int, reps: int,
               offline_steps: dict[str, int]) -> pd.DataFrame:
    """IQM over runs × tasks at each eval step shared by all of a method's runs, with a bootstrap band."""
    rows = []
    evals = scores.dropna(subset=["normalized_score"])
    for method, group in matrices.members.groupby("method", sort=False):
        mine = evals[evals["run_id"].isin(group["run_id"])]
        per_run_steps = mine.groupby("run_id")["step"].agg(set)
        steps = np.array(sorted(set.intersection(*per_run_steps))) if len(per_run_steps) == len(group) else []
        if len(steps) == 0:
            matrices.warnings.append(f"{method}: its runs share no eval step; no IQM curve")
            continue
        steps = _curve_steps(steps, {offline_steps.get(method, -1)})
        seeds = sorted(group["seed"].unique())
        cube = (mine[mine["step"].isin(steps)].set_index(["seed", "dataset", "step"])["normalized_score"]
                .unstack("step").reindex(columns=steps))
        # runs × tasks × steps, the layout rliable's stratified bootstrap resamples along the first axis.
        array = np.stack([cube.xs(t, level="dataset").loc[seeds].to_numpy() for t in matrices.tasks], axis=1)

        def iqm_per_step(x: np.ndarray) -> np.ndarray:
            # rliable's aggregate_iqm (trim_mean 0.25 over all runs × tasks), for every step at once.
            return scipy.stats.trim_mean(x.reshape(-1, x.shape[-1]), proportiontocut=0.25, axis=0)

        with seeded_global_rng(seed, "iqm_curve", method):
            points, intervals = rly.get_interval_estimates({method: array}, iqm_per_step, reps=reps)
        rows.append(pd.DataFrame({"algorithm": method, "step": steps, "iqm": points[method],
                                  "ci_low": intervals[method][0], "ci_high": intervals[method][1]}))
    columns = ["algorithm", "step", "iqm", "ci_low", "ci_high"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)
