"""Simulated time. A campaign never reads the wall clock: every handler, queue and fault sees the
one `SimClock` of its world, which moves only forward and only when something moves it (the event
loop reaching an event, an AWS call's latency, the SDK's retry backoff, a fault)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# A fixed start, so that timestamps in a failing seed's report are the same on every run.
EPOCH = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


class SimClock:
    """An aware UTC clock; calling it returns the current simulated time (it can be a
    `functions.runtime.Runtime`'s `clock`)."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start={start!r} is naive; the handlers compare aware datetimes")
        self._now = start
        self.start = start

    def __call__(self) -> datetime:
        return self._now

    now = property(__call__)

    @property
    def elapsed_s(self) -> float:
        return (self._now - self.start).total_seconds()

    def at(self, offset_s: float) -> datetime:
        return self.start + timedelta(seconds=offset_s)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds={seconds}: simulated time never goes back")
        self._now += timedelta(seconds=seconds)

    def advance_to(self, moment: datetime) -> None:
        """Move to `moment` unless the clock is already past it (an invocation that ran long
        makes later events start late, never early)."""
        if moment > self._now:
            self._now = moment
