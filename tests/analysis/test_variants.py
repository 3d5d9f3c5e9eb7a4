"""Variants against the reference: the reference rule, the probability of improvement of each variant over it
(hand values, rliable's, deterministic), per-variant drops after the switch with intervals over seeds, the
figures, and outputs written only when they apply (a swept algorithm; a reference)."""

from __future__ import annotations

import hashlib

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from rliable import metrics as rliable_metrics

from analysis import aggregate, switch, variants
from analysis.report import matrix_from_file, report
from analysis.scores import analyse
from analysis.style import method_colors

REPS = 200
TASK = "local:hopper-medium"


def _record(algo: str, seed: int, offline: float, online: float, task: str = TASK, **overrides) -> dict:
    return {"algo": algo, "dataset": task, "seed": seed, "offline": offline, "online": online,
            "overrides": overrides}


def _built(synthetic_runs, records: list[dict]):
    loaded = synthetic_runs(records)
    analysis = analyse(loaded)
    matrices = aggregate.score_matrices(analysis)
    used = analysis.runs.loc[analysis.runs["used"]]
    return analysis, matrices, switch.switch_dips(loaded.scores, used)


def _histories(synthetic_runs, records: list[dict]) -> pd.DataFrame:
    loaded = synthetic_runs(records)
    used = analyse(loaded).runs.query("used")
    return loaded.scores.merge(used[["run_id", "method"]], on="run_id")


class Recorder:
    """A report writer that keeps what it is given instead of writing files."""

    def __init__(self) -> None:
        self.files: dict[str, object] = {}

    def csv(self, name: str, frame: pd.DataFrame, what: str) -> None:
        self.files[name] = frame

    def text(self, name: str, text: str, what: str) -> None:
        self.files[name] = text

    def figure(self, stem: str, fig, what: str) -> None:
        self.files[stem] = fig


@pytest.mark.parametrize(("algorithms", "swept", "expected"), [
    (["baq", "iql", "cql"], {"baq"}, "iql"),        # IQL whenever it is there and not swept
    (["baq", "cql"], {"baq"}, "cql"),               # no IQL: the one algorithm that is not swept
    (["iql", "cql"], {"iql"}, "cql"),               # IQL swept is a variant algorithm, not the reference
    (["baq", "cql", "awac"], {"baq"}, None),        # two candidates and no IQL: no reference
    (["baq"], {"baq"}, None),
])
def test_reference_rule(algorithms: list[str], swept: set[str], expected: str | None) -> None:
    reference, rule = variants.choose_reference(algorithms, swept)
    assert reference == expected
    assert rule.startswith("none" if expected is None else {"iql": "IQL", "cql": "CQL"}[expected])


def test_variants_above_the_reference_have_probability_one_and_equal_scores_one_half(synthetic_runs):
    records = [_record("iql", s, 40.0 + s, 50.0 + s) for s in range(2)]
    records += [_record("baq", s, 40.0 + s, 50.0 + s, lambda0=0.0) for s in range(2)]  # IQL's scores exactly
    records += [_record("baq", s, 60.0 + s, 70.0 + s, lambda0=0.1) for s in range(2)]  # above every IQL run
    analysis, matrices, _ = _built(synthetic_runs, records)
    found = variants.find_variants(analysis)
    assert found.by_algorithm == {"baq": ["BAQ (lambda0=0)", "BAQ (lambda0=0.1)"]} and found.reference == "IQL"
    poi = variants.improvement_over_reference(found, matrices, seed=0, reps=REPS).set_index(
        ["variant", "phase"])
    above, equal = poi.loc[("BAQ (lambda0=0.1)", "online")], poi.loc[("BAQ (lambda0=0)", "online")]
    assert (above["probability"], above["ci_low"], above["ci_high"]) == (1.0, 1.0, 1.0)
    assert equal["probability"] == 0.5 and equal["ci_low"] < 0.5 < equal["ci_high"]
    assert equal["probability"] == rliable_metrics.probability_of_improvement(
        matrices.matrices["online"]["BAQ (lambda0=0)"], matrices.matrices["online"]["IQL"])
    assert (above["n_runs_variant"], above["n_runs_reference"], above["n_tasks"]) == (2, 2, 1)
    # The same pair, the same numbers as probability_of_improvement.csv.
    algorithm_of = dict(zip(analysis.cells["method"], analysis.cells["algorithm"], strict=True))
    pairs = aggregate.improvement_pairs(list(matrices.matrices["online"]), algorithm_of)
    general = aggregate.improvement_probabilities(matrices.matrices, pairs, seed=0, reps=REPS)
    assert general.set_index(["algorithm_x", "phase"])["ci_low"].to_dict() == poi["ci_low"].to_dict()


def test_probability_csv_is_byte_identical_whatever_the_global_rng(synthetic_runs, tmp_path):
    rng = np.random.default_rng(4)
    records = [_record("iql", s, 40.0, float(rng.uniform(30, 60)), task=t) for s in range(3) for t in "ab"]
    records += [_record("baq", s, 40.0, float(rng.uniform(30, 70)), task=t, kappa0=k)
                for s in range(3) for t in "ab" for k in (0.0, 1.0)]
    analysis, matrices, _ = _built(synthetic_runs, records)
    found = variants.find_variants(analysis)
    texts = []
    for caller_seed in (7, 8):  # whatever state the caller left numpy's global RNG in
        np.random.seed(caller_seed)
        state = np.random.get_state()[1].copy()
        path = tmp_path / f"poi{caller_seed}.csv"
        variants.improvement_over_reference(found, matrices, seed=0, reps=REPS).to_csv(path, index=False)
        texts.append(path.read_bytes())
        assert np.array_equal(np.random.get_state()[1], state)
    assert texts[0] == texts[1]
    frame = pd.read_csv(tmp_path / "poi7.csv")
    assert len(frame) == 4 and (frame["ci_low"] <= frame["probability"]).all()
    assert (frame["probability"] <= frame["ci_high"]).all() and (frame["ci_low"] < frame["ci_high"]).any()


def test_drops_per_variant_with_intervals_over_seeds(synthetic_runs):
    # The synthetic evals are at 0, the switch and the end, so each run's drop is offline − online.
    records = [_record("iql", s, 50.0, 50.0 - d) for s, d in enumerate((4.0, 10.0))]
    records += [_record("baq", s, 50.0, 50.0 - d, schedule="step") for s, d in enumerate((1.0, 3.0))]
    records += [_record("baq", s, 50.0, 50.0 - d, schedule="linear") for s, d in enumerate((-2.0, 6.0))]
    analysis, matrices, dips = _built(synthetic_runs, records)
    aggregates = aggregate.interval_estimates(matrices.matrices, seed=0, reps=REPS)
    found = variants.find_variants(analysis)
    stats, warnings = variants.variant_stats(found, aggregates, matrices, dips, seed=0, reps=REPS)
    stats = stats.set_index("method")
    assert list(stats["role"]) == ["variant", "variant", "reference"] and not warnings
    # Two seeds: the bootstrap means are the two drops and their mean; the 95% interval spans the two.
    for method, drops in (("BAQ (schedule=step)", (1.0, 3.0)), ("BAQ (schedule=linear)", (-2.0, 6.0)),
                          ("IQL", (4.0, 10.0))):
        assert stats.loc[method, ["drop", "drop_low", "drop_high"]].tolist() == [np.mean(drops), *drops]
    assert stats.loc["IQL", "final"] == 43.0 and stats.loc["IQL", "final_low"] == 40.0
    summary = switch.switch_summary(dips).set_index("method")
    assert summary.loc["BAQ (schedule=linear)", "drop_mean"] == 2.0
    assert summary.loc["BAQ (schedule=step)", "drop_max"] == 3.0


def test_same_evals_counts_runs_equal_to_the_reference_on_the_same_seed(synthetic_runs):
    records = [_record("iql", s, 50.0, 40.0 + s) for s in range(2)]
    records += [_record("baq", s, 50.0, 40.0 + s, kappa0=0.0) for s in range(2)]  # both seeds equal IQL's
    records += [_record("baq", s, 50.0, 40.0, lambda0=0.0) for s in range(2)]  # seed 0 equals, seed 1 not
    records += [_record("baq", s, 50.0, 41.0 - s, priority="none") for s in range(2)]  # IQL's, seeds swapped
    analysis, matrices, dips = _built(synthetic_runs, records)
    aggregates = aggregate.interval_estimates(matrices.matrices, seed=0, reps=REPS)
    found = variants.find_variants(analysis)
    stats, _ = variants.variant_stats(found, aggregates, matrices, dips, seed=0, reps=REPS,
                                      histories=_histories(synthetic_runs, records))
    same = stats.set_index("method")[["same_evals", "paired_runs"]]
    assert same.loc["BAQ (kappa0=0)"].tolist() == [2, 2]
    assert same.loc["BAQ (lambda0=0)"].tolist() == [1, 2]
    assert same.loc["BAQ (priority=none)"].tolist() == [0, 2]
    assert same.loc["IQL"].isna().all()
    markdown = variants.improvement_markdown(found, stats, variants.improvement_over_reference(
        found, matrices, seed=0, reps=REPS), seed=0, reps=REPS)
    assert "| BAQ (kappa0=0) | 2 × 1 |" in markdown and markdown.count("| 2 of 2 |") == 1
    assert "| (reference) | (reference) | — |" in markdown


def test_outputs_only_where_they_apply(synthetic_runs):
    swept_no_reference = [_record(a, s, 40.0, 50.0 + s) for a in ("cql", "awac") for s in range(2)]
    swept_no_reference += [_record("baq", s, 40.0, 45.0 + s, lambda0=v) for s in range(2) for v in (0.0, 0.3)]
    no_sweep = [_record(a, s, 40.0, 50.0 + s) for a in ("baq", "iql") for s in range(2)]
    written = {}
    for name, records in (("no reference", swept_no_reference), ("no sweep", no_sweep)):
        analysis, matrices, dips = _built(synthetic_runs, records)
        aggregates = aggregate.interval_estimates(matrices.matrices, seed=0, reps=20)
        writer = Recorder()
        lines = variants.write_outputs(writer, analysis, aggregates, matrices, dips,
                                       _histories(synthetic_runs, records), method_colors(analysis.methods),
                                       seed=0, reps=20)
        written[name] = (sorted(writer.files), lines)
    assert written["no sweep"] == ([], [])
    files, lines = written["no reference"]
    assert files == ["sensitivity_baq_lambda0", "variants.csv", "variants_baq"]
    assert lines == ["- Variants (methods of a swept algorithm) are measured against a reference: none (no "
                     "IQL, and not exactly one algorithm that is not swept: CQL, AWAC)."]


ABLATION_TOML = f"""name = "ablation_mini"
algorithms = ["baq", "iql"]
datasets = ["{TASK}"]
seeds = [0, 1]
[budget]
offline_steps = 100
online_steps = 100
eval_interval = 10
eval_episodes = 1
utd = 1
[overrides.baq]
schedule_T = 25
[[sweep.baq]]
schedule = ["linear", "constant", "step"]
[[sweep.baq]]
lambda0 = [0.0]
[[sweep.baq]]
kappa0 = [0.0]
lambda0 = [0.0]
priority = ["none"]
"""


def _digest(folder, names) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def test_ablation_report_writes_variant_tables_and_figures(store, tmp_path, curve):
    matrix_file = tmp_path / "ablation_mini.toml"
    matrix_file.write_text(ABLATION_TOML)
    name, matrix = matrix_from_file(matrix_file)
    exp = store.experiment(name, tmp_path)
    iql_scores = []
    for seed in range(2):
        scores = curve(100, 100, 40.0, 50.0 + seed, 10)
        scores[110] = 30.0  # IQL's dip: 10 on both seeds
        store.log_run(exp, algo="iql", dataset=TASK, seed=seed, offline_steps=100, scores=scores)
        iql_scores.append(scores)
    for i, overrides in enumerate(matrix["variants"]["baq"]):
        for seed in range(2):
            scores = curve(100, 100, 40.0, 60.0 + i + seed, 10)
            scores[110] = 40.0 - i - 2 * seed  # the dip: i + 2·seed
            if overrides.get("priority") == "none":  # everything off: IQL's evals, as the real cells give
                scores = iql_scores[seed]
            store.log_run(exp, algo="baq", dataset=TASK, seed=seed, offline_steps=100, scores=scores,
                          overrides=overrides)
    first = report(name, tracking_uri=store.uri, out_dir=tmp_path / "a", seed=0, reps=REPS, matrix=matrix)
    second = report(name, tracking_uri=store.uri, out_dir=tmp_path / "b", seed=0, reps=REPS, matrix=matrix)
    tables = ["variants.csv", "improvement_over_reference.csv", "improvement_over_reference.md",
              "switch_summary.csv"]
    assert _digest(first, tables) == _digest(second, tables)

    summary = pd.read_csv(first / "switch_summary.csv").set_index("method")
    labels = ["BAQ (schedule=constant)", "BAQ (schedule=linear)", "BAQ (schedule=step)", "BAQ (lambda0=0)",
              "BAQ (kappa0=0, lambda0=0, priority=none)", "IQL"]
    assert sorted(summary.index) == sorted(labels)
    assert summary.loc["BAQ (schedule=step)", "drop_mean"] == pytest.approx(2.0 + 1.0)  # i = 2, seeds 0 and 1
    assert summary.loc["IQL", "drop_mean"] == pytest.approx(10.0)
    poi = pd.read_csv(first / "improvement_over_reference.csv")
    online = poi[poi["phase"] == "online"].set_index("variant")
    assert set(online.index) == set(labels) - {"IQL"} and (online["reference"] == "IQL").all()
    everything_off = "BAQ (kappa0=0, lambda0=0, priority=none)"
    assert online.loc[everything_off, "probability"] == 0.5  # IQL's own runs: every comparison a tie
    assert (online.drop(everything_off)["probability"] == 1.0).all()  # the others end above both IQL runs
    assert (poi.loc[poi["phase"] == "offline", "probability"] == 0.5).all()  # all end offline at 40
    markdown = (first / "improvement_over_reference.md").read_text()
    assert "| BAQ (schedule=step) | 2 × 1 | 62.5 [62.0, 63.0] | 3.0 [2.0, 4.0] | 1.00 [1.00, 1.00] |" in markdown
    assert f"| {everything_off} | 2 × 1 | 50.5 [50.0, 51.0] | 10.0 [10.0, 10.0] |" in markdown
    assert markdown.count("| 2 of 2 |") == 1 and markdown.count("| 0 of 2 |") == 4
    same = pd.read_csv(first / "variants.csv").set_index("method")
    assert same.loc[everything_off, ["same_evals", "paired_runs"]].tolist() == [2, 2]
    assert "Reference: IQL (the report has IQL and does not sweep it)" in markdown
    readme = (first / "README.md").read_text()
    assert "measured against a reference: IQL" in readme and "`improvement_over_reference.md`" in readme
    for figure in ("sensitivity_baq_schedule", "variants_baq"):
        image = matplotlib.image.imread(first / f"{figure}.png")
        assert image[..., :3].std() > 0.05 and (first / f"{figure}.pdf").read_bytes()[:5] == b"%PDF-"
