"""The Ray backend: the same jobs as Ray tasks (`threads` CPUs each, 1 GPU for cuda jobs). Needs the suite
installed, the datasets and the tracking store reachable on every node (docs/runner.md)."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

from suite import stop
from suite.errors import UserError
from suite.runner.feed import BoardFeed
from suite.runner.jobs import Event, Job, Outcome, one_line, run_job
from suite.runner.local import STOP_GRACE_S
from suite.states import FAILED

RAY_INSTALL_HINT = "the ray backend needs Ray: pip install 'baq-suite[ray]' (or pip install 'ray[default]')"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL_HINT) from None
    return ray


def _ray_task(job: Job, events: Any, threads: int = 1) -> dict[str, Outcome]:
    import torch

    torch.set_num_threads(threads)

    def report(event: Event) -> None:
        with contextlib.suppress(Exception):  # a full or gone queue must not fail the cell
            events.put_nowait(event)

    with stop.graceful(force_on_repeat=False):  # ray.cancel() interrupts a task with SIGINT
        return run_job(job, report)


def run_ray(jobs: list[Job], workers: int | None, address: str | None, feed: BoardFeed, threads: int = 1) -> None:
    """Run `jobs` as Ray tasks, at most `workers` at once (all of them when None)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    # ray.init makes SIGTERM exit the driver on the spot; here it stops the cells cleanly (below).
    with stop.sigterm_as_interrupt():
        _drive(ray, jobs, workers, feed, threads, started_here)


def _drive(ray: Any, jobs: list[Job], workers: int | None, feed: BoardFeed, threads: int,
           started_here: bool) -> None:
    from ray.util.queue import Queue

    events = Queue()
    task = ray.remote(_ray_task)
    pending, in_flight = deque(jobs), {}
    limit = workers or len(jobs) or 1
    try:
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                job = pending.popleft()
                gpus = 1 if job.device.startswith("cuda") else 0
                in_flight[task.options(num_cpus=threads, num_gpus=gpus).remote(job, events, threads)] = job
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)
            _drain(events, feed)
            for ref in ready:
                job = in_flight.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as exc:  # the task's process died or Ray lost it
                    outcomes = {h: {"status": FAILED, "error": "ray task failed: " + one_line(exc)}
                                for h in job.hashes}
                _drain(events, feed)
                feed.outcomes(outcomes)
    except KeyboardInterrupt:
        _stop_tasks(ray, in_flight, events, feed)
        raise
    finally:
        for ref in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            ray.kill(events.actor)
        if started_here:
            ray.shutdown()


def _stop_tasks(ray: Any, in_flight: dict[Any, Job], events: Any, feed: BoardFeed) -> None:
    """A plain cancel interrupts each task's main thread, which its stop handler turns into a checkpoint at
    the step in progress; the tasks then return their cells as interrupted."""
    for ref in in_flight:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    deadline = time.monotonic() + STOP_GRACE_S
    while in_flight and time.monotonic() < deadline:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
        for ref in ready:
            in_flight.pop(ref)
            with contextlib.suppress(Exception):
                feed.outcomes(ray.get(ref))
    with contextlib.suppress(Exception):
        _drain(events, feed)


def _drain(events: Any, feed: BoardFeed) -> None:
    size = events.qsize()
    if size:
        for event in events.get_nowait_batch(size):
            feed(event)
