"""The score table: per-cell mean ± std, totals (sum of per-task means), bold on the best, incomplete cells
marked with a dagger and n=k/N, the paper's published totals, sweep columns."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from analysis.scores import analyse
from analysis.tables import score_table, totals
from suite.errors import UserError
from suite.matrix_spec import ExpectedCells

ONLINE = {("baq", "hopper"): [80.0, 90.0, 100.0], ("iql", "hopper"): [70.0, 75.0, 80.0],
          ("baq", "walker"): [60.0, 62.0, 64.0], ("iql", "walker"): [66.0, 70.0, 71.0]}


def _records(online=ONLINE):
    return [{"algo": a, "dataset": d, "seed": s, "offline": v - 30.0, "online": v}
            for (a, d), values in online.items() for s, v in enumerate(values)]


def _row(markdown: str, first_cell: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_cells_totals_and_bold(synthetic_runs):
    analysis = analyse(synthetic_runs(_records()))
    table = score_table(analysis)
    hopper = _row(table.markdown, "hopper")
    # BAQ hopper: online mean 90, sample std 10; offline 60 ± 10. Best on both → bold.
    assert hopper[1] == "**60.0 ± 10.0** → **90.0 ± 10.0**"
    assert hopper[2] == "45.0 ± 5.0 → 75.0 ± 5.0"
    walker = _row(table.markdown, "walker")
    iql_walker = np.array(ONLINE[("iql", "walker")])
    assert walker[2] == (f"**{iql_walker.mean() - 30:.1f} ± {iql_walker.std(ddof=1):.1f}** → "
                         f"**{iql_walker.mean():.1f} ± {iql_walker.std(ddof=1):.1f}**")
    assert "**" not in walker[1]
    total = _row(table.markdown, "**Total**")
    baq_total = np.mean(ONLINE[("baq", "hopper")]) + np.mean(ONLINE[("baq", "walker")])
    iql_total = np.mean(ONLINE[("iql", "hopper")]) + np.mean(ONLINE[("iql", "walker")])
    assert total[1] == f"**{baq_total - 60:.2f}** → **{baq_total:.2f}**"
    assert total[2] == f"{iql_total - 60:.2f} → {iql_total:.2f}"
    sums = totals(analysis).set_index(["method", "phase"])["total"]
    assert sums[("IQL", "online")] == pytest.approx(iql_total)
    assert "Paper total" not in table.markdown
    assert r"\mathbf{90.0 \pm 10.0}" in table.latex and r"\multicolumn{2}{c}{BAQ}" in table.latex
    assert table.latex.count(r"\\") == 1 + 1 + 2 + 1  # group header, sub-header, 2 tasks, total
    assert not table.notes


def test_incomplete_cells_are_marked_not_hidden(synthetic_runs):
    records = _records()
    for rec in records:
        if rec["algo"] == "iql" and rec["dataset"] == "walker" and rec["seed"] == 1:
            rec.update(status="failed", error="RuntimeError: diverged")
    records = [r for r in records if not (r["algo"] == "baq" and r["dataset"] == "hopper" and r["seed"] == 2)]
    table = score_table(analyse(synthetic_runs(records)))
    walker = _row(table.markdown, "walker")
    values = [66.0, 71.0]  # the failed seed 1 is left out of the numbers
    assert walker[2].startswith(f"**{np.mean(values) - 30:.1f} ± {np.std(values, ddof=1):.1f}**")
    assert walker[2].endswith("†(n=2/3)")
    assert _row(table.markdown, "hopper")[1].endswith("†(n=2/3)")
    assert any("IQL on walker: n=2/3" in n and "failed: seed 1 (RuntimeError: diverged)" in n
               for n in table.notes)
    assert any("BAQ on hopper: n=2/3" in n and "no run: seed 2" in n for n in table.notes)
    assert r"$^\dagger${\scriptsize n=2/3}" in table.latex
    for note in table.notes:
        assert note in table.markdown


def test_paper_matrix_adds_published_totals_and_missing_algorithms(synthetic_runs):
    matrix = {"algorithms": ["BAQ", "IQL", "CQL", "AWAC"], "datasets": ["hopper", "walker"], "seeds": 3,
              "paper": True}
    table = score_table(analyse(synthetic_runs(_records()), matrix))
    assert _row(table.markdown, "Task")[1:] == ["BAQ", "IQL", "CQL", "AWAC"]
    assert _row(table.markdown, "Paper total (online)")[1:] == ["702.32", "687.92", "564.61", "—"]
    assert _row(table.markdown, "hopper")[3] == "— †(n=0/3)"
    # Totals over no task are not a number, and an incomplete total never wins the bold.
    assert _row(table.markdown, "**Total**")[3] == "— †(over 0/2 tasks)"
    assert re.search(r"Paper total &\s*& 702\.32 &\s*& 687\.92 &\s*& 564\.61 &\s*& -- ", table.latex)


def test_sweeps_become_separate_columns(synthetic_runs):
    records = [{"algo": "baq", "dataset": "hopper", "seed": s, "offline": 10.0, "online": 50.0 + 10 * lam,
                "overrides": {"algo.lambda0": lam, "algo.schedule": sched}}
               for lam in (0.1, 1.0) for sched in ("linear", "constant") for s in range(2)]
    records += [{"algo": "iql", "dataset": "hopper", "seed": s, "offline": 5.0, "online": 40.0}
                for s in range(2)]
    analysis = analyse(synthetic_runs(records))
    assert analysis.methods == ["BAQ (lambda0=0.1, schedule=constant)", "BAQ (lambda0=0.1, schedule=linear)",
                                "BAQ (lambda0=1, schedule=constant)", "BAQ (lambda0=1, schedule=linear)",
                                "IQL"]
    header = _row(score_table(analysis).markdown, "Task")
    assert header[1:] == analysis.methods


def test_sweep_variants_without_any_run_are_listed_missing(synthetic_runs):
    # Expected: λ ∈ {0.1, 1} × schedule ∈ {linear, constant}. Nobody ran (λ=1, constant); a λ=0.5 run is from
    # an older sweep and must be left out rather than counted as a variant.
    ran = [(0.1, "linear"), (0.1, "constant"), (1.0, "linear"), (0.5, "linear")]
    records = [{"algo": "baq", "dataset": "hopper", "seed": s, "offline": 10.0, "online": 50.0 + 10 * lam,
                "overrides": {"kappa0": 1.0, "lambda0": lam, "schedule": sched}}
               for lam, sched in ran for s in range(2)]
    variants = [{"kappa0": 1.0, "lambda0": lam, "schedule": sched}
                for lam in (0.1, 1.0) for sched in ("linear", "constant")]
    matrix = {"algorithms": ["baq"], "datasets": ["hopper"], "seeds": 2, "variants": {"baq": variants}}
    analysis = analyse(synthetic_runs(records), matrix)
    assert analysis.methods == ["BAQ (lambda0=0.1, schedule=constant)", "BAQ (lambda0=0.1, schedule=linear)",
                                "BAQ (lambda0=1, schedule=constant)", "BAQ (lambda0=1, schedule=linear)"]
    assert analysis.common_overrides == {"kappa0": 1.0}
    cells = analysis.cells.set_index("method")
    assert cells.loc["BAQ (lambda0=1, schedule=constant)", "n"] == 0
    assert cells.loc["BAQ (lambda0=1, schedule=constant)", "missing_seeds"] == [0, 1]
    assert cells["n"].tolist() == [2, 2, 0, 2]
    outside = analysis.runs[analysis.runs["lambda0"] == 0.5]
    assert len(outside) == 2 and set(outside["note"]) == {"outside the matrix"} and not outside["used"].any()
    table = score_table(analysis)
    assert _row(table.markdown, "hopper")[3] == "— †(n=0/2)"
    with pytest.raises(UserError, match="variants name algorithms \\['iql'\\] not in algorithms"):
        ExpectedCells.from_dict({"algorithms": ["baq"], "datasets": ["d"], "seeds": [0], "variants": {"iql": [{}]}})
    with pytest.raises(UserError, match="matrix variants .* invalid"):
        ExpectedCells.from_dict({"algorithms": ["baq"], "datasets": ["d"], "seeds": [0], "variants": {"baq": []}})


def test_matrix_validation_names_the_bad_value():
    with pytest.raises(UserError, match="seeds 'five' invalid"):
        ExpectedCells.from_dict({"algorithms": ["baq"], "datasets": ["d"], "seeds": "five"})
    with pytest.raises(UserError, match="unknown: \\['colour'\\]"):
        ExpectedCells.from_dict({"algorithms": ["baq"], "datasets": ["d"], "seeds": [0], "colour": 1})
    assert ExpectedCells.from_dict({"algorithms": ["BAQ"], "datasets": ["d"], "seeds": 2}).seeds == [0, 1]


def test_an_incomplete_total_is_marked_and_never_bold(synthetic_runs):
    online = {("baq", "hopper"): [200.0, 200.0], ("iql", "hopper"): [70.0, 80.0],
              ("iql", "walker"): [60.0, 70.0]}
    table = score_table(analyse(synthetic_runs(_records(online))))
    total = _row(table.markdown, "**Total**")
    assert total[1] == "170.00 → 200.00 †(over 1/2 tasks)"
    assert total[2] == "**80.00** → **140.00**"
    assert _row(table.markdown, "walker")[1] == "— †(n=0/2)"


def test_an_override_fixed_per_algorithm_is_not_a_sweep(synthetic_runs):
    records = [{"algo": algo, "dataset": "hopper", "seed": s, "offline": 1.0, "online": 2.0,
                "overrides": {"algo.lambda0": 0.1} if algo == "baq" else {}} for algo in ("baq", "iql")
               for s in range(2)]
    analysis = analyse(synthetic_runs(records))
    assert analysis.methods == ["BAQ", "IQL"] and analysis.swept == []
    assert analysis.common_overrides == {"algo.lambda0": "BAQ: 0.1"}


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex with booktabs (TeX Live)")
def test_latex_table_compiles(synthetic_runs, tmp_path):
    records = _records()
    records = [r for r in records if not (r["algo"] == "baq" and r["dataset"] == "hopper" and r["seed"] == 2)]
    for rec in records:  # underscores and other LaTeX specials in names must be escaped
        rec["dataset"] = f"local:{rec['dataset']}_medium"
    matrix = {"algorithms": ["BAQ", "IQL", "CQL"], "datasets": ["local:hopper_medium", "local:walker_medium"],
              "seeds": 3, "paper": True}
    table = score_table(analyse(synthetic_runs(records), matrix))
    # A sweep's method labels carry parameter names with underscores too.
    sweep = [{"algo": "baq", "dataset": "local:hopper_medium", "seed": s, "offline": 10.0, "online": 50.0 + t / 1e3,
              "overrides": {"schedule_T": t, "schedule": "linear"}} for t in (1000, 3000) for s in range(2)]
    sweep_table = score_table(analyse(synthetic_runs(sweep)))
    assert "schedule_T=1000" in sweep_table.markdown
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      f"{table.latex}\n\n{sweep_table.latex}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
