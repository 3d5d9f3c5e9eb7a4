"""End to end: runs logged to a real MLflow store in tmp_path → report() → every file, right numbers."""

from __future__ import annotations

import itertools
import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from PIL import Image

from analysis.report import _remove_stale, matrix_from_file, redact_uri, report, report_cli, safe_name
from suite.errors import UserError

DATASETS = ["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"]
OFFLINE, ONLINE, EVERY = 100, 100, 50
REPS = 200
# The budget every matrix file needs (docs/runner.md); the report reads the file with the runner's parser.
BUDGET = "[budget]\noffline_steps = 100\nonline_steps = 100\neval_interval = 50\neval_episodes = 1\nutd = 1\n"


def final_scores(algo: str, dataset: str, seed: int) -> tuple[float, float]:
    """Deterministic, distinct (end of offline, end of online) scores per cell."""
    base = {"baq": 60.0, "iql": 50.0, "cql": 40.0}[algo] + 7.0 * DATASETS.index(dataset)
    return base - 20.0 + 1.5 * seed, base + 3.0 * seed + (0.5 if algo == "baq" else 0.0)


@pytest.fixture
def logged(store, tmp_path, curve):
    exp = store.experiment("paper-small", tmp_path)
    ids = {}
    # An older failed attempt of BAQ/hopper/seed 0, superseded by the finished re-run below.
    old = store.log_run(exp, algo="baq", dataset=DATASETS[0], seed=0, offline_steps=OFFLINE,
                        scores={0: 0.0}, status="failed", error="killed")
    for algo, dataset, seed in itertools.product(("baq", "iql", "cql"), DATASETS, range(3)):
        offline, online = final_scores(algo, dataset, seed)
        failed = algo == "cql" and dataset == DATASETS[1] and seed == 2
        ids[(algo, dataset, seed)] = store.log_run(
            exp, algo=algo, dataset=dataset, seed=seed, offline_steps=OFFLINE,
            scores=curve(OFFLINE, ONLINE, offline, online, EVERY), status="failed" if failed else "finished",
            error="RuntimeError: diverged" if failed else None)
    return store, ids, old


def _cell(markdown: str, task: str, column: int) -> str:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {task} |"))
    return [c.strip() for c in line.strip("|").split("|")][column]


def test_report_end_to_end(logged, tmp_path):
    store, ids, old = logged
    matrix = {"algorithms": ["baq", "iql", "cql", "awac"], "datasets": DATASETS, "seeds": [0, 1, 2],
              "paper": True}
    np.random.seed(99)
    rng_before = np.random.get_state()[1].copy()
    folder = report("paper-small", tracking_uri=store.uri, out_dir=tmp_path / "results", seed=3, reps=REPS,
                    matrix=matrix)
    assert np.array_equal(np.random.get_state()[1], rng_before)
    assert folder == tmp_path / "results" / "paper-small"
    names = {p.name for p in folder.iterdir()}
    figures = {"learning_curves", "iqm_curve", "interval_estimates", "performance_profiles",
               "probability_of_improvement"}
    assert names == {"README.md", "manifest.json", "scores.csv", "runs.csv", "cells.csv", "table.md",
                     "table.tex", "aggregates.csv", "probability_of_improvement.csv",
                     "performance_profiles.csv", "iqm_curve.csv", "switch.csv", "switch_summary.csv"} | {
                         f"{f}.{ext}" for f in figures for ext in ("pdf", "png")}

    # The synthetic curves rise through the switch: every drop is minus one eval's rise, and the first online
    # eval is already back above the end of offline.
    dips = pd.read_csv(folder / "switch.csv")
    assert len(dips) == 17  # the used runs: 18 cells less the failed CQL one
    baq0 = dips[(dips["method"] == "BAQ") & (dips["dataset"] == DATASETS[0]) & (dips["seed"] == 0)].iloc[0]
    offline, online = final_scores("baq", DATASETS[0], 0)
    assert baq0["offline_end"] == pytest.approx(offline)
    assert baq0["drop"] == pytest.approx(-(online - offline) * EVERY / ONLINE)
    # The window (20% of 100 online steps) holds no eval, so it stretches to the first online eval.
    assert baq0["recovery_steps"] == EVERY and baq0["window_steps"] == EVERY

    scores = pd.read_csv(folder / "scores.csv")
    assert list(scores.columns) == ["run_id", "algorithm", "dataset", "seed", "step", "phase", "return",
                                    "normalized_score"]
    assert len(scores) == 18 * len(range(0, OFFLINE + ONLINE + 1, EVERY)) + 1
    one = scores[scores["run_id"] == ids[("iql", DATASETS[1], 2)]].set_index("step")
    expected_final = final_scores("iql", DATASETS[1], 2)[1]
    assert one.loc[OFFLINE + ONLINE, "normalized_score"] == pytest.approx(expected_final)
    assert one.loc[OFFLINE, "phase"] == "offline" and one.loc[OFFLINE + EVERY, "phase"] == "online"

    runs = pd.read_csv(folder / "runs.csv").set_index("run_id")
    assert runs.loc[old, "note"] == f"superseded by {ids[('baq', DATASETS[0], 0)]}"
    assert not runs.loc[ids[("cql", DATASETS[1], 2)], "used"]

    # Table: BAQ on hopper, end of online, mean ± sample std over the three seeds; BAQ is best → bold.
    online = [final_scores("baq", DATASETS[0], s)[1] for s in range(3)]
    offline = [final_scores("baq", DATASETS[0], s)[0] for s in range(3)]
    table = (folder / "table.md").read_text()
    assert _cell(table, "hopper-medium-v2", 1) == (
        f"**{np.mean(offline):.1f} ± {np.std(offline, ddof=1):.1f}** → "
        f"**{np.mean(online):.1f} ± {np.std(online, ddof=1):.1f}**")
    assert _cell(table, "walker2d-medium-v2", 3).endswith("†(n=2/3)")
    assert _cell(table, "hopper-medium-v2", 4) == "— †(n=0/3)"
    baq_total = sum(np.mean([final_scores("baq", d, s)[1] for s in range(3)]) for d in DATASETS)
    assert _cell(table, "**Total**", 1).endswith(f"**{baq_total:.2f}**")
    assert _cell(table, "Paper total (online)", 1) == "702.32"

    # Aggregates: CQL uses its seeds common to both tasks (0, 1); numbers from the logged finals.
    aggregates = pd.read_csv(folder / "aggregates.csv")
    row = aggregates[(aggregates["algorithm"] == "CQL") & (aggregates["phase"] == "online")]
    row = row.set_index("metric")
    cql = np.array([[final_scores("cql", d, s)[1] for d in DATASETS] for s in (0, 1)])
    assert row.loc["IQM", "value"] == pytest.approx(scipy.stats.trim_mean(cql.ravel(), 0.25))
    assert row.loc["Optimality gap", "value"] == pytest.approx(100 - cql.mean())
    assert row.loc["IQM", "n_runs"] == 2 and row.loc["IQM", "n_tasks"] == 2
    poi = pd.read_csv(folder / "probability_of_improvement.csv")
    baq = np.array([[final_scores("baq", d, s)[1] for d in DATASETS] for s in range(3)])
    iql = np.array([[final_scores("iql", d, s)[1] for d in DATASETS] for s in range(3)])
    wins = np.mean([[np.mean([a > b for a, b in itertools.product(baq[:, t], iql[:, t])])] for t in range(2)])
    got = poi[(poi["algorithm_y"] == "IQL") & (poi["phase"] == "online")]["probability"].item()
    assert got == pytest.approx(wins)

    readme = (folder / "README.md").read_text()
    for run_id in [*ids.values(), old]:
        assert run_id in readme
    for name in names - {"README.md"}:
        assert f"`{name}`" in readme
    assert "Bootstrap seed: `3`" in readme and f"replications: `{REPS}`" in readme and "`abc1234`" in readme
    assert "CQL on walker2d-medium-v2: n=2/3" in readme and "RuntimeError: diverged" in readme

    for figure in figures:
        png, pdf = folder / f"{figure}.png", folder / f"{figure}.pdf"
        image = matplotlib.image.imread(png)
        assert png.stat().st_size > 20_000 and image[..., :3].std() > 0.05
        assert Image.open(png).info["dpi"][0] == pytest.approx(200, abs=1)
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["reps"] == REPS and set(manifest["files"]) == names


def test_sweep_report_has_labelled_columns_and_sensitivity_plots(store, tmp_path, curve):
    exp = store.experiment("sweep/lambda", tmp_path)
    for lam, schedule, seed in itertools.product((0.1, 1.0), ("linear", "constant"), range(2)):
        online = 50.0 + 20.0 * lam + (5.0 if schedule == "linear" else 0.0) + seed
        store.log_run(exp, algo="baq", dataset=DATASETS[0], seed=seed, offline_steps=OFFLINE,
                      scores=curve(OFFLINE, ONLINE, 30.0, online, EVERY),
                      overrides={"algo.lambda0": lam, "algo.schedule": schedule, "online_steps": ONLINE})
    for seed in range(2):
        store.log_run(exp, algo="iql", dataset=DATASETS[0], seed=seed, offline_steps=OFFLINE,
                      scores=curve(OFFLINE, ONLINE, 30.0, 45.0, EVERY), overrides={"online_steps": ONLINE})
    folder = report("sweep/lambda", tracking_uri=store.uri, out_dir=tmp_path / "out", seed=0, reps=REPS)
    assert folder.name == "sweep_lambda"
    lines = (folder / "table.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| Task"))
    assert "BAQ (lambda0=0.1, schedule=constant)" in header and header.endswith("| IQL |")
    names = {p.name for p in folder.iterdir()}
    assert {"sensitivity_baq_lambda0.png", "sensitivity_baq_lambda0.pdf", "sensitivity_baq_schedule.png",
            "sensitivity_baq_schedule.pdf"} <= names
    scores = pd.read_csv(folder / "scores.csv")
    assert {"algo.lambda0", "algo.schedule", "online_steps"} <= set(scores.columns)
    assert "`online_steps=100`" in (folder / "README.md").read_text()  # common, hence not in the labels
    poi = pd.read_csv(folder / "probability_of_improvement.csv")
    assert len(poi[poi["phase"] == "online"]) == 4 and set(poi["algorithm_y"]) == {"IQL"}


def test_bad_arguments_are_user_errors(store, tmp_path):
    with pytest.raises(UserError, match="reps 0 invalid"):
        report("x", tracking_uri=store.uri, out_dir=tmp_path, reps=0)
    with pytest.raises(UserError, match="seed -1 invalid"):
        report("x", tracking_uri=store.uri, out_dir=tmp_path, seed=-1)
    with pytest.raises(UserError, match="no MLflow experiment named 'x'"):
        report("x", tracking_uri=store.uri, out_dir=tmp_path)


def test_names_and_uris_are_safe_to_write():
    assert safe_name("sweep/lambda 0.1") == "sweep_lambda_0.1"
    assert safe_name("../..") == "experiment"
    assert redact_uri("http://alice:secret@host:5000/x") == "http://host:5000/x"
    assert redact_uri("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_a_rerun_removes_only_files_an_earlier_report_listed(tmp_path):
    for name in ("old_plot.png", "kept.csv", "users_notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "manifest.json").write_text(json.dumps({"files": ["old_plot.png", "kept.csv", "../escape"]}))
    _remove_stale(tmp_path, fresh={"kept.csv"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv", "manifest.json", "users_notes.txt"]


def test_cli_entry_reads_the_expected_cells_from_a_matrix_file(store, tmp_path, curve, capsys):
    exp = store.experiment("quick", tmp_path)
    run_id = store.log_run(exp, algo="iql", dataset=DATASETS[0], seed=0, offline_steps=OFFLINE,
                           scores=curve(OFFLINE, ONLINE, 20.0, 30.0, EVERY))
    matrix_file = tmp_path / "quick.toml"
    matrix_file.write_text('name = "quick"\nalgorithms = ["iql", "awac"]\n'
                           f'datasets = ["{DATASETS[0]}"]\nseeds = [0, 1]\n' + BUDGET)
    assert report_cli(str(matrix_file), tracking_uri=store.uri, seed=0, reps=20, out_root=tmp_path / "r") == 0
    folder = tmp_path / "r" / "quick"
    assert str(folder) in capsys.readouterr().out
    table = (folder / "table.md").read_text()
    assert _cell(table, "hopper-medium-v2", 1) == "**20.0** → **30.0** †(n=1/2)"
    assert _cell(table, "hopper-medium-v2", 2) == "— †(n=0/2)"
    assert run_id in (folder / "README.md").read_text()
    with pytest.raises(UserError, match="matrix file missing.toml not found"):
        report_cli("missing.toml", tracking_uri=store.uri)


def test_matrix_file_sweep_tables_expand_to_expected_variants(tmp_path):
    matrix_file = tmp_path / "ablation.toml"
    matrix_file.write_text(
        'name = "ablation"\nalgorithms = ["baq", "iql"]\ndatasets = ["local:hopper-medium"]\nseeds = [0, 1]\n'
        + BUDGET + '[overrides.baq]\nkappa0 = 1.0\n'
        '[[sweep.baq]]\nschedule = ["constant"]\nlambda0 = [0.1, 0.3]\n'
        '[[sweep.baq]]\nschedule = ["linear"]\nschedule_T = [1000, 2000]\n')
    name, matrix = matrix_from_file(matrix_file)
    assert name == "ablation" and not matrix["paper"]
    assert matrix["variants"] == {
        "baq": [{"kappa0": 1.0, "schedule": "constant", "lambda0": 0.1},
                {"kappa0": 1.0, "schedule": "constant", "lambda0": 0.3},
                {"kappa0": 1.0, "schedule": "linear", "schedule_T": 1000},
                {"kappa0": 1.0, "schedule": "linear", "schedule_T": 2000}],
        "iql": [{}]}
    for body, match in (("sweep.baq = 5\n", "\\[sweep.baq\\] must be a table, got 5"),
                        ("[sweep.baq]\nlambda0 = 0.1\n", "\\[sweep.baq\\] lambda0 must be a list of values, got 0.1")):
        matrix_file.write_text('name = "x"\nalgorithms = ["baq"]\ndatasets = ["local:hopper-medium"]\n'
                               'seeds = [0]\n' + body + BUDGET)
        with pytest.raises(UserError, match=match):
            matrix_from_file(matrix_file)


def test_a_sweep_variant_nobody_ran_is_reported_missing(store, tmp_path, curve):
    exp = store.experiment("lam", tmp_path)
    for lam in (0.1,):
        store.log_run(exp, algo="baq", dataset=DATASETS[0], seed=0, offline_steps=OFFLINE,
                      scores=curve(OFFLINE, ONLINE, 20.0, 30.0, EVERY), overrides={"lambda0": lam})
    matrix_file = tmp_path / "lam.toml"
    matrix_file.write_text(f'name = "lam"\nalgorithms = ["baq"]\ndatasets = ["{DATASETS[0]}"]\nseeds = [0]\n'
                           + BUDGET + '[sweep.baq]\nlambda0 = [0.1, 1.0]\n')
    assert report_cli(str(matrix_file), tracking_uri=store.uri, seed=0, reps=20, out_root=tmp_path / "r") == 0
    table = (tmp_path / "r" / "lam" / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Task"))
    assert "BAQ (lambda0=0.1)" in header and "BAQ (lambda0=1)" in header
    assert "— †(n=0/1)" in table
