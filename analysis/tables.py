"""The score table in the BAQ paper's layout: one row per task, one column per method, mean ± std over seeds
of the normalized score at the end of offline training → end of online fine-tuning, best per row in bold,
a total row (sum of per-task means) and, for the paper matrix, the published totals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.scores import Analysis
from analysis.style import task_names

# Totals row of the BAQ paper's D4RL MuJoCo offline-to-online table (sum over tasks of the per-task mean
# normalized score after online fine-tuning), as quoted in the project issue. AWAC: no published total.
PAPER_TOTALS: dict[str, float | None] = {"BAQ": 702.32, "IQL": 687.92, "CQL": 564.61, "AWAC": None}
PHASES = ("offline", "online")
DAGGER = "†"


@dataclass
class ScoreTable:
    markdown: str
    latex: str
    notes: list[str]        # one line per incomplete cell
    totals: pd.DataFrame    # method, phase, total, tasks_present, tasks_expected


def _fmt(value: float, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _seeds(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def incomplete_notes(analysis: Analysis) -> list[str]:
    """One line per (method, task) with fewer finished runs than expected, saying why."""
    notes = []
    names = task_names(analysis.datasets)
    for cell in analysis.cells.itertuples(index=False):
        if cell.complete:
            continue
        reasons = []
        if cell.failed_seeds:
            errors = f" ({'; '.join(cell.errors)})" if cell.errors else ""
            reasons.append(f"failed: {_seeds(cell.failed_seeds)}{errors}")
        if cell.running_seeds:
            reasons.append(f"still running or interrupted: {_seeds(cell.running_seeds)}")
        if cell.no_eval_seeds:
            reasons.append(f"finished without evals: {_seeds(cell.no_eval_seeds)}")
        if cell.missing_seeds:
            reasons.append(f"no run: {_seeds(cell.missing_seeds)}")
        notes.append(f"{cell.method} on {names[cell.dataset]}: n={cell.n}/{cell.n_expected} — "
                     + "; ".join(reasons))
    return notes


def _best(values: dict[str, float], digits: int) -> set[str]:
    """Methods whose displayed mean equals the row's best displayed mean (ties are all bold)."""
    shown = {m: round(v, digits) for m, v in values.items() if not math.isnan(v)}
    if not shown:
        return set()
    top = max(shown.values())
    return {m for m, v in shown.items() if v == top}


def totals(analysis: Analysis) -> pd.DataFrame:
    """Sum over tasks of the per-task mean, per method and phase (the paper's total row)."""
    rows = []
    for method in analysis.methods:
        mine = analysis.cells[analysis.cells["method"] == method]
        for phase in PHASES:
            means = mine[f"{phase}_mean"].dropna()
            total = float(means.sum()) if len(means) else math.nan
            rows.append({"method": method, "phase": phase, "total": total,
                         "tasks_present": len(means), "tasks_expected": len(mine)})
    return pd.DataFrame(rows, columns=["method", "phase", "total", "tasks_present", "tasks_expected"])


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          # Non-ASCII symbols of the notes, so that the table also compiles under pdflatex.
          "—": "---", "→": r"$\to$", "†": r"$^\dagger$", "±": r"$\pm$"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


class _Cell:
    """Text of one (method, phase) entry in both formats."""

    def __init__(self, mean: float, std: float, bold: bool, digits: int = 1) -> None:
        self.missing = math.isnan(mean)
        body = _fmt(mean, digits) + ("" if math.isnan(std) else f" ± {_fmt(std, digits)}")
        tex = _fmt(mean, digits) + ("" if math.isnan(std) else rf" \pm {_fmt(std, digits)}")
        self.md = "—" if self.missing else (f"**{body}**" if bold else body)
        self.tex = "--" if self.missing else (rf"$\mathbf{{{tex}}}$" if bold else f"${tex}$")


def score_table(analysis: Analysis) -> ScoreTable:
    """Markdown and LaTeX versions of the score table, with incomplete cells marked by a dagger and n=k/N."""
    cells = analysis.cells.set_index(["method", "dataset"])
    methods, names = analysis.methods, task_names(analysis.datasets)
    md_rows, tex_rows = [], []
    for dataset in analysis.datasets:
        best = {p: _best({m: cells.loc[(m, dataset), f"{p}_mean"] for m in methods}, 1) for p in PHASES}
        md, tex = [names[dataset]], [_latex_escape(names[dataset])]
        for method in methods:
            cell = cells.loc[(method, dataset)]
            parts = {p: _Cell(cell[f"{p}_mean"], cell[f"{p}_std"], method in best[p]) for p in PHASES}
            mark = "" if cell["complete"] else f" {DAGGER}(n={cell['n']}/{cell['n_expected']})"
            n_of = f"n={cell['n']}/{cell['n_expected']}"
            tex_mark = "" if cell["complete"] else rf"$^\dagger${{\scriptsize {n_of}}}"
            md.append("—" + mark if cell["n"] == 0 else f"{parts['offline'].md} → {parts['online'].md}{mark}")
            tex += [parts["offline"].tex, parts["online"].tex + tex_mark]
        md_rows.append(md)
        tex_rows.append(tex)
    sums = totals(analysis).set_index(["method", "phase"])
    complete_totals = {p: {m: sums.loc[(m, p), "total"] for m in methods
                           if sums.loc[(m, p), "tasks_present"] == sums.loc[(m, p), "tasks_expected"]}
                       for p in PHASES}
    best_total = {p: _best(complete_totals[p], 2) for p in PHASES}
    md_total, tex_total = ["**Total**"], [r"\textbf{Total}"]
    for method in methods:
        present = {p: int(sums.loc[(method, p), "tasks_present"]) for p in PHASES}
        expected = int(sums.loc[(method, "online"), "tasks_expected"])
        parts = {p: _Cell(sums.loc[(method, p), "total"], math.nan, method in best_total[p], digits=2)
                 for p in PHASES}
        if present["offline"] == present["online"]:
            marks = [f"over {present['online']}/{expected} tasks"] if present["online"] < expected else []
        else:
            marks = [f"{p} over {present[p]}/{expected} tasks" for p in PHASES if present[p] < expected]
        mark = f" {DAGGER}({'; '.join(marks)})" if marks else ""
        body = "—" if parts["offline"].missing and parts["online"].missing else \
            f"{parts['offline'].md} → {parts['online'].md}"
        md_total.append(body + mark)
        tex_total += [parts["offline"].tex, parts["online"].tex + (r"$^\dagger$" if marks else "")]
    md_rows.append(md_total)
    tex_rows.append(tex_total)
    if analysis.paper:
        published = [PAPER_TOTALS.get(m) for m in methods]
        md_rows.append(["Paper total (online)"] + [_fmt(v, 2) for v in published])
        tex_rows.append(["Paper total"] + [x for v in published
                                           for x in ("", "--" if v is None else f"{v:.2f}")])
    notes = incomplete_notes(analysis)
    return ScoreTable(_markdown(analysis, md_rows, notes), _latex(analysis, tex_rows, notes), notes,
                      sums.reset_index())


def _markdown(analysis: Analysis, rows: list[list[str]], notes: list[str]) -> str:
    header = ["Task", *analysis.methods]
    lines = [f"# Normalized scores — {analysis.experiment}", "",
             "Mean ± standard deviation over seeds of the normalized score (0 = random, 100 = expert; D4RL's "
             "reference returns, or for a task D4RL lacks the behaviour files' own, as the dataset's provenance "
             "says): end of offline training → end of online fine-tuning. Best per row in bold. Total = sum "
             "over tasks of the per-task means.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + [":---:"] * len(analysis.methods)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines += ["", f"{DAGGER} Incomplete (n = finished seeds / expected seeds; the numbers use the "
                  "finished ones):"]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _latex(analysis: Analysis, rows: list[list[str]], notes: list[str]) -> str:
    n = len(analysis.methods)
    groups = " & ".join(rf"\multicolumn{{2}}{{c}}{{{_latex_escape(m)}}}" for m in analysis.methods)
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(n))
    lines = [
        "% Requires \\usepackage{booktabs}.",
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{Normalized scores ({_latex_escape(analysis.experiment)}): mean $\pm$ std over seeds at "
        r"the end of offline training and of online fine-tuning; best per row in bold; total = sum of "
        r"per-task means.}",
        r"\begin{tabular}{l" + "cc" * n + "}", r"\toprule", rf" & {groups} \\", rules,
        "Task & " + " & ".join(["Offline & Online"] * n) + r" \\", r"\midrule",
    ]
    body = [" & ".join(row) + r" \\" for row in rows]
    split = len(analysis.datasets)
    lines += body[:split] + [r"\midrule"] + body[split:] + [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines.append(r"\par\smallskip\footnotesize $^\dagger$Incomplete: " + "; ".join(
            _latex_escape(note) for note in notes) + ".")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
