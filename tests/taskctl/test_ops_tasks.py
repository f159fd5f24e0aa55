"""The operator's view without AWS: `--since` as typed, and a record read as a timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.lifecycle import AttemptOutcome, AttemptRecord, TaskRecord, TaskStatus, to_iso
from functions.store import StoredTask
from taskctl.ops.tasks import parse_since, statuses_to_list, timeline

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_since_takes_a_duration_back_from_now(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back


def test_since_takes_a_time_utc_unless_it_says_otherwise() -> None:
    assert parse_since("2026-11-29T17:00Z", NOW) == datetime(2026, 11, 29, 17, tzinfo=UTC)
    assert parse_since("2026-11-29T17:00", NOW) == datetime(2026, 11, 29, 17, tzinfo=UTC)
    assert parse_since("2026-11-29T18:00+01:00", NOW) == datetime(2026, 11, 29, 17, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "1x", "h1", "1h 2", "-1h"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="give a duration such as 30m"):
        parse_since(text, NOW)


def test_a_duration_further_back_than_dates_go_is_refused_not_a_crash() -> None:
    with pytest.raises(ValueError, match="before the year 1"):
        parse_since("1000000d", NOW)


def test_completed_is_not_a_status_to_list() -> None:
    assert statuses_to_list(None) == (
        TaskStatus.PENDING,
        TaskStatus.PROCESSING,
        TaskStatus.RETRYING,
        TaskStatus.FAILED,
    )
    assert statuses_to_list(TaskStatus.FAILED) == (TaskStatus.FAILED,)
    with pytest.raises(ValueError, match="not indexed"):
        statuses_to_list(TaskStatus.COMPLETED)


def at(seconds: float) -> str:
    return to_iso(NOW + timedelta(seconds=seconds))


def task(**fields: object) -> TaskRecord:
    base: dict[str, object] = {
        "taskId": "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b",
        "message": "resize image 42",
        "maxAttempts": 3,
        "createdAt": at(0),
        "updatedAt": at(0),
    }
    # As the store reads it from the table: statuses and outcomes stored as text.
    history = [entry.to_json() for entry in fields.pop("history", [])]  # type: ignore[attr-defined]
    return TaskRecord.from_json({**base, **fields, "history": history})


def events(record: TaskRecord, **stored: object) -> list[tuple[str, str]]:
    return [(e.event, e.detail) for e in timeline(StoredTask(record=record, **stored))]


def test_a_failed_redriven_completed_task_reads_in_time_order() -> None:
    history = [
        AttemptRecord(
            attempt=1,
            startedAt=at(1),
            finishedAt=at(2),
            outcome=AttemptOutcome.FAILED,
            error="boom",
            retryDelaySeconds=4,
        ),
        AttemptRecord(
            attempt=2,
            startedAt=at(7),
            finishedAt=at(8),
            outcome=AttemptOutcome.FAILED,
            error="boom again",
        ),
        AttemptRecord(
            attempt=3,
            startedAt=at(3_700),
            finishedAt=at(3_701),
            outcome=AttemptOutcome.SUCCEEDED,
        ),
    ]
    record = task(
        status="COMPLETED",
        attempts=3,
        history=history,
        redrivenAt=at(3_690),
        redriveCount=1,
        completedAt=at(3_701),
        updatedAt=at(3_701),
        lastError="boom again",
    )

    assert events(record) == [
        ("submitted", "resize image 42"),
        ("attempt 1 started", ""),
        ("attempt 1 FAILED", "boom"),
        ("backoff 4 s", f"attempt 2 due at {at(6)}"),
        ("attempt 2 started", "waited 5 s (backoff 4 s)"),
        ("attempt 2 FAILED", "boom again"),
        ("redriven", "by an operator (redrive 1); up to 3 attempts in all"),
        ("attempt 3 started", "after 1 h 1 min: attempt 2 had failed the task; redriven"),
        ("attempt 3 SUCCEEDED", ""),
        ("COMPLETED", ""),
    ]


def test_a_lost_attempt_and_the_next_due_are_shown() -> None:
    history = [
        AttemptRecord(
            attempt=1,
            startedAt=at(1),
            finishedAt=at(62),
            outcome=AttemptOutcome.LOST,
            error="attempt 1 was lost",
        ),
        AttemptRecord(
            attempt=2,
            startedAt=at(62),
            finishedAt=at(63),
            outcome=AttemptOutcome.FAILED,
            error="boom",
            retryDelaySeconds=120,
        ),
    ]
    record = task(status="RETRYING", attempts=2, history=history, nextAttemptAt=at(183))

    assert events(record)[-4:] == [
        ("attempt 2 started", "after 0 s: attempt 1 was lost"),
        ("attempt 2 FAILED", "boom"),
        ("backoff 2 min", f"attempt 3 due at {at(183)}"),
        ("attempt 3 due", ""),
    ]


def test_a_running_attempt_shows_when_its_lease_ends() -> None:
    history = [AttemptRecord(attempt=1, startedAt=at(1))]
    record = task(status="PROCESSING", attempts=1, history=history)

    last = events(record, lease_expires_at=NOW + timedelta(seconds=31))[-1]

    assert last[0] == "attempt 1 lease ends" and "LOST" in last[1]
