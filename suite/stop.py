"""Stopping a run cleanly: SIGINT (Ctrl-C) or SIGTERM (`kill`, a cluster's preemption notice) asks the
training loop to finish the step it is in, write a checkpoint at that step and end; the next run resumes there
with nothing lost (suite.train). Without these handlers (plain `train()` in a notebook) Ctrl-C interrupts
wherever it lands, as usual, and the run resumes from its last periodic checkpoint.

The handlers only set a flag: the loop reads it between steps, where the state it saves is consistent.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: list[str] = []  # names of the signals received, in order
_blocking: list[bool] = []  # one entry per `interruptible` block the main thread is in


class StopRequested(KeyboardInterrupt):
    """Raised by the training loop once it has stopped at a step boundary on request. A KeyboardInterrupt,
    so every caller that already ends a run as KILLED on Ctrl-C treats it the same way."""

    def __init__(self, step: int, checkpointed: bool) -> None:
        self.step, self.checkpointed = step, checkpointed
        saved = "checkpoint saved" if checkpointed else "no run directory, nothing saved"
        super().__init__(f"stopped on request after step {step} ({saved})")


def requested() -> bool:
    """Whether a stop was asked for since the handlers were installed."""
    return bool(_requested)


def clear() -> None:
    _requested.clear()


@contextlib.contextmanager
def graceful(force_on_repeat: bool = True, announce: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM request a stop instead of interrupting. With `force_on_repeat`, a
    second signal interrupts at once (KeyboardInterrupt), for a user who will not wait for the step to end.
    Outside the main thread (where Python cannot install handlers) the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _requested and force_on_repeat:
            raise KeyboardInterrupt
        _requested.append(signal.Signals(signum).name)
        if _blocking:  # in a call that may wait on the network and holds no training state
            if announce:
                print(f"baq: {_requested[-1]}: stopping", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        if announce and len(_requested) == 1:
            again = "; again to abort without saving" if force_on_repeat else ""
            print(f"baq: {_requested[0]}: stopping after this step and saving a checkpoint{again}",
                  file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    clear()
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        clear()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block (in the main thread, inside `graceful`), a stop request raises KeyboardInterrupt at
    once instead of waiting for a step boundary: for set-up calls that may block on the network (opening a
    run in the tracking store) and hold no state a checkpoint would need. A request made before the block
    raises on entry."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _requested:
        raise KeyboardInterrupt
    _blocking.append(True)
    try:
        yield
    finally:
        _blocking.pop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C (Python's default for SIGTERM is to die
    on the spot, which skips every `finally`): the matrix runner then stops its workers cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
