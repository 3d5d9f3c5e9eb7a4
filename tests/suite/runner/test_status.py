"""`baq status`'s run states come from suite.states, with the cell lock telling a hard-killed run (recorded
as running, lock free) from one that trains now (lock held) or on another machine (no lock file here)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.runner import CellLock
from suite.runner.status import run_state


def recorded(status: str, tag: str | None) -> SimpleNamespace:
    tags = {} if tag is None else {"baq.status": tag}
    return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))


@pytest.mark.parametrize(("status", "tag", "state"), [
    ("FINISHED", "finished", "finished"),
    ("FAILED", "failed", "failed"),
    ("KILLED", "killed", "interrupted"),
    ("RUNNING", "killed", "interrupted"),  # the sink tagged it killed; MLflow's status lagged
    ("KILLED", None, "interrupted"),
])
def test_recorded_states(status: str, tag: str | None, state: str, tmp_path: Path) -> None:
    assert run_state(recorded(status, tag), tmp_path) == state


def test_a_running_run_is_interrupted_when_its_lock_is_free(tmp_path: Path) -> None:
    run = recorded("RUNNING", "running")
    assert run_state(run, tmp_path) == "running"  # no lock file: it trains on another machine
    lock = CellLock(tmp_path / ".lock")
    with lock.held() as acquired:
        assert acquired
        assert run_state(run, tmp_path) == "running"  # held here: training now
    assert run_state(run, tmp_path) == "interrupted"  # lock file left, nobody holds it: killed hard
