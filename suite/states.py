"""Run states: one vocabulary for the runner, the progress board, `baq status` and the report, so that no
state can fall between their buckets. No torch here.

- finished: the run ended and its results count;
- running: a process is training it (or was, on a machine that cannot be asked);
- interrupted: stopped on request or killed; the next `baq run` continues it from its checkpoint;
- failed: it raised; the reason is in its `baq.error` tag;
- missing: no run yet.
"""

from __future__ import annotations

FINISHED, RUNNING, INTERRUPTED, FAILED, MISSING = "finished", "running", "interrupted", "failed", "missing"
STATES = (FINISHED, RUNNING, INTERRUPTED, FAILED, MISSING)

# MLflow's run status → state. KILLED: stopped on request (suite.stop) or taken out by the runner.
_FROM_MLFLOW = {"FINISHED": FINISHED, "FAILED": FAILED, "KILLED": INTERRUPTED, "RUNNING": RUNNING,
                "SCHEDULED": RUNNING}
# The suite's own `baq.status` tag (MLflowSink.end writes MLflow's status lowercased).
_FROM_TAG = {"finished": FINISHED, "failed": FAILED, "killed": INTERRUPTED, "interrupted": INTERRUPTED,
             "running": RUNNING}


def recorded_state(mlflow_status: str, status_tag: str | None) -> str:
    """The state of a recorded run from its MLflow status and its `baq.status` tag. The tag wins, except that
    a process killed hard leaves the tag at `running` while MLflow already knows better."""
    fallback = _FROM_MLFLOW.get(mlflow_status, RUNNING)
    tagged = _FROM_TAG.get(status_tag or "", None)
    if tagged is None or (tagged == RUNNING and fallback != RUNNING):
        return fallback
    return tagged
