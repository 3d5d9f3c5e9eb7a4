"""The local backend: worker processes on this machine, each given one job at a time.

Workers live for the whole matrix because a fresh process pays seconds of imports (torch, MLflow) per cell.
A worker that dies without reporting (segfault, OOM kill) fails only the cells it held and is replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import time
from collections import deque
from typing import Any

from suite import stop
from suite.runner.feed import BoardFeed
from suite.runner.jobs import DONE, Event, Job, run_job
from suite.states import FAILED

# How long a stopping runner waits for its workers to checkpoint: the step in progress plus, at worst, an
# evaluation (10 episodes of 1000 env steps) and the checkpoint write. Past it they are killed.
STOP_GRACE_S = 120.0


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this worker when the runner dies (kill -9 included), so no orphan keeps
    training and holding the cell lock. The checkpoint makes the lost work small."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)


def _worker_loop(jobs: Any, events: Any, parent_pid: int, threads: int) -> None:
    """A worker process: runs the jobs the runner sends, one at a time, until it gets None."""
    _die_with_parent(parent_pid)
    import torch

    # Parallelism comes from processes (one thread each by default); `threads` > 1 is for matmul-bound cells
    # when there are fewer cells than cores (run_matrix).
    torch.set_num_threads(threads)
    # SIGINT/SIGTERM (Ctrl-C reaches the workers too; a stopping runner forwards SIGINT) finish the step,
    # checkpoint and end the cell as interrupted. Repeats change nothing: the runner terminates stragglers.
    with stop.graceful(force_on_repeat=False):
        while not stop.requested():
            try:
                job = jobs.recv()
            except EOFError:  # the runner is gone
                return
            if job is None:
                return
            for cell_hash, outcome in run_job(job, events.put).items():
                events.put(Event(DONE, cell_hash, outcome))


class _Worker:
    def __init__(self, ctx: Any, events: Any, threads: int) -> None:
        receive, self.send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_worker_loop, args=(receive, events, os.getpid(), threads),
                                daemon=True, name="baq-cell-worker")
        self.proc.start()
        receive.close()  # the child holds its own copy; closing ours lets it see EOF if we die
        self.cells: set[str] = set()  # the cells of its job not reported done yet

    def assign(self, job: Job) -> None:
        self.cells = set(job.hashes)
        self.send.send(job)

    def stop(self) -> None:
        if self.send.closed:
            return
        with contextlib.suppress(OSError):
            self.send.send(None)
        self.send.close()


def _drain(events: Any, feed: BoardFeed, wait_s: float) -> None:
    try:
        event = events.get(timeout=wait_s)
        while True:
            feed(event)
            event = events.get_nowait()
    except queue_module.Empty:
        pass


def run_local(jobs: list[Job], workers: int, feed: BoardFeed, threads: int = 1) -> None:
    """Run `jobs` on `workers` processes of `threads` torch threads each."""
    ctx = mp.get_context("spawn")  # fork would copy the runner's threads and any CUDA state
    events = ctx.Queue()
    pending = deque(jobs)
    pool: list[Any] = [_Worker(ctx, events, threads) for _ in range(workers)]
    try:
        while pending or any(w.cells for w in pool):
            for w in pool:
                if not w.cells and pending:
                    w.assign(pending.popleft())
            _drain(events, feed, wait_s=0.2)
            pool = [_replace_if_dead(w, ctx, events, feed, threads, bool(pending)) for w in pool]
            pool = [w for w in pool if w is not None]
    except KeyboardInterrupt:
        _stop_pool(pool, events, feed)
        raise
    finally:
        for w in pool:
            w.stop()
        _wait(pool, 10.0)
        for w in pool:
            if w.proc.is_alive():
                w.proc.kill()  # SIGKILL: a SIGTERM would only ask it to stop after its step (suite.stop)


def _replace_if_dead(w: _Worker, ctx: Any, events: Any, feed: BoardFeed, threads: int,
                     more: bool) -> _Worker | None:
    """`w` while it lives; else its unreported cells failed and a new worker when jobs remain."""
    w.cells -= feed.done
    if w.proc.is_alive():
        return w
    if w.cells:
        _drain(events, feed, wait_s=0.5)  # its last messages may still be in the pipe
        w.cells -= feed.done
    feed.outcomes({h: {"status": FAILED, "error": f"worker process died (exit code {w.proc.exitcode})"}
                   for h in sorted(w.cells)})
    w.cells = set()
    w.proc.join()
    w.send.close()
    return _Worker(ctx, events, threads) if more else None


def _stop_pool(pool: list[_Worker], events: Any, feed: BoardFeed) -> None:
    """Ctrl-C in a terminal reaches the workers too; a SIGINT or SIGTERM sent to the runner alone is passed
    on. Each busy worker checkpoints the step it is in and reports its cell interrupted; idle ones exit."""
    for w in pool:
        w.stop()
        if w.proc.is_alive() and w.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(w.proc.is_alive() for w in pool) and time.monotonic() < deadline:
        _drain(events, feed, wait_s=0.2)
    _drain(events, feed, wait_s=0.2)


def _wait(pool: list[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for w in pool:
        w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
