"""Method names in reports (analysis/scores.py)."""

from __future__ import annotations

from analysis.scores import display_name, method_label


def test_every_algorithm_has_its_papers_spelling() -> None:
    names = [display_name(a) for a in ("baq", "iql", "cql", "awac", "calql", "rebrac")]
    assert names == ["BAQ", "IQL", "CQL", "AWAC", "Cal-QL", "ReBRAC"]
    assert display_name("td3bc") == "TD3BC"  # an algorithm without a listed spelling: upper case


def test_a_swept_method_is_named_by_its_algorithm_and_overrides() -> None:
    label = method_label("rebrac", {"mixing_ratio": 0.5}, {"mixing_ratio": "mixing_ratio"})
    assert label == "ReBRAC (mixing_ratio=0.5)"
