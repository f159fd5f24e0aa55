"""`taskctl.program.run_program`: the Pulumi program runs under mocks whatever asyncio state the
caller left behind (the local deployer, bench and tests call it after other asyncio work)."""

from __future__ import annotations

import asyncio
import os
import signal
import warnings

import pytest

from taskctl.program import RecordingMocks, run_program


def _run_dev() -> dict:
    mocks = RecordingMocks()
    outputs = run_program("dev", mocks)
    assert mocks.created("aws:dynamodb/table:Table")  # the program really ran
    return outputs


def _after_asyncio_run() -> None:
    asyncio.run(asyncio.sleep(0))  # leaves the thread with no current event loop


def _after_a_closed_current_loop() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.close()


@pytest.mark.parametrize(
    "before", [_after_asyncio_run, _after_a_closed_current_loop], ids=["asyncio.run", "closed"]
)
def test_the_program_runs_whatever_event_loop_the_caller_left(before) -> None:
    before()
    with warnings.catch_warnings():
        # Asking asyncio for a current loop that is not there is deprecated (3.12+), and its
        # policy API is (3.14+): a run must do neither.
        warnings.filterwarnings("error", r".*(event loop|asyncio)", DeprecationWarning)
        first = _run_dev()
    before()
    assert _run_dev()["apiUrl"] == first["apiUrl"]  # and again, the same program


class _CtrlCAtFirstResource(RecordingMocks):
    """Presses Ctrl-C while the program runs: the main thread gets its KeyboardInterrupt while it
    waits on the event loop for this first registration (mocks answer on a worker thread)."""

    pressed = False

    def new_resource(self, args):
        if not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)
        return super().new_resource(args)


def test_ctrl_c_during_a_run_stops_it_without_an_asyncio_error(caplog) -> None:
    # `local up` is interrupted this way mid-deployment; asyncio must not log a broken task (it
    # printed "Leaving task ... does not match the current task" with a traceback to the user).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_program("dev", _CtrlCAtFirstResource())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert _run_dev()["apiUrl"]  # and the next run in this process works
