"""The offline→online switch: how far each run's score falls right after it and how long it takes to recover.

Fine-tuning an offline policy online often first loses performance (the "unlearning" dip that BAQ is meant to
shrink). Per run, from its eval history:

- `offline_end`: the last eval at or before the switch (step <= offline_steps), the table's end of offline;
- `lowest`: the lowest eval in the window right after the switch, the first `window_fraction` of the run's
  online steps (default 0.2: the first 10k of 50k, the first 200k of CORL's 1M) and at least up to the
  first online eval, and its `lowest_step` counted from the switch;
- `drop` = offline_end − lowest (positive: a dip; negative: no eval in the window fell below the switch);
- `recovery_steps`: online steps until the first online eval at or above `offline_end` (NaN if none is);
- `offline_drop_mean`, `offline_drop_max` over `offline_windows` placebo switches: the same statistic (eval
  minus the lowest eval in the next `window_steps`) at every eval of the second half of the offline phase
  whose window ends by the switch. It is the drop the run shows with no switch at all: a policy whose evals
  swing by 20 points between checkpoints offline will "drop" that much after the switch too, so a drop
  means something only where it stands above the offline ones.

A single eval is itself noisy (10 episodes on Hopper move by ±10 points), so compare drops over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from suite.errors import UserError

WINDOW_FRACTION = 0.2
# Placebo switches start halfway through the offline phase: early offline training still climbs, and a
# rising score would make the no-switch drops look smaller than they are.
PLACEBO_FROM = 0.5
DIP_COLUMNS = ["run_id", "method", "algorithm", "dataset", "seed", "offline_end", "lowest", "lowest_step",
               "drop", "recovery_steps", "window_steps", "offline_drop_mean", "offline_drop_max",
               "offline_windows"]
SUMMARY_COLUMNS = ["method", "algorithm", "dataset", "n", "offline_end_mean", "lowest_mean", "drop_mean",
                   "drop_std", "drop_max", "recovered", "recovery_steps_median", "offline_drop_mean",
                   "offline_drop_max"]


def switch_dips(scores: pd.DataFrame, used_runs: pd.DataFrame,
                window_fraction: float = WINDOW_FRACTION) -> pd.DataFrame:
    """One row per used run with an eval at or before the switch and one inside the window after it.

    `scores`: the tidy eval history (run_id, step, normalized_score); `used_runs`: run_id, method, algorithm,
    dataset, seed, offline_steps."""
    if not 0.0 < window_fraction <= 1.0:
        raise UserError(f"window_fraction must be in (0, 1], got {window_fraction}")
    evals = scores.dropna(subset=["normalized_score"])[["run_id", "step", "normalized_score"]]
    by_run = {run_id: hist.sort_values("step") for run_id, hist in evals.groupby("run_id", sort=False)}
    rows = []
    for run in used_runs.itertuples(index=False):
        hist = by_run.get(run.run_id, evals.iloc[:0])
        before = hist[hist["step"] <= run.offline_steps]
        after = hist[hist["step"] > run.offline_steps]
        if before.empty or after.empty:
            continue
        offline_end = float(before["normalized_score"].iloc[-1])
        offsets = after["step"] - run.offline_steps
        # The window always reaches the first online eval, however sparse the evals are.
        window = max(window_fraction * int(offsets.iloc[-1]), int(offsets.iloc[0]))
        in_window = after[offsets <= window]
        lowest_at = in_window["normalized_score"].idxmin()
        back = after[after["normalized_score"] >= offline_end]
        recovery = float(back["step"].iloc[0] - run.offline_steps) if len(back) else np.nan
        rows.append({"run_id": run.run_id, "method": run.method, "algorithm": run.algorithm,
                     "dataset": run.dataset, "seed": int(run.seed), "offline_end": offline_end,
                     "lowest": float(in_window.loc[lowest_at, "normalized_score"]),
                     "lowest_step": int(in_window.loc[lowest_at, "step"] - run.offline_steps),
                     "drop": offline_end - float(in_window.loc[lowest_at, "normalized_score"]),
                     "recovery_steps": recovery, "window_steps": int(window),
                     **_offline_drops(before, window, run.offline_steps)})
    return pd.DataFrame(rows, columns=DIP_COLUMNS)


def _offline_drops(before: pd.DataFrame, window: float, offline_steps: int) -> dict[str, float]:
    """The drop statistic at placebo switches: each eval from PLACEBO_FROM of the offline phase on whose
    `window` ends by the real switch, minus the lowest eval inside that window (evals sorted by step)."""
    steps, values = before["step"].to_numpy(), before["normalized_score"].to_numpy()
    drops = []
    for i, step in enumerate(steps):
        if step < PLACEBO_FROM * offline_steps or step + window > offline_steps:
            continue
        ahead = values[(steps > step) & (steps <= step + window)]
        if len(ahead):
            drops.append(float(values[i] - ahead.min()))
    return {"offline_drop_mean": float(np.mean(drops)) if drops else np.nan,
            "offline_drop_max": max(drops) if drops else np.nan, "offline_windows": len(drops)}


def switch_summary(dips: pd.DataFrame) -> pd.DataFrame:
    """Per (method, dataset): means over seeds, the worst drop, how many runs got back and the median time."""
    rows = []
    for (method, dataset), group in dips.groupby(["method", "dataset"], sort=False):
        recovered = group["recovery_steps"].dropna()
        rows.append({"method": method, "algorithm": group["algorithm"].iloc[0], "dataset": dataset,
                     "n": len(group), "offline_end_mean": group["offline_end"].mean(),
                     "lowest_mean": group["lowest"].mean(), "drop_mean": group["drop"].mean(),
                     # Sample standard deviation over seeds; undefined (NaN) for one seed.
                     "drop_std": group["drop"].std(ddof=1) if len(group) > 1 else np.nan,
                     "drop_max": group["drop"].max(), "recovered": f"{len(recovered)}/{len(group)}",
                     "recovery_steps_median": recovered.median() if len(recovered) else np.nan,
                     "offline_drop_mean": group["offline_drop_mean"].mean(),
                     "offline_drop_max": group["offline_drop_max"].max()})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
