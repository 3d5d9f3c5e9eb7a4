"""Figures: readable fonts at the saved size, one colour per algorithm everywhere, valid non-trivial files."""

from __future__ import annotations

import warnings

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.collections import PolyCollection
from matplotlib.text import Text

from analysis import aggregate, figures
from analysis.files import save_figure
from analysis.style import MIN_FONT_PT, figure_style, method_colors

METHODS = ["BAQ", "IQL", "AWAC", "TD3+BC"]


def _texts_are_readable(fig) -> None:
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert sizes and min(sizes) >= MIN_FONT_PT


def test_colours_are_fixed_for_the_paper_algorithms_and_deterministic_for_others():
    palette = sns.color_palette("colorblind", 10)
    colors = method_colors(METHODS)
    assert colors["BAQ"] == palette[0] and colors["IQL"] == palette[1] and colors["AWAC"] == palette[3]
    assert method_colors(["TD3+BC", "BAQ"]) ["TD3+BC"] == colors["TD3+BC"]  # independent of order and company
    many = method_colors([f"BAQ (x={i})" for i in range(12)])
    assert len(set(many.values())) == 12 and palette[0] not in many.values()


@pytest.fixture
def curves() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for m, method in enumerate(METHODS):
        for dataset in ("d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"):
            for seed in range(3):
                for step in range(0, 2001, 250):
                    rows.append({"method": method, "dataset": dataset, "seed": seed, "step": step,
                                 "normalized_score": step / 25 - 10 * m + rng.normal(0, 3)})
    return pd.DataFrame(rows)


def test_learning_curves_draw_every_method_in_its_colour(curves):
    colors = method_colors(METHODS)
    with figure_style():
        fig = figures.learning_curves(curves, METHODS, ["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"],
                                      colors, {"d4rl:hopper-medium-v2": [1000]})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["hopper-medium-v2", "walker2d-medium-v2"]
    lines = [line for line in axes[0].get_lines() if line.get_label() in METHODS]
    assert {line.get_label(): line.get_color() for line in lines} == colors
    mean_baq = curves[(curves["method"] == "BAQ") & (curves["dataset"] == "d4rl:hopper-medium-v2")].groupby(
        "step")["normalized_score"].mean()
    baq = next(line for line in lines if line.get_label() == "BAQ")
    assert np.allclose(baq.get_ydata(), mean_baq.to_numpy())
    switch = [line for line in axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(switch) == 1 and switch[0].get_xdata()[0] == 1000
    assert len(axes[0].findobj(PolyCollection)) == len(METHODS)  # one seed band per method
    # 3 seeds: the band spans the seeds' lowest and highest score
    baq_scores = curves[(curves["method"] == "BAQ") & (curves["dataset"] == "d4rl:hopper-medium-v2")]
    band = next(p for p in axes[0].findobj(PolyCollection)
                if tuple(p.get_facecolor()[0][:3]) == tuple(matplotlib.colors.to_rgb(colors["BAQ"])))
    band_y = band.get_paths()[0].vertices[:, 1]
    assert band_y.min() == pytest.approx(baq_scores["normalized_score"].min())
    assert band_y.max() == pytest.approx(baq_scores["normalized_score"].max())
    _texts_are_readable(fig)


def test_seed_band_is_the_range_below_five_seeds_and_the_student_t_interval_from_five():
    assert figures.seed_mean_band(pd.Series([1.0, 2.0, 6.0])) == pytest.approx((3.0, 1.0, 6.0))
    assert figures.seed_mean_band(pd.Series([5.0])) == pytest.approx((5.0, 5.0, 5.0))
    mean, low, high = figures.seed_mean_band(pd.Series([1.0, 2.0, 6.0, 3.0, 8.0]))
    # mean 4, std = sqrt(8.5), t(0.975, 4) = 2.776445; half = t · std / sqrt(5).
    half = 2.776445 * np.sqrt(8.5) / np.sqrt(5.0)
    assert (mean, low, high) == pytest.approx((4.0, 4.0 - half, 4.0 + half), rel=1e-5)


def test_aggregate_figures_are_readable_and_saved_as_valid_files(tmp_path):
    rng = np.random.default_rng(1)
    matrices = {"online": {m: rng.uniform(20, 90, (3, 2)) + 10 * (m == "BAQ") for m in METHODS},
                "offline": {m: rng.uniform(10, 60, (3, 2)) for m in METHODS}}
    colors = method_colors(METHODS)
    aggregates = aggregate.interval_estimates(matrices, seed=0, reps=50)
    poi = aggregate.improvement_probabilities(matrices, [("BAQ", m) for m in METHODS[1:]], seed=0, reps=50)
    taus = np.linspace(0, 100, 21)
    profiles = {p: aggregate.performance_profiles(matrices[p], taus, seed=0, reps=50) for p in matrices}
    with figure_style():
        built = {"intervals": figures.interval_estimates(aggregates, METHODS, colors),
                 "profiles": figures.performance_profiles(profiles, METHODS, colors),
                 "poi": figures.improvement_probabilities(poi, colors)}
    for fig in built.values():
        _texts_are_readable(fig)
    bars = [p for p in built["intervals"].axes[0].patches]
    assert [tuple(b.get_facecolor()[:3]) for b in bars] == [tuple(colors[m]) for m in METHODS]
    for name in ("intervals", "poi"):
        pdf, png = save_figure(built[name], tmp_path / name, dpi=200)
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5_000
        image = matplotlib.image.imread(png)
        assert png.stat().st_size > 20_000 and image.ndim == 3 and image[..., :3].std() > 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intervals.pdf", "intervals.png", "poi.pdf",
                                                          "poi.png"]  # no temp file left behind


def test_sensitivity_plot_has_one_line_per_other_value():
    points = pd.DataFrame({"algo.lambda0": [0.1, 1.0, 10.0, 0.1, 1.0, 10.0],
                           "algo.schedule": ["linear"] * 3 + ["constant"] * 3,
                           "value": [50.0, 60.0, 55.0, 40.0, 45.0, 42.0],
                           "ci_low": [45.0, 55.0, 50.0, 35.0, 40.0, 37.0],
                           "ci_high": [55.0, 65.0, 60.0, 45.0, 50.0, 47.0]})
    names = {"algo.lambda0": "lambda0", "algo.schedule": "schedule"}
    with figure_style():
        fig = figures.sensitivity("algo.lambda0", "lambda0", points, ["algo.schedule"], names, "BAQ")
    ax = fig.axes[0]
    legend = sorted(t.get_text() for t in ax.get_legend().get_texts())
    assert legend == ["schedule=constant", "schedule=linear"]
    assert ax.get_xscale() == "log"  # 0.1 … 10 spans two decades
    lines = [line for line in ax.get_lines() if line.get_marker() == "o"]  # not the error-bar caps
    assert sorted(tuple(line.get_ydata()) for line in lines) == [(40.0, 45.0, 42.0), (50.0, 60.0, 55.0)]
    _texts_are_readable(fig)


def test_sensitivity_draws_the_drop_beside_the_final_score_and_the_reference():
    points = pd.DataFrame({"schedule": ["linear", "step", "cosine"], "value": [50.0, 60.0, 55.0],
                           "ci_low": [45.0, 55.0, 50.0], "ci_high": [55.0, 65.0, 60.0],
                           "drop": [8.0, 2.0, 5.0], "drop_low": [6.0, 1.0, 4.0], "drop_high": [10.0, 3.0, 6.0]})
    reference = pd.Series({"method": "IQL", "value": 45.0, "ci_low": 44.0, "ci_high": 46.0, "drop": 9.0,
                           "drop_low": 8.0, "drop_high": 10.0})
    with figure_style():
        fig = figures.sensitivity("schedule", "schedule", points, [], {"schedule": "schedule"}, "BAQ", reference)
    score, drop = fig.axes
    assert drop.get_ylabel() == "Drop after the switch"
    assert [t.get_text() for t in drop.get_xticklabels()] == ["cosine", "linear", "step"]
    marked = next(line for line in drop.get_lines() if line.get_marker() == "o")
    assert tuple(marked.get_ydata()) == (5.0, 8.0, 2.0) and marked.get_linestyle() == "None"  # no order
    dotted = [line for line in score.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_ydata()[0] == 45.0
    assert "IQL (reference)" in [t.get_text() for t in score.get_legend().get_texts()]
    _texts_are_readable(fig)


def test_variant_intervals_draw_one_bar_per_method_with_numbers():
    stats = pd.DataFrame({"method": ["BAQ (lambda0=0)", "BAQ (lambda0=0.1)", "IQL"],
                          "value": [50.0, np.nan, 45.0], "ci_low": [48.0, np.nan, 44.0],
                          "ci_high": [52.0, np.nan, 47.0], "drop": [3.0, np.nan, 9.0],
                          "drop_low": [1.0, np.nan, 8.0], "drop_high": [5.0, np.nan, 10.0]})
    colors = method_colors(list(stats["method"]))
    with figure_style():
        fig = figures.variant_intervals(stats, colors, "BAQ's variants and the reference")
    score, drop = fig.axes
    assert [t.get_text() for t in score.get_yticklabels()] == list(stats["method"])  # a row without runs too
    bars = [(b.get_x(), b.get_width()) for b in drop.patches]
    assert bars == [(1.0, 4.0), (8.0, 2.0)]  # intervals [1, 5] and [8, 10]; none for the row without runs
    assert tuple(drop.patches[1].get_facecolor()[:3]) == tuple(colors["IQL"])
    _texts_are_readable(fig)


def test_a_long_legend_gets_room_below_the_panels(tmp_path):
    methods = [f"BAQ (kappa0=0, lambda0=0, schedule=variant{i})" for i in range(11)]
    rows = [{"method": m, "dataset": "local:hopper-medium", "seed": s, "step": step, "normalized_score": step}
            for m in methods for s in range(2) for step in (0, 50, 100)]
    with figure_style():
        fig = figures.learning_curves(pd.DataFrame(rows), methods, ["local:hopper-medium"],
                                      method_colors(methods), {})
        assert fig.get_figheight() == pytest.approx(2.5 + 0.2 * 10)  # one legend column of 11 rows
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "constrained_layout not applied because axes sizes collapsed"
            save_figure(fig, tmp_path / "curves", dpi=100)
