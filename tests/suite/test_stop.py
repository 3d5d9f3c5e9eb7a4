"""Stop requests: what SIGINT/SIGTERM do inside suite.stop's blocks."""

from __future__ import annotations

import os
import signal

import pytest

from suite import stop


def test_first_signal_requests_a_stop_the_second_interrupts() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop.graceful():
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested()  # noted, nothing raised: the loop stops at the end of its step
        with pytest.raises(KeyboardInterrupt) as raised:
            os.kill(os.getpid(), signal.SIGINT)
        assert type(raised.value) is KeyboardInterrupt  # a forced stop, not a StopRequested
    assert not stop.requested()  # the request belonged to the block
    assert signal.getsignal(signal.SIGTERM) is before


def test_without_force_repeats_only_request() -> None:
    with stop.graceful(force_on_repeat=False):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), sig)
        assert stop.requested()


def test_sigterm_as_interrupt() -> None:
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or Ray's once an earlier test started Ray
    with stop.sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_requested_is_a_keyboard_interrupt_that_names_the_step() -> None:
    request = stop.StopRequested(1234, checkpointed=True)
    assert isinstance(request, KeyboardInterrupt) and request.step == 1234
    assert str(request) == "stopped on request after step 1234 (checkpoint saved)"
