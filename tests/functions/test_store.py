"""The DynamoDB adapter on moto: every state change is conditional, and a lost condition is a
domain exception, never a silent overwrite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aws_harness import FakeClock

from functions.lifecycle import AttemptOutcome, TaskRecord, TaskStatus, new_task, to_epoch_ms
from functions.runtime import Runtime
from functions.store import (
    AttemptSuperseded,
    Condition,
    StaleClaim,
    TaskAlreadyExists,
    TaskChanged,
    attempts_are,
    status_is,
)

TASK_ID = "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"
LEASE = timedelta(seconds=30)


@pytest.fixture
def pending(rt: Runtime) -> TaskRecord:
    task = new_task(TASK_ID, "hello", rt.settings.policy, rt.clock())
    rt.store.create(task, rt.clock())
    return task


def current(rt: Runtime) -> TaskRecord:
    stored = rt.store.get(TASK_ID)
    assert stored is not None
    return stored.record


def claimed(rt: Runtime, attempt: int = 1) -> TaskRecord:
    rt.store.claim(current(rt), attempt, rt.clock(), rt.clock() + LEASE)
    return current(rt)


def test_create_then_get_round_trips_the_record(rt: Runtime, pending: TaskRecord) -> None:
    stored = rt.store.get(TASK_ID)

    assert stored is not None
    assert stored.record == pending
    assert stored.lease_expires_at is None


def test_a_second_create_with_the_same_id_is_refused(rt: Runtime, pending: TaskRecord) -> None:
    with pytest.raises(TaskAlreadyExists):
        rt.store.create(pending.model_copy(update={"message": "other"}), rt.clock())

    assert current(rt).message == "hello"


def test_records_expire_ttl_days_after_their_last_change(
    rt: Runtime, pending: TaskRecord, clock: FakeClock
) -> None:
    def expires_at() -> int:
        item = rt.dynamodb.get_item(
            TableName=rt.settings.table_name, Key={"taskId": {"S": TASK_ID}}
        )
        return int(item["Item"]["expiresAt"]["N"])

    ttl = timedelta(days=rt.settings.policy.taskTtlDays)
    assert expires_at() == int((rt.clock() + ttl).timestamp())
    clock.advance(3600)
    claimed(rt)
    assert expires_at() == int((rt.clock() + ttl).timestamp())


def test_claim_starts_the_attempt_with_a_lease_and_an_open_history_entry(
    rt: Runtime, pending: TaskRecord
) -> None:
    record = claimed(rt)

    assert (record.status, record.attempts) == ("PROCESSING", 1)
    assert [(h.attempt, h.outcome, h.finishedAt) for h in record.history] == [(1, None, None)]
    stored = rt.store.get(TASK_ID)
    assert stored is not None and stored.lease_expires_at == rt.clock() + LEASE


@pytest.mark.parametrize("attempt", [2, 3])
def test_a_claim_for_any_attempt_but_the_next_is_stale(
    rt: Runtime, pending: TaskRecord, attempt: int
) -> None:
    with pytest.raises(StaleClaim):
        rt.store.claim(pending, attempt, rt.clock(), rt.clock() + LEASE)

    assert current(rt) == pending


def test_only_one_of_two_claims_of_the_same_attempt_wins(rt: Runtime, pending: TaskRecord) -> None:
    rt.store.claim(pending, 1, rt.clock(), rt.clock() + LEASE)

    with pytest.raises(StaleClaim):
        rt.store.claim(pending, 1, rt.clock(), rt.clock() + LEASE)

    assert len(current(rt).history) == 1


def test_a_running_attempt_cannot_be_reclaimed_as_lost_before_its_lease_runs_out(
    rt: Runtime, pending: TaskRecord, clock: FakeClock
) -> None:
    record = claimed(rt)

    with pytest.raises(StaleClaim):
        rt.store.claim(record, 2, rt.clock(), rt.clock() + LEASE, lost_attempt=1)

    clock.advance(LEASE.total_seconds() + 1)
    rt.store.claim(record, 2, rt.clock(), rt.clock() + LEASE, lost_attempt=1)
    assert [h.outcome for h in current(rt).history] == [AttemptOutcome.LOST, None]


@pytest.mark.parametrize("finish", ["complete", "fail"])
def test_no_task_ever_gets_two_terminal_transitions(
    rt: Runtime, pending: TaskRecord, finish: str
) -> None:
    claimed(rt)
    if finish == "complete":
        rt.store.complete(TASK_ID, 1, rt.clock())
    else:
        rt.store.fail(TASK_ID, 1, rt.clock(), "boom")
    final = current(rt)

    for second in (
        lambda: rt.store.complete(TASK_ID, 1, rt.clock()),
        lambda: rt.store.fail(TASK_ID, 1, rt.clock(), "again"),
        lambda: rt.store.schedule_retry(TASK_ID, 1, rt.clock(), "again", 2, rt.clock()),
    ):
        with pytest.raises(AttemptSuperseded):
            second()
    with pytest.raises(StaleClaim):
        rt.store.claim(final, 2, rt.clock(), rt.clock() + LEASE)
    assert current(rt) == final


def test_schedule_retry_records_the_delay_and_when_the_next_attempt_is_due(
    rt: Runtime, pending: TaskRecord
) -> None:
    claimed(rt)
    due = rt.clock() + timedelta(seconds=4)

    rt.store.schedule_retry(TASK_ID, 1, rt.clock(), "boom", 4, due)

    record = current(rt)
    assert record.status == TaskStatus.RETRYING
    assert record.nextAttemptAt is not None and record.lastError == "boom"
    assert (record.history[0].outcome, record.history[0].retryDelaySeconds) == ("FAILED", 4)
    stored = rt.store.get(TASK_ID)
    assert stored is not None and stored.lease_expires_at is None


def test_undo_deletes_a_pending_task_but_never_one_a_worker_started(
    rt: Runtime, pending: TaskRecord
) -> None:
    claimed(rt)
    assert rt.store.delete_if_pending(TASK_ID) is False
    assert current(rt).status == "PROCESSING"


def test_undo_of_a_pending_task_removes_it(rt: Runtime, pending: TaskRecord) -> None:
    assert rt.store.delete_if_pending(TASK_ID) is True
    assert rt.store.get(TASK_ID) is None


def test_dead_letter_failure_is_refused_if_the_task_changed_since_it_was_read(
    rt: Runtime, pending: TaskRecord
) -> None:
    seen = rt.store.get(TASK_ID)
    assert seen is not None
    claimed(rt)

    with pytest.raises(TaskChanged):
        rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())

    assert current(rt).status == "PROCESSING"


def test_other_errors_are_not_mistaken_for_a_lost_condition(rt: Runtime) -> None:
    rt.dynamodb.delete_table(TableName=rt.settings.table_name)

    with pytest.raises(rt.dynamodb.exceptions.ResourceNotFoundException):
        rt.store.delete_if_pending(TASK_ID)


def test_condition_pieces_compose_and_refuse_clashing_placeholders() -> None:
    combined = status_is(TaskStatus.PENDING, TaskStatus.RETRYING) & attempts_are(3)

    assert (
        combined.expression
        == "(#status IN (:status_pending, :status_retrying)) AND (#attempts = :attempts)"
    )
    assert combined.values == {
        ":status_pending": "PENDING",
        ":status_retrying": "RETRYING",
        ":attempts": 3,
    }
    with pytest.raises(ValueError, match="placeholders"):
        _ = attempts_are(1) & attempts_are(2)
    assert isinstance(combined, Condition)


def test_lease_is_stored_in_epoch_milliseconds(rt: Runtime, pending: TaskRecord) -> None:
    claimed(rt)
    item = rt.dynamodb.get_item(TableName=rt.settings.table_name, Key={"taskId": {"S": TASK_ID}})

    assert int(item["Item"]["leaseExpiresAt"]["N"]) == to_epoch_ms(rt.clock() + LEASE)
