"""Sending a spool's records to MLflow (suite.spool): one call at a time, in order, from a background thread
while the run trains, or from `baq sync` afterwards.

Delivery is at least once: a record counts as delivered only after the store answered the call that carried
it, so a connection that breaks mid-call sends that call again. Every call is idempotent, which makes the
result exactly once: a metric carries the timestamp it was logged with, and MLflow's SQL stores (sqlite, and
a server on a database) keep one row per (key, value, timestamp, step); params already in the run are
skipped; tags, artifacts and the run's end overwrite themselves.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from suite.spool import Record, Spool

# MLflow's limits per log_batch call (mlflow.utils.validation: 1000 metrics, 100 params, 100 tags).
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
# After a failed call the sender waits 1, 2, 4, … s, at most this long, before the next try (a flush or
# the run's end tries at once).
MAX_RETRY_DELAY_S = 30.0


def deliver_next(client: Any, run_id: str, records: list[Record]) -> int:
    """Send the first record of `records` (with the metric records right after it, up to MLflow's batch
    limit) in one MLflow call or a few; returns how many records the store now has. Raises what the store
    raised: nothing is acknowledged then."""
    from mlflow.entities import Metric, Param, RunTag

    first = records[0]
    kind = first["k"]
    if kind == "metrics":
        batch, n = [], 0
        for record in records:
            if record["k"] != "metrics" or (batch and len(batch) + len(record["values"]) > MAX_METRICS):
                break
            batch += [Metric(k, float(v), record["time"], record["step"]) for k, v in record["values"].items()]
            n += 1
        for i in range(0, len(batch), MAX_METRICS):
            client.log_batch(run_id, metrics=batch[i : i + MAX_METRICS])
        return n
    if kind == "params":
        existing = client.get_run(run_id).data.params
        params = [Param(k, v) for k, v in first["values"].items() if k not in existing]  # params are immutable
        for i in range(0, len(params), MAX_PARAMS):
            client.log_batch(run_id, params=params[i : i + MAX_PARAMS])
    elif kind == "tags":
        tags = [RunTag(k, v) for k, v in first["values"].items()]
        for i in range(0, len(tags), MAX_TAGS):
            client.log_batch(run_id, tags=tags[i : i + MAX_TAGS])
    elif kind == "artifact":
        if Path(first["path"]).exists():  # a file deleted since it was logged cannot be sent
            client.log_artifact(run_id, first["path"], first.get("dir"))
    elif kind == "end":
        client.set_terminated(run_id, status=first["status"], end_time=first["time"])
    else:
        raise ValueError(f"unknown spool record kind {kind!r}")
    return 1


def deliver_all(client: Any, spool: Spool) -> None:
    """Send every undelivered record of `spool`, acknowledging as it goes; raises at the first failure."""
    run_id = spool.header["run_id"]
    while records := spool.peek(MAX_METRICS):
        spool.acknowledge(deliver_next(client, run_id, records))


def describe(exc: BaseException) -> str:
    """One short line for a failed call (MLflow's messages carry whole URLs and retry histories)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if "Max retries exceeded" in text or "Connection refused" in text:
        text = "connection refused"
    elif "timed out" in text or "timeout" in text.lower():
        text = "no answer (timed out)"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 160 else text[:159] + "…"


class Sender:
    """The background thread that delivers a live run's spool. It sleeps until woken (a flush, the run's
    end) and, after a failure, retries with a growing delay until the store answers again."""

    def __init__(self, client: Any, spool: Spool) -> None:
        self.client, self.spool = client, spool
        self.failures = 0  # consecutive failed attempts; 0 while the store answers
        self.attempts_failed = 0  # all failed attempts, for waiters that need a fresh outcome
        self.last_error: str | None = None
        self.busy_since: float | None = None  # monotonic start of the attempt in progress
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="baq-tracking-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def behind(self, stall_s: float) -> bool:
        """Whether the store is not keeping up: the last attempt failed, or the one in progress has been
        waiting for an answer for more than `stall_s`."""
        busy = self.busy_since
        return bool(self.failures) or (busy is not None and time.monotonic() - busy > stall_s)

    def stop(self, join_s: float = 1.0) -> bool:
        """Ask the thread to end; True if it did within `join_s` (else it ends after its current call,
        which is bounded by MLflow's HTTP timeout, and closes the spool then)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(join_s)
        return not self._thread.is_alive()

    def wait(self, seconds: float, give_up: Any = None) -> bool:
        """Wait until the spool is delivered (True), an attempt made after this call fails, `seconds` pass or
        `give_up()` is true (False). Waits in short slices so that signal handlers run."""
        deadline = time.monotonic() + seconds
        failed_before = self.attempts_failed
        self.wake()
        while self.spool.backlog:
            if self.attempts_failed > failed_before or time.monotonic() >= deadline:
                return False
            if give_up is not None and give_up():
                return False
            with self._changed:
                self._changed.wait(0.1)
        return True

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                delay = min(2.0 ** (self.failures - 1), MAX_RETRY_DELAY_S) if self.failures else None
                self._wake.wait(delay)
                self._wake.clear()
                if self._stopping.is_set() and self.failures:
                    break  # the run has ended and the store is away: the spool stays for `baq sync`
                self._attempt()
        finally:
            if self._stopping.is_set():
                self.spool.close()

    def _attempt(self) -> None:
        self.busy_since = time.monotonic()
        try:
            deliver_all(self.client, self.spool)
            self.failures, self.last_error = 0, None
        except Exception as exc:  # the store is away or refused: keep the records, try again later
            self.failures += 1
            self.attempts_failed += 1
            self.last_error = describe(exc)
        finally:
            self.busy_since = None
        with self._changed:
            self._changed.notify_all()
