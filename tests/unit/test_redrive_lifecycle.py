"""Redrive as a pure decision: which tasks may be redriven and what their record becomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.lifecycle import (
    AttemptOutcome,
    AttemptRecord,
    Claim,
    Redrive,
    RedriveRefused,
    TaskRecord,
    TaskStatus,
    can_transition,
    from_iso,
    new_task,
    plan_delivery,
    plan_redrive,
    to_iso,
)
from functions.policy import TaskPolicy

FAILED_AT = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
NOW = FAILED_AT + timedelta(hours=1)
DEV = TaskPolicy(maxAttempts=2, errorRate=0.3, backoffBaseSeconds=2, maxDelaySeconds=900)


def failed_task(attempts: int = 2, max_attempts: int = 2, **fields: object) -> TaskRecord:
    """A task that FAILED after `attempts` failed attempts, as the worker leaves it."""
    stamp = to_iso(FAILED_AT)
    history = [
        AttemptRecord(
            attempt=n,
            startedAt=stamp,
            finishedAt=stamp,
            outcome=AttemptOutcome.FAILED,
            error="simulated error: the message asks to fail",
        )
        for n in range(1, attempts + 1)
    ]
    return replace(
        new_task("3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b", "ERROR", DEV, FAILED_AT),
        **{
            "status": TaskStatus.FAILED,
            "attempts": attempts,
            "maxAttempts": max_attempts,
            "history": history,
            "lastError": "simulated error: the message asks to fail",
            "failedAt": stamp,
            **fields,
        },
    )


def redriven(task: TaskRecord, extra_attempts: int = 1) -> TaskRecord:
    """The record `plan_redrive` writes for `task`, which it must accept."""
    decision = plan_redrive(task, extra_attempts, NOW)
    assert isinstance(decision, Redrive), decision
    assert decision.failed == task
    return decision.redriven


def test_a_redriven_task_is_retrying_and_due_now_with_n_more_attempts() -> None:
    task = failed_task(attempts=2, max_attempts=2)

    after = redriven(task, extra_attempts=3)

    assert after.status == TaskStatus.RETRYING
    assert from_iso(after.nextAttemptAt) == NOW
    assert after.maxAttempts - after.attempts == 3
    assert after.failedAt is None
    assert can_transition(task.status, after.status, redrive=True)


def test_a_redrive_keeps_the_attempt_counter_history_and_last_error() -> None:
    task = failed_task(attempts=2)

    after = redriven(task)

    assert after.attempts == task.attempts
    assert after.history == task.history
    assert after.lastError == task.lastError
    assert (after.taskId, after.message, after.createdAt) == (
        task.taskId,
        task.message,
        task.createdAt,
    )


def test_a_redrive_is_recorded_and_counted() -> None:
    first = redriven(failed_task())
    assert first.redriveCount == 1
    assert from_iso(first.redrivenAt) == NOW and from_iso(first.updatedAt) == NOW

    failed_again = replace(first, status=TaskStatus.FAILED, attempts=3)
    second = redriven(failed_again)

    assert second.redriveCount == 2


def test_a_redriven_record_is_a_valid_api_record() -> None:
    after = redriven(failed_task())

    shown = after.to_json()

    assert TaskRecord.from_json(shown) == after
    assert "failedAt" not in shown


def test_the_worker_claims_the_next_attempt_of_a_redriven_task() -> None:
    task = failed_task(attempts=2)
    after = redriven(task)

    # a worker's clock may run a little ahead of the operator's, or a delivery may come later
    for delivered_at in (NOW, NOW + timedelta(seconds=30)):
        assert plan_delivery(after, delivered_at, None) == Claim(attempt=task.attempts + 1)


def test_a_task_failed_early_by_the_dead_letter_function_gets_exactly_n_more_attempts() -> None:
    # GIVEN a task dead-lettered before its attempts ran out (a worker kept crashing on it)
    task = failed_task(attempts=0, max_attempts=2)

    after = redriven(task, extra_attempts=1)

    # THEN "one more attempt" means one, not the leftovers of the old budget plus one
    assert (after.attempts, after.maxAttempts) == (0, 1)


@given(
    attempts=st.integers(min_value=0, max_value=60),
    extra_attempts=st.integers(min_value=1, max_value=50),
    redrives=st.one_of(st.none(), st.integers(min_value=1, max_value=100)),
)
def test_any_failed_task_may_make_exactly_the_extra_attempts_after_a_redrive(
    attempts: int, extra_attempts: int, redrives: int | None
) -> None:
    task = failed_task(attempts=attempts, max_attempts=max(attempts, 1), redriveCount=redrives)

    after = redriven(task, extra_attempts)

    assert after.maxAttempts - after.attempts == extra_attempts
    assert after.redriveCount == (redrives or 0) + 1
    assert plan_delivery(after, NOW, None) == Claim(attempt=attempts + 1)


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "RETRYING", "COMPLETED"])
def test_only_a_failed_task_can_be_redriven(status: str) -> None:
    task = replace(failed_task(), status=TaskStatus(status), failedAt=None)

    decision = plan_redrive(task, 1, NOW)

    assert isinstance(decision, RedriveRefused)
    assert status in decision.reason and "only a FAILED task" in decision.reason


def test_an_unknown_task_is_refused_as_not_found() -> None:
    assert plan_redrive(None, 1, NOW) == RedriveRefused("not found")


def test_a_redrive_without_any_extra_attempt_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_redrive(failed_task(), 0, NOW)


def test_redrive_is_the_only_way_out_of_failed_and_never_out_of_completed() -> None:
    for target in TaskStatus:
        allowed = can_transition(TaskStatus.FAILED, target, redrive=True)
        assert allowed == (target == TaskStatus.RETRYING)
        assert not can_transition(TaskStatus.COMPLETED, target, redrive=True)
