"""Publication figures. Each builder returns a matplotlib Figure (Agg canvas, never pyplot); report.py saves
them as PDF and PNG. Build them inside `style.figure_style()` so that the fonts and grid apply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from rliable import plot_utils

from analysis.aggregate import METRICS
from analysis.scores import format_value
from analysis.style import STEP_FORMATTER, new_figure, task_names

PHASE_TITLES = {"online": "End of online fine-tuning", "offline": "End of offline training"}
SCORE_LABEL = "Normalized score"


def _switch_lines(ax, steps: list[int]) -> None:
    for step in steps:
        ax.axvline(step, color="0.35", linestyle="--", linewidth=1.0, zorder=1)


def _legend(fig: Figure, methods: list[str], colors: dict) -> None:
    """One legend for the whole figure, below the panels, with as many columns as fit the figure's width."""
    handles = [Line2D([], [], color=colors[m], linewidth=2.0) for m in methods]
    # About 5.5 pt per character at 9 pt, plus ~34 pt for the handle and the gap between columns.
    entry_pt = 5.5 * max((len(m) for m in methods), default=1) + 34.0
    fits = max(1, int(fig.get_figwidth() * 72.0 // entry_pt))
    ncols = min(len(methods), 4, fits)
    rows = -(-len(methods) // ncols) if methods else 1
    if rows > 1:  # room for every legend row below the panels (about 0.2 in per row at 9 pt)
        fig.set_figheight(fig.get_figheight() + 0.2 * (rows - 1))
    fig.legend(handles, methods, loc="outside lower center", ncols=ncols, frameon=False)


# With fewer seeds a 95% Student-t interval is wider than the data (t = 12.7 for 2 seeds) and hides the
# curves, so the band is then the seeds' range: what was observed, not an interval estimate.
MIN_SEEDS_FOR_INTERVAL = 5
SEED_BAND = (f"band: the seeds' range with fewer than {MIN_SEEDS_FOR_INTERVAL} seeds, else the 95% Student-t "
             "interval")


def seed_mean_band(values: pd.Series) -> tuple[float, float, float]:
    """Mean over seeds and the band drawn around it (low, high): the 95% Student-t interval from
    `MIN_SEEDS_FOR_INTERVAL` seeds on, the seeds' min and max below that."""
    n, mean = len(values), float(values.mean())
    if n < MIN_SEEDS_FOR_INTERVAL:
        return mean, float(values.min()), float(values.max())
    half = scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, mean - float(half), mean + float(half)


def learning_curves(curves: pd.DataFrame, methods: list[str], datasets: list[str], colors: dict,
                    switches: dict[str, list[int]]) -> Figure:
    """Grid of one subplot per task: mean normalized score over seeds vs global step, with the band of
    `seed_mean_band`."""
    ncols = min(3, len(datasets))
    nrows = int(np.ceil(len(datasets) / ncols))
    fig = new_figure(max(2.6 * ncols, 4.8), 2.0 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    names = task_names(datasets)
    for ax, dataset in zip(axes, datasets, strict=False):
        here = curves[curves["dataset"] == dataset]
        for method in methods:
            mine = here[here["method"] == method]
            if mine.empty:
                continue
            stats = mine.groupby("step")["normalized_score"].apply(seed_mean_band)
            steps = stats.index.to_numpy()
            mean, low, high = (np.array(column) for column in zip(*stats, strict=True))
            ax.plot(steps, mean, color=colors[method], label=method)
            ax.fill_between(steps, low, high, color=colors[method], alpha=0.2, linewidth=0)
        if here.empty:
            ax.text(0.5, 0.5, "no finished run", transform=ax.transAxes, ha="center", va="center")
        _switch_lines(ax, switches.get(dataset, []))
        ax.set_title(names[dataset])
        ax.xaxis.set_major_formatter(STEP_FORMATTER)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(SCORE_LABEL)
    for ax in axes[max(0, len(datasets) - ncols):len(datasets)]:
        ax.set_xlabel("Step")
    _legend(fig, methods, colors)
    return fig


def iqm_curve(curves: pd.DataFrame, methods: list[str], colors: dict, switches: list[int]) -> Figure:
    """Aggregate IQM over runs × tasks vs global step, with the stratified-bootstrap 95% band."""
    fig = new_figure(4.6, 3.2)
    ax = fig.subplots()
    shown = [m for m in methods if m in set(curves["algorithm"])]
    for method in shown:
        mine = curves[curves["algorithm"] == method]
        ax.plot(mine["step"], mine["iqm"], color=colors[method], label=method)
        ax.fill_between(mine["step"], mine["ci_low"], mine["ci_high"], color=colors[method], alpha=0.2,
                        linewidth=0)
    _switch_lines(ax, switches)
    ax.xaxis.set_major_formatter(STEP_FORMATTER)
    ax.set_xlabel("Step")
    ax.set_ylabel(f"IQM {SCORE_LABEL.lower()}")
    _legend(fig, shown, colors)
    return fig


def _pad_x(ax, values: np.ndarray) -> None:
    """x-limits with 10% room on each side: bars have sticky edges, so margins() would not pad them."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    low, high = float(finite.min()), float(finite.max())
    pad = 0.1 * (high - low) if high > low else max(1.0, 0.05 * abs(high))
    ax.set_xlim(low - pad, high + pad)


def interval_estimates(aggregates: pd.DataFrame, methods: list[str], colors: dict) -> Figure:
    """IQM, mean, median and optimality gap with 95% intervals; one row of panels per phase."""
    phases = [p for p in PHASE_TITLES if p in set(aggregates["phase"])]
    shown = [m for m in methods if m in set(aggregates["algorithm"])]
    # Room for the method names (about 0.075 in per character at 9 pt) on top of four 1.5 in panels.
    label_in = 0.075 * max((len(m) for m in shown), default=4)
    fig = new_figure(max(7.2, 6.4 + label_in), 0.9 + (0.32 * len(shown) + 0.6) * len(phases))
    axes = fig.subplots(len(phases), len(METRICS), squeeze=False)
    for row, phase in enumerate(phases):
        for col, metric in enumerate(METRICS):
            ax = axes[row, col]
            here = aggregates[(aggregates["phase"] == phase) & (aggregates["metric"] == metric)]
            for i, method in enumerate(shown):
                rec = here[here["algorithm"] == method]
                if rec.empty:
                    continue
                low, high, value = rec[["ci_low", "ci_high", "value"]].iloc[0]
                ax.barh(i, high - low, left=low, height=0.6, color=colors[method], alpha=0.8)
                ax.vlines(value, i - 0.3, i + 0.3, color="black", linewidth=1.4)
            ax.set_yticks(range(len(shown)), shown if col == 0 else [])
            ax.set_ylim(len(shown) - 0.5, -0.5)
            _pad_x(ax, here[["ci_low", "ci_high", "value"]].to_numpy())
            ax.grid(axis="y", visible=False)
            ax.set_title(metric if row == 0 else "")
        axes[row, 0].set_ylabel(PHASE_TITLES[phase].replace(" fine-tuning", "").replace(" training", ""))
    fig.supxlabel(SCORE_LABEL, fontsize=10)
    return fig


def performance_profiles(profiles: dict[str, pd.DataFrame], methods: list[str], colors: dict) -> Figure:
    """Score distributions (fraction of runs above τ) with bootstrap bands, drawn by rliable's plot_utils."""
    phases = [p for p in PHASE_TITLES if p in profiles and not profiles[p].empty]
    fig = new_figure(3.6 * len(phases), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(phases), squeeze=False)).ravel()
    shown = methods
    for ax, phase in zip(axes, phases, strict=True):
        frame = profiles[phase]
        shown = [m for m in methods if m in set(frame["algorithm"])]
        taus = frame.loc[frame["algorithm"] == shown[0], "tau"].to_numpy()
        points = {m: frame.loc[frame["algorithm"] == m, "fraction"].to_numpy() for m in shown}
        bands = {m: frame.loc[frame["algorithm"] == m, ["ci_low", "ci_high"]].to_numpy().T for m in shown}
        plot_utils.plot_performance_profiles(
            points, taus, performance_profile_cis=bands, ax=ax, colors={m: colors[m] for m in shown},
            xlabel=rf"{SCORE_LABEL} ($\tau$)", ylabel=r"Fraction of runs with score $> \tau$" if ax is axes[0]
            else "", labelsize=10, ticklabelsize=9, wrect=4, hrect=4)
        ax.set_title(PHASE_TITLES[phase])
    _legend(fig, shown, colors)
    return fig


def improvement_probabilities(poi: pd.DataFrame, colors: dict) -> Figure:
    """P(X > Y) with 95% intervals, one bar per pair; 0.5 (no difference) dashed."""
    phases = [p for p in PHASE_TITLES if p in set(poi["phase"])]
    pairs = list(dict.fromkeys(zip(poi["algorithm_x"], poi["algorithm_y"], strict=True)))
    fig = new_figure(3.4 * len(phases) + 1.2, 0.9 + 0.35 * len(pairs))
    axes = np.atleast_1d(fig.subplots(1, len(phases), squeeze=False)).ravel()
    for col, (ax, phase) in enumerate(zip(axes, phases, strict=True)):
        here = poi[poi["phase"] == phase]
        for i, (x, y) in enumerate(pairs):
            rec = here[(here["algorithm_x"] == x) & (here["algorithm_y"] == y)]
            if rec.empty:
                continue
            low, high, value = rec[["ci_low", "ci_high", "probability"]].iloc[0]
            ax.barh(i, high - low, left=low, height=0.6, color=colors[y], alpha=0.8)
            ax.vlines(value, i - 0.3, i + 0.3, color="black", linewidth=1.4)
        ax.axvline(0.5, color="0.35", linestyle="--", linewidth=1.0)
        ax.set_xlim(-0.02, 1.02)
        ax.set_yticks(range(len(pairs)), [f"P({x} > {y})" for x, y in pairs] if col == 0 else [])
        ax.set_ylim(len(pairs) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Probability of improvement")
        ax.set_title(PHASE_TITLES[phase])
    return fig


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


# The sensitivity and variant figures' panels: (column, interval low, interval high, axis label).
VARIANT_PANELS = (("value", "ci_low", "ci_high", f"Mean {SCORE_LABEL.lower()} (end of online)"),
                  ("drop", "drop_low", "drop_high", "Drop after the switch"))


def _reference_band(ax, reference: pd.Series | None, column: str, low: str, high: str) -> None:
    """The reference method's estimate (dotted) and 95% interval (grey band) across the panel."""
    if reference is None or not np.isfinite(reference[column]):
        return
    ax.axhline(reference[column], color="0.3", linestyle=":", linewidth=1.4,
               label=f"{reference['method']} (reference)")
    ax.axhspan(reference[low], reference[high], color="0.3", alpha=0.12, linewidth=0)


def sensitivity(param: str, label: str, points: pd.DataFrame, line_keys: list[str], names: dict[str, str],
                algorithm_label: str, reference: pd.Series | None = None) -> Figure:
    """Final score, and the drop after the switch when `points` has it, vs one swept parameter: one panel
    each, one line per combination of the other swept parameters, the reference as a dotted line and band.

    `points` has one row per method: the swept values (columns named by key), `value`, `ci_low`, `ci_high`
    and optionally `drop`, `drop_low`, `drop_high`; `reference` has the same fields and `method`."""
    panels = [p for p in VARIANT_PANELS if p[0] in points and points[p[0]].notna().any()]
    fig = new_figure(4.4 * len(panels), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    numeric = all(_is_number(v) for v in points[param])
    order = sorted(points[param].unique(), key=lambda v: (0, float(v)) if _is_number(v) else (1, str(v)))
    position = {v: (float(v) if numeric else i) for i, v in enumerate(order)}
    groups = list(points.groupby(line_keys, dropna=False, sort=True)) if line_keys else [((), points)]
    palette = sns.color_palette("colorblind", max(len(groups), 1))
    for ax, (column, low, high, ylabel) in zip(axes, panels, strict=True):
        for color, (key, group) in zip(palette, groups, strict=False):
            key = key if isinstance(key, tuple) else (key,)
            text = ", ".join(f"{names[k]}={format_value(v)}" for k, v in zip(line_keys, key, strict=True))
            group = group.assign(x=group[param].map(position)).sort_values("x")
            errors = np.vstack([group[column] - group[low], group[high] - group[column]])
            # Categories have no order: points with their intervals, no line between them.
            ax.errorbar(group["x"], group[column], yerr=errors, color=color, marker="o", markersize=4,
                        capsize=3, linestyle="-" if numeric else "none", label=text or algorithm_label)
        _reference_band(ax, reference, column, low, high)
        if numeric and min(position.values()) > 0 and max(position.values()) / min(position.values()) >= 50:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(order)), [format_value(v) for v in order],
                          rotation=30 if len(order) > 3 else 0, ha="right" if len(order) > 3 else "center")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
    fig.suptitle(f"{algorithm_label}: sensitivity to {label}")
    if line_keys or reference is not None:
        axes[0].legend(frameon=False)
    return fig


def variant_intervals(stats: pd.DataFrame, colors: dict, title: str) -> Figure:
    """Final score and drop after the switch per method (rows: `stats["method"]`, e.g. every variant of an
    algorithm and the reference) with 95% intervals: bar = interval, black tick = estimate."""
    shown = list(stats["method"])
    label_in = 0.075 * max((len(m) for m in shown), default=4)
    fig = new_figure(6.0 + label_in, 1.0 + 0.3 * len(shown))
    axes = fig.subplots(1, len(VARIANT_PANELS), squeeze=False)[0]
    for col, (ax, (column, low, high, xlabel)) in enumerate(zip(axes, VARIANT_PANELS, strict=True)):
        for i, rec in enumerate(stats.itertuples(index=False)):
            value, lo, hi = getattr(rec, column), getattr(rec, low), getattr(rec, high)
            if not np.isfinite(value):
                continue
            ax.barh(i, hi - lo, left=lo, height=0.6, color=colors[rec.method], alpha=0.8)
            ax.vlines(value, i - 0.3, i + 0.3, color="black", linewidth=1.4)
        if column == "drop":
            ax.axvline(0.0, color="0.35", linestyle="--", linewidth=1.0)  # no dip
        ax.set_yticks(range(len(shown)), shown if col == 0 else [])
        ax.set_ylim(len(shown) - 0.5, -0.5)
        _pad_x(ax, stats[[column, low, high]].to_numpy(dtype=float))
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(xlabel.replace(" (end of online)", "\n(end of online)"))
    fig.suptitle(title)
    return fig
