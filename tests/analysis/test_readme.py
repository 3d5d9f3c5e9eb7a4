"""analysis.readme: the reproducibility lines a report's README writes about its runs."""

from __future__ import annotations

import pandas as pd

from analysis.readme import _cpu_lines


def test_cpu_models_are_counted_and_a_mix_is_flagged() -> None:
    one_kind = pd.DataFrame({"host_cpu": ["Intel(R) Xeon(R) Processor"] * 3})
    assert _cpu_lines(one_kind) == ["  - Intel(R) Xeon(R) Processor: 3 run(s)"]
    mixed = pd.DataFrame({"host_cpu": ["AMD EPYC 7B13", "", None, "AMD EPYC 7B13", "Intel(R) Xeon(R) Processor"]})
    lines = _cpu_lines(mixed)
    assert lines[:3] == ["  - (not recorded): 2 run(s)", "  - AMD EPYC 7B13: 2 run(s)",
                         "  - Intel(R) Xeon(R) Processor: 1 run(s)"]
    assert lines[3].startswith("  - Runs come from more than one kind of CPU")
