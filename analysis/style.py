"""One look for every figure: seaborn whitegrid, fonts of at least 9 pt at the saved size, the colour-blind
palette, and a fixed colour per algorithm so that BAQ is the same blue in every figure of every report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

DPI = 200
MIN_FONT_PT = 9.0
PALETTE = "colorblind"
# Palette slots of the paper's four algorithms; every other method takes the remaining slots in name order.
FIXED_SLOTS = {"BAQ": 0, "IQL": 1, "CQL": 2, "AWAC": 3}
FONT_RC = {
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11,
    # TrueType fonts in the PDF: editable text and no Type 3 fonts, which some publishers reject.
    "pdf.fonttype": 42, "ps.fonttype": 42,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.6,
}


def method_colors(methods: list[str]) -> dict[str, tuple[float, float, float]]:
    """Colour per method: BAQ/IQL/CQL/AWAC fixed, others deterministic (by name) from the same palette."""
    palette = sns.color_palette(PALETTE, 10)
    colors = {m: palette[FIXED_SLOTS[m]] for m in methods if m in FIXED_SLOTS}
    extra = sorted(m for m in methods if m not in FIXED_SLOTS)
    spare = [palette[i] for i in range(len(palette)) if i not in FIXED_SLOTS.values()]
    if len(extra) > len(spare):
        spare += sns.color_palette("husl", len(extra) - len(spare))
    colors.update(zip(extra, spare, strict=False))
    return colors


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the suite's style to figures made inside the block; the caller's rcParams are restored."""
    with matplotlib.rc_context({**sns.axes_style("whitegrid"), **FONT_RC}):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, made without pyplot so that no global figure state is touched."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _format_step(value: float, _pos: int | None = None) -> str:
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


STEP_FORMATTER = FuncFormatter(_format_step)


def task_names(datasets: list[str]) -> dict[str, str]:
    """`d4rl:hopper-medium-v2` → `hopper-medium-v2`, unless two datasets would then share a name. Other
    sources keep their prefix (`local:hopper-medium`), so no table presents local data as D4RL's."""
    tails = [d.removeprefix("d4rl:") for d in datasets]
    return {d: (t if tails.count(t) == 1 else d) for d, t in zip(datasets, tails, strict=True)}
