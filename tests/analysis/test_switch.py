"""The switch dip: drop right after the offline→online switch and recovery time, on hand-made histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.switch import switch_dips, switch_summary
from suite.errors import UserError

OFFLINE = 100


def _history(run_id: str, values: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"run_id": run_id, "step": list(values), "normalized_score": list(values.values())})


def _runs(*run_ids: str, method: str = "BAQ", seeds=None) -> pd.DataFrame:
    return pd.DataFrame({"run_id": list(run_ids), "method": method, "algorithm": method.lower(),
                         "dataset": "hopper", "seed": seeds or list(range(len(run_ids))), "offline_steps": OFFLINE})


def test_drop_lowest_and_recovery_by_hand() -> None:
    # Online 100 steps, window = first 20: evals at 110 and 120 are in it, 130+ are not (a later fall of 0
    # must not count as the dip). Back to >= 50 first at step 140.
    dip = _history("a", {50: 40.0, 100: 50.0, 110: 35.0, 120: 42.0, 130: 0.0, 140: 55.0, 200: 60.0})
    # Never falls: the first online eval is already above the switch.
    flat = _history("b", {100: 30.0, 120: 31.0, 140: 20.0, 200: 33.0})
    # Never recovers.
    lost = _history("c", {100: 70.0, 110: 20.0, 200: 69.0})
    out = switch_dips(pd.concat([dip, flat, lost]), _runs("a", "b", "c")).set_index("run_id")
    assert out.loc["a", ["offline_end", "lowest", "lowest_step", "drop", "recovery_steps", "window_steps"]
                   ].tolist() == [50.0, 35.0, 10, 15.0, 40.0, 20]
    assert out.loc["b", "drop"] == -1.0 and out.loc["b", "recovery_steps"] == 20.0
    assert out.loc["c", "drop"] == 50.0 and np.isnan(out.loc["c", "recovery_steps"])

    summary = switch_summary(out.reset_index()).iloc[0]
    assert summary["n"] == 3 and summary["recovered"] == "2/3"
    assert summary["drop_mean"] == pytest.approx((15.0 - 1.0 + 50.0) / 3)
    assert summary["drop_std"] == pytest.approx(np.std([15.0, -1.0, 50.0], ddof=1))
    assert summary["drop_max"] == 50.0 and summary["recovery_steps_median"] == 30.0
    assert summary["offline_end_mean"] == pytest.approx(50.0)


def test_runs_without_both_phases_are_skipped_and_one_seed_has_no_std() -> None:
    offline_only = _history("a", {50: 10.0, 100: 20.0})
    online_only = _history("b", {150: 10.0, 200: 20.0})
    both = _history("c", {100: 20.0, 150: 10.0, 200: 25.0})
    out = switch_dips(pd.concat([offline_only, online_only, both]), _runs("a", "b", "c"), window_fraction=0.5)
    assert out["run_id"].tolist() == ["c"] and out["drop"].tolist() == [10.0]
    assert np.isnan(switch_summary(out).iloc[0]["drop_std"])
    # A window with no eval in it (10% of 100 steps, first online eval 50 steps in) reaches that first eval.
    sparse = switch_dips(both, _runs("c"), window_fraction=0.1).iloc[0]
    assert sparse["window_steps"] == 50 and sparse["lowest"] == 10.0 and sparse["lowest_step"] == 50
    with pytest.raises(UserError, match="window_fraction must be in \\(0, 1\\], got 0"):
        switch_dips(both, _runs("c"), window_fraction=0)


def test_summary_has_one_row_per_variant_of_one_algorithm() -> None:
    # Two variants of BAQ (same algorithm, task and seeds) stay apart: the summary groups by method label.
    histories = [_history(f"{name}{seed}", {100: 50.0, 110: 50.0 - drop - seed, 200: 60.0})
                 for name, drop in (("lin", 4.0), ("off", 10.0)) for seed in range(2)]
    runs = pd.concat([_runs("lin0", "lin1", method="BAQ (schedule=linear)"),
                      _runs("off0", "off1", method="BAQ (kappa0=0, lambda0=0, priority=none)")])
    runs["algorithm"] = "baq"
    summary = switch_summary(switch_dips(pd.concat(histories), runs)).set_index("method")
    assert summary["drop_mean"].to_dict() == {"BAQ (schedule=linear)": 4.5,
                                              "BAQ (kappa0=0, lambda0=0, priority=none)": 10.5}
    assert (summary["algorithm"] == "baq").all() and (summary["n"] == 2).all()


def test_offline_drops_are_the_same_statistic_at_placebo_switches_by_hand() -> None:
    # Offline 100 steps, online 100: window = 20 steps. Placebo switches: evals at steps >= 50 whose window
    # (step, step + 20] ends by 100, i.e. 50, 60, 70, 80. Step 40 is in the first half, 90 and 100 reach past
    # the switch.
    evals = {40: 0.0, 50: 30.0, 60: 45.0, 70: 25.0, 80: 40.0, 90: 38.0, 100: 42.0, 110: 20.0, 200: 50.0}
    out = switch_dips(_history("a", evals), _runs("a")).iloc[0]
    # 50: 30 − min(45, 25) = 5; 60: 45 − min(25, 40) = 20; 70: 25 − min(40, 38) = −13; 80: 40 − min(38, 42) = 2.
    assert out["offline_windows"] == 4
    assert out["offline_drop_mean"] == pytest.approx((5.0 + 20.0 - 13.0 + 2.0) / 4)
    assert out["offline_drop_max"] == 20.0
    assert out["drop"] == 22.0  # the real switch: 42 − 20, above every placebo drop

    # Evals too sparse for a placebo window inside the offline phase: no placebo drops, NaN, not 0.
    sparse = switch_dips(_history("b", {100: 50.0, 110: 40.0, 200: 60.0}), _runs("b")).iloc[0]
    assert sparse["offline_windows"] == 0 and np.isnan(sparse["offline_drop_mean"])
    summary = switch_summary(pd.concat([switch_dips(_history("a", evals), _runs("a")),
                                        switch_dips(_history("b", {100: 50.0, 110: 40.0, 200: 60.0}),
                                                    _runs("b", seeds=[1]))])).iloc[0]
    assert summary["offline_drop_mean"] == pytest.approx(3.5)  # NaN of run b skipped
    assert summary["offline_drop_max"] == 20.0
