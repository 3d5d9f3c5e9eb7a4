"""Run bundles (suite/bundle.py): exact round trips, byte-stable files, merging, and one-line errors for every
kind of bad bundle. Records are built in memory here; tests/suite/test_bundle_store.py reads real stores."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from suite.bundle import (
    MATRIX_FILE,
    RUN_SUFFIX,
    RunRecord,
    finished_in_bundle,
    read_bundle,
    read_run,
    select_for_export,
    write_bundle,
)
from suite.errors import UserError

TRAIN_KEYS = ["perf/updates_per_s", "train/actor_loss", "train/adv_mean", "train/critic_loss", "train/q_mean",
              "train/v_mean", "train/value_loss"]
EVAL_KEYS = ["eval/normalized_score", "eval/normalized_score_std", "eval/return", "eval/return_std"]


def record(cell: str = "a1b2c3d4e5f60718", run_id: str = "r" * 32, *, status: str = "FINISHED",
           start: int = 1_000, scores: tuple[tuple[int, float], ...] = ((5, 1.0), (10, 2.5)),
           experiment: str = "exp", **tags: str) -> RunRecord:
    base = {"baq.algo": "iql", "baq.dataset": "local:hopper-medium", "baq.seed": "0", "baq.offline_steps": "5",
            "baq.cell": cell, "baq.status": "finished" if status == "FINISHED" else "running", **tags}
    return RunRecord(experiment=experiment, run_id=run_id, run_name="iql-hopper-medium-s0", status=status,
                     start_time=start, end_time=start + 10 if status == "FINISHED" else None,
                     params={"algo": "iql", "seed": "0"}, tags=dict(sorted(base.items())),
                     metrics={"eval/normalized_score": scores, "train/q_mean": ((5, 0.5),)})


def test_round_trip_is_exact_for_awkward_floats(tmp_path: Path) -> None:
    values = (0.1 + 0.2, 1e-300, -0.0, math.inf, -math.inf, 123456789.123456789, math.nan, 5e-324)
    rec = record(scores=tuple((i, v) for i, v in enumerate(values)))
    write_bundle([rec], tmp_path)
    back = read_run(next(tmp_path.glob("*" + RUN_SUFFIX)))
    got = [v for _, v in back.metrics["eval/normalized_score"]]
    for want, have in zip(values, got, strict=True):
        assert (math.isnan(want) and math.isnan(have)) or (have == want and math.copysign(1, have)
                                                           == math.copysign(1, want))
    assert back.content() == rec.content()
    assert back.params == rec.params and back.tags == rec.tags and back.start_time == rec.start_time


def test_files_are_byte_stable_and_readable(tmp_path: Path) -> None:
    recs = [record(), record(cell="ffffffffffffffff", run_id="s" * 32, start=500)]
    write_bundle(recs, tmp_path / "a")
    write_bundle(list(reversed(recs)), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    csv = (tmp_path / "a" / "iql-hopper-medium-s0-a1b2c3d4e5f60718.metrics.csv").read_text().splitlines()
    assert csv == ["step,phase,eval/normalized_score,train/q_mean", "5,offline,1.0,0.5", "10,online,2.5,"]
    doc = json.loads((tmp_path / "a" / "iql-hopper-medium-s0-a1b2c3d4e5f60718.run.json").read_text())
    assert doc["cell"] == "a1b2c3d4e5f60718" and doc["finished"] is True and doc["schema"] == 1
    # Writing the same runs again changes nothing.
    assert write_bundle(recs, tmp_path / "a") == {"new": 0, "updated": 0, "unchanged": 2}


def test_a_long_run_stays_small(tmp_path: Path) -> None:
    """150k steps logged every 1k with the real metric keys, an eval every 5k: well under ~200 KB."""
    steps = range(1000, 150_001, 1000)
    metrics = {k: tuple((s, 1234.567891234 + s / 7) for s in steps) for k in TRAIN_KEYS}
    metrics.update({k: tuple((s, 45.678912345678 + s / 11) for s in steps if s % 5000 == 0) for k in EVAL_KEYS})
    rec = RunRecord("switch", "r" * 32, "x", "FINISHED", 1, 2, {f"p{i}": "0.0003" for i in range(40)},
                    {"baq.cell": "c" * 16, "baq.offline_steps": "100000"}, metrics)
    write_bundle([rec], tmp_path)
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert 10_000 < size < 200_000


def test_selection_for_export() -> None:
    finished_old = record(run_id="a" * 32, start=1)
    finished_new = record(run_id="b" * 32, start=2)
    unfinished = record(cell="2" * 16, run_id="c" * 32, status="RUNNING")
    superseded = record(cell="3" * 16, run_id="d" * 32, **{"baq.superseded": "true"})
    chosen, left = select_for_export([finished_old, finished_new, unfinished, superseded], False)
    assert [r.run_id for r in chosen] == ["b" * 32] and left == 1
    chosen, left = select_for_export([finished_old, finished_new, unfinished, superseded], True)
    assert [r.run_id for r in chosen] == ["b" * 32, "c" * 32] and left == 0
    assert json.loads(unfinished.manifest())["finished"] is False


def test_merge_of_machines(tmp_path: Path) -> None:
    one, two = record(cell="1" * 16, run_id="a" * 32), record(cell="2" * 16, run_id="b" * 32, start=2_000)
    write_bundle([one], tmp_path / "m1", {"algorithms": ["iql"]})
    write_bundle([two], tmp_path / "m2", {"algorithms": ["iql"]})
    write_bundle([one], tmp_path / "copy")  # the same cell, same content, a second time
    merged = read_bundle([tmp_path / "m1", tmp_path / "m2", tmp_path / "copy"])
    assert [r.cell for r, _ in merged.records] == ["1" * 16, "2" * 16]
    assert merged.matrix == {"algorithms": ["iql"]} and merged.experiment == "exp"

    write_bundle([record(cell="1" * 16, run_id="z" * 32)], tmp_path / "other")
    with pytest.raises(UserError) as err:
        read_bundle([tmp_path / "m1", tmp_path / "other"])
    message = str(err.value)
    assert "1" * 16 in message and "m1" in message and "other" in message and "\n" not in message


def test_export_refuses_another_runs_file_for_a_cell(tmp_path: Path) -> None:
    write_bundle([record(run_id="a" * 32)], tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match="already in"):
        write_bundle([record(cell="9" * 16, run_id="n" * 32), record(run_id="b" * 32)], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written
    # The same run, progressed, is rewritten in place.
    longer = record(run_id="a" * 32, scores=((5, 1.0), (10, 2.5), (15, 3.0)))
    assert write_bundle([longer], tmp_path)["updated"] == 1


def test_finished_in_bundle(tmp_path: Path) -> None:
    write_bundle([record(cell="1" * 16), record(cell="2" * 16, run_id="u" * 32, status="RUNNING")], tmp_path)
    assert finished_in_bundle(tmp_path) == {"1" * 16: 2.5}
    assert finished_in_bundle(tmp_path / "absent") == {}


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Path, Path]:
    folder = tmp_path / "runs"
    write_bundle([record()], folder, {"algorithms": ["iql"]})
    manifest = next(folder.glob("*" + RUN_SUFFIX))
    return folder, manifest, manifest.with_name(manifest.name.replace(RUN_SUFFIX, ".metrics.csv"))


def _one_line_error(folders: list[Path], *needles: str) -> None:
    with pytest.raises(UserError) as err:
        read_bundle(folders)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_truncated_manifest(bundle) -> None:
    folder, manifest, _ = bundle
    manifest.write_text(manifest.read_text()[:200])
    _one_line_error([folder], manifest.name, "not readable JSON")


def test_truncated_metrics(bundle) -> None:
    folder, _, metrics = bundle
    metrics.write_text(metrics.read_text()[:-4])
    _one_line_error([folder], metrics.name, "sha256")


def test_missing_metrics_file(bundle) -> None:
    folder, _, metrics = bundle
    metrics.unlink()
    _one_line_error([folder], metrics.name, "not readable")


def test_unknown_schema(bundle) -> None:
    folder, manifest, _ = bundle
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "schema": 7}))
    _one_line_error([folder], manifest.name, "schema version 7", "accepted: 1")


def test_not_a_bundle_file(bundle) -> None:
    folder, manifest, _ = bundle
    manifest.write_text(json.dumps({"hello": 1}))
    _one_line_error([folder], manifest.name, "not a run bundle")


def test_field_of_the_wrong_type(bundle) -> None:
    folder, manifest, _ = bundle
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "start_time": "soon"}))
    _one_line_error([folder], manifest.name, "start_time")


def test_cell_that_disagrees_with_its_tag(bundle) -> None:
    folder, manifest, _ = bundle
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "cell": "0" * 16}))
    _one_line_error([folder], manifest.name, "does not match")


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    _one_line_error([tmp_path / "nope"], "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error([tmp_path / "empty"], "empty", "no *.run.json")


def test_folders_of_two_experiments_or_matrices(bundle, tmp_path: Path) -> None:
    folder, _, _ = bundle
    write_bundle([record(cell="7" * 16, experiment="another")], tmp_path / "another")
    _one_line_error([folder, tmp_path / "another"], "several experiments", "another", "exp")
    shutil.copytree(folder, tmp_path / "edited")
    (tmp_path / "edited" / MATRIX_FILE).write_text(json.dumps({"algorithms": ["baq"]}))
    _one_line_error([folder, tmp_path / "edited"], "expect different cells")
