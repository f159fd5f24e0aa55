"""The DynamoDB adapter on moto: every state change is conditional, a lost condition is a
domain exception, never a silent overwrite, and a write the SDK retried after losing its reply is
recognised as the caller's own (botocore's real retry, through `aws_faults.lose_response`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from aws_faults import lose_response
from aws_harness import CALLER

from functions.lifecycle import (
    AttemptOutcome,
    TaskRecord,
    TaskStatus,
    first_check_at,
    new_task,
    plan_redrive,
    to_epoch_ms,
)
from functions.runtime import Runtime
from functions.store import (
    INDEXED_STATUSES,
    STATUS_SHARD_ATTRIBUTE,
    STATUS_SORT_ATTRIBUTE,
    AttemptSuperseded,
    StaleClaim,
    TaskAlreadyExists,
    TaskChanged,
    attempts_are,
    check_shard,
    status_is,
    status_shard,
)
from taskctl.chaos.clock import SimClock
from taskctl.ops.tasks import find_tasks

TASK_ID = "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"
LEASE = timedelta(seconds=30)


@pytest.fixture
def pending(rt: Runtime) -> TaskRecord:
    task = new_task(TASK_ID, "hello", rt.settings.policy, rt.clock())
    rt.store.create(
        task,
        rt.clock(),
        check_after=first_check_at(rt.clock(), rt.settings.policy),
        owner=CALLER,
    )
    return task


def create(rt: Runtime, task: TaskRecord) -> None:
    rt.store.create(
        task,
        rt.clock(),
        check_after=first_check_at(rt.clock(), rt.settings.policy),
        owner=CALLER,
    )


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
        create(rt, replace(pending, message="other"))

    assert current(rt).message == "hello"


def expires_at(rt: Runtime) -> int | None:
    item = rt.dynamodb.get_item(TableName=rt.settings.table_name, Key={"taskId": {"S": TASK_ID}})
    value = item["Item"].get("expiresAt")
    return int(value["N"]) if value else None


def test_an_unfinished_task_never_expires_and_a_finished_one_expires_ttl_days_later(
    rt: Runtime, pending: TaskRecord, clock: SimClock
) -> None:
    assert expires_at(rt) is None
    clock.advance(3600)
    claimed(rt)
    rt.store.schedule_retry(TASK_ID, 1, rt.clock(), "boom", 2, rt.clock())
    assert expires_at(rt) is None

    claimed(rt, attempt=2)
    rt.store.complete(TASK_ID, 2, rt.clock())

    ttl = timedelta(days=rt.settings.policy.taskTtlDays)
    assert expires_at(rt) == int((rt.clock() + ttl).timestamp())


def test_a_redriven_task_is_unfinished_again_and_loses_its_expiry(
    rt: Runtime, pending: TaskRecord
) -> None:
    claimed(rt)
    rt.store.fail(TASK_ID, 1, rt.clock(), "boom")
    assert expires_at(rt) is not None
    plan = plan_redrive(current(rt), 1, rt.clock())

    rt.store.redrive(plan.failed, plan.redriven, rt.clock(), rt.clock() + LEASE)  # type: ignore[union-attr]

    assert expires_at(rt) is None


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
    rt: Runtime, pending: TaskRecord, clock: SimClock
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


def test_dead_letter_failure_is_refused_if_the_task_changed_since_it_was_read(
    rt: Runtime, pending: TaskRecord
) -> None:
    seen = rt.store.get(TASK_ID)
    assert seen is not None
    claimed(rt)

    with pytest.raises(TaskChanged):
        rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())

    assert current(rt).status == "PROCESSING"


@pytest.mark.parametrize("write", ["fail_dead_lettered", "count_dead_letter_return"])
def test_a_dead_letter_write_planned_before_a_redrive_is_refused(
    rt: Runtime, pending: TaskRecord, write: str
) -> None:
    # GIVEN the dead-letter function read the task RETRYING after attempt 1; then the task was
    # FAILED (by that same decision, whose write the SDK is about to retry) and redriven, which
    # leaves it RETRYING after attempt 1 again
    claimed(rt)
    retried(rt)
    seen = rt.store.get(TASK_ID)
    assert seen is not None
    rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())
    redriven(rt)
    before = current(rt)

    # WHEN the write planned on the old read arrives  THEN it is refused: the redrive stands
    with pytest.raises(TaskChanged):
        if write == "fail_dead_lettered":
            rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())
        else:
            rt.store.count_dead_letter_return(seen, 1, rt.clock())
    assert current(rt) == before


def test_other_errors_are_not_mistaken_for_a_lost_condition(rt: Runtime) -> None:
    rt.dynamodb.delete_table(TableName=rt.settings.table_name)

    with pytest.raises(rt.dynamodb.exceptions.ResourceNotFoundException):
        rt.store.claim(
            new_task(TASK_ID, "x", rt.settings.policy, rt.clock()), 1, rt.clock(), rt.clock()
        )


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


def test_lease_is_stored_in_epoch_milliseconds(rt: Runtime, pending: TaskRecord) -> None:
    claimed(rt)
    item = rt.dynamodb.get_item(TableName=rt.settings.table_name, Key={"taskId": {"S": TASK_ID}})

    assert int(item["Item"]["leaseExpiresAt"]["N"]) == to_epoch_ms(rt.clock() + LEASE)


# -- a write applied whose reply was lost: the SDK retries it, and the retry is recognised ------


def test_a_create_whose_reply_was_lost_is_taken_as_done_not_as_a_duplicate(rt: Runtime) -> None:
    task = new_task(TASK_ID, "hello", rt.settings.policy, rt.clock())
    lost = lose_response(rt.dynamodb, "PutItem")

    create(rt, task)  # no TaskAlreadyExists: the item that exists is this very call's

    assert lost.lost and current(rt) == task


def test_a_create_meeting_someone_elses_task_is_still_refused_after_a_lost_reply(
    rt: Runtime, pending: TaskRecord
) -> None:
    lose_response(rt.dynamodb, "PutItem")  # the retry meets the item the first try wrote...

    with pytest.raises(TaskAlreadyExists):  # ...but the first try failed its condition too
        create(rt, replace(pending, message="other"))


def test_a_claim_whose_reply_was_lost_is_the_callers_claim(
    rt: Runtime, pending: TaskRecord
) -> None:
    lose_response(rt.dynamodb, "UpdateItem")

    rt.store.claim(pending, 1, rt.clock(), rt.clock() + LEASE)  # no StaleClaim

    assert (current(rt).status, current(rt).attempts) == ("PROCESSING", 1)


@pytest.mark.parametrize("finish", ["complete", "schedule_retry", "fail"])
def test_a_finishing_write_whose_reply_was_lost_is_not_superseded(
    rt: Runtime, pending: TaskRecord, finish: str
) -> None:
    claimed(rt)
    lose_response(rt.dynamodb, "UpdateItem")

    match finish:
        case "complete":
            rt.store.complete(TASK_ID, 1, rt.clock())
        case "schedule_retry":
            rt.store.schedule_retry(TASK_ID, 1, rt.clock(), "boom", 2, rt.clock())
        case "fail":
            rt.store.fail(TASK_ID, 1, rt.clock(), "boom")

    expected = {"complete": "COMPLETED", "schedule_retry": "RETRYING", "fail": "FAILED"}[finish]
    assert current(rt).status == expected


def test_a_redrive_whose_reply_was_lost_is_the_callers_redrive(
    rt: Runtime, pending: TaskRecord
) -> None:
    claimed(rt)
    rt.store.fail(TASK_ID, 1, rt.clock(), "boom")
    plan = plan_redrive(current(rt), 1, rt.clock())
    lose_response(rt.dynamodb, "UpdateItem")

    rt.store.redrive(plan.failed, plan.redriven, rt.clock(), rt.clock() + LEASE)  # type: ignore[union-attr]

    assert current(rt).status == "RETRYING"


def test_a_dead_letter_failure_whose_reply_was_lost_is_done(
    rt: Runtime, pending: TaskRecord
) -> None:
    seen = rt.store.get(TASK_ID)
    assert seen is not None
    lose_response(rt.dynamodb, "UpdateItem")

    rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())

    assert current(rt).status == "FAILED"


def test_a_conflict_after_a_lost_reply_is_still_a_conflict_when_someone_else_wrote_last(
    rt: Runtime, pending: TaskRecord
) -> None:
    """The first try lost its condition too (another claim won): the retry's failure is real."""
    rt.store.claim(pending, 1, rt.clock(), rt.clock() + LEASE)
    lose_response(rt.dynamodb, "UpdateItem")

    with pytest.raises(StaleClaim):
        rt.store.claim(pending, 1, rt.clock(), rt.clock() + LEASE)


def test_a_check_time_that_is_not_in_the_future_is_refused(rt: Runtime) -> None:
    """The reconciler walks check times forward from its cursor: one in the past could be
    behind it and never looked at."""
    task = new_task(TASK_ID, "hello", rt.settings.policy, rt.clock())

    with pytest.raises(ValueError, match="must be after now"):
        rt.store.create(task, rt.clock(), check_after=rt.clock(), owner=CALLER)

    assert rt.store.get(TASK_ID) is None


# -- the status index: OPEN from creation, FAILED when it fails, gone when it completes --------


def index_entry(rt: Runtime, task_id: str = TASK_ID) -> tuple[str, str] | None:
    """The task's `(statusShard, listedAt)`, as stored (None: not in the status index)."""
    item = rt.dynamodb.get_item(TableName=rt.settings.table_name, Key={"taskId": {"S": task_id}})
    shard, listed_at = (
        item["Item"].get(a) for a in (STATUS_SHARD_ATTRIBUTE, STATUS_SORT_ATTRIBUTE)
    )
    assert (shard is None) == (listed_at is None), "half an index entry"
    return (shard["S"], listed_at["S"]) if shard else None


def listed(rt: Runtime) -> dict[str, list[str]]:
    """What an operator's `tasks list --status S` shows for each status (real GSI queries on
    moto, then the records read and kept if in that status)."""
    return {
        status.value: [s.record.taskId for s in find_tasks(rt.store, [status], None, None)]
        for status in INDEXED_STATUSES
    }


def assert_indexed_as(rt: Runtime, status: TaskStatus | None) -> None:
    """The task is in the index's group for `status` (None: not at all), and listed under
    `status` only."""
    entry = index_entry(rt)
    assert (entry and entry[0]) == (status and status_shard(status, TASK_ID))
    assert listed(rt) == {s.value: [TASK_ID] if s == status else [] for s in INDEXED_STATUSES}


def retried(rt: Runtime, attempt: int = 1) -> None:
    rt.store.schedule_retry(TASK_ID, attempt, rt.clock(), "boom", 2, rt.clock())


def failed(rt: Runtime, attempt: int = 1) -> None:
    rt.store.fail(TASK_ID, attempt, rt.clock(), "boom")


def redriven(rt: Runtime) -> None:
    plan = plan_redrive(current(rt), 1, rt.clock())
    rt.store.redrive(plan.failed, plan.redriven, rt.clock(), rt.clock() + LEASE)  # type: ignore[union-attr]


def dead_lettered(rt: Runtime) -> None:
    seen = rt.store.get(TASK_ID)
    assert seen is not None
    rt.store.fail_dead_lettered(seen, "dead-lettered", rt.clock())


def test_a_task_is_indexed_under_each_status_it_passes_through(
    rt: Runtime, pending: TaskRecord
) -> None:
    assert_indexed_as(rt, TaskStatus.PENDING)
    claimed(rt)
    assert_indexed_as(rt, TaskStatus.PROCESSING)
    retried(rt)
    assert_indexed_as(rt, TaskStatus.RETRYING)
    claimed(rt, attempt=2)
    assert_indexed_as(rt, TaskStatus.PROCESSING)
    failed(rt, attempt=2)
    assert_indexed_as(rt, TaskStatus.FAILED)
    redriven(rt)
    assert_indexed_as(rt, TaskStatus.RETRYING)
    claimed(rt, attempt=3)
    rt.store.complete(TASK_ID, 3, rt.clock())
    # COMPLETED needs no attention: the task leaves the sparse index
    assert_indexed_as(rt, None)


def test_the_workers_claims_and_retries_never_rewrite_the_index_entry(
    rt: Runtime, pending: TaskRecord, clock: SimClock
) -> None:
    """Each index write is paid for: an unfinished task keeps the one entry its creation wrote
    (group OPEN, listed when created) through every claim and retry."""
    created = index_entry(rt)
    assert created == (f"OPEN#{check_shard(TASK_ID)}", pending.createdAt)
    for attempt in (1, 2):
        clock.advance(5)
        claimed(rt, attempt=attempt)
        assert index_entry(rt) == created
        if attempt == 1:
            clock.advance(5)
            retried(rt)
            assert index_entry(rt) == created

    clock.advance(5)
    failed(rt, attempt=2)
    # FAILED is listed from when it failed
    assert index_entry(rt) == (f"FAILED#{check_shard(TASK_ID)}", current(rt).failedAt)


def test_a_lost_attempt_reclaimed_stays_processing_and_its_last_loss_fails_it(
    rt: Runtime, pending: TaskRecord, clock: SimClock
) -> None:
    record = claimed(rt)
    clock.advance(LEASE.total_seconds() + 1)
    rt.store.claim(record, 2, rt.clock(), rt.clock() + LEASE, lost_attempt=1)
    assert_indexed_as(rt, TaskStatus.PROCESSING)

    clock.advance(LEASE.total_seconds() + 1)
    rt.store.fail(TASK_ID, 2, rt.clock(), "lost", outcome=AttemptOutcome.LOST)
    assert_indexed_as(rt, TaskStatus.FAILED)


@pytest.mark.parametrize("before", ["pending", "processing", "retrying"])
def test_the_dead_letter_failure_indexes_the_task_as_failed(
    rt: Runtime, pending: TaskRecord, before: str
) -> None:
    if before != "pending":
        claimed(rt)
    if before == "retrying":
        retried(rt)

    dead_lettered(rt)

    assert_indexed_as(rt, TaskStatus.FAILED)


def test_a_refused_write_leaves_the_index_entry_as_it_was(rt: Runtime, pending: TaskRecord) -> None:
    claimed(rt)
    with pytest.raises(AttemptSuperseded):
        rt.store.complete(TASK_ID, 2, rt.clock())  # not the attempt in progress

    assert_indexed_as(rt, TaskStatus.PROCESSING)


# A write the SDK retried after its reply was lost is recognised as the caller's own: the entry
# it wrote is the one that stays (the retry changes nothing).


@pytest.mark.parametrize(
    ("setup", "write", "status"),
    [
        pytest.param([], lambda rt: claimed(rt), TaskStatus.PROCESSING, id="claim"),
        pytest.param([claimed], retried, TaskStatus.RETRYING, id="retry"),
        pytest.param([claimed], failed, TaskStatus.FAILED, id="fail"),
        pytest.param(
            [claimed], lambda rt: rt.store.complete(TASK_ID, 1, rt.clock()), None, id="complete"
        ),
        pytest.param([], dead_lettered, TaskStatus.FAILED, id="dead-letter"),
        pytest.param([claimed, failed], redriven, TaskStatus.RETRYING, id="redrive"),
    ],
)
def test_an_update_whose_reply_was_lost_leaves_the_entry_it_wrote(
    rt: Runtime,
    pending: TaskRecord,
    setup: list[Callable[[Runtime], object]],
    write: Callable[[Runtime], object],
    status: TaskStatus | None,
) -> None:
    for step in setup:
        step(rt)
    lost = lose_response(rt.dynamodb, "UpdateItem")

    write(rt)  # no conflict: the item carries this call's token

    assert lost.lost
    assert_indexed_as(rt, status)


def test_a_create_whose_reply_was_lost_is_indexed_once_as_pending(rt: Runtime) -> None:
    lost = lose_response(rt.dynamodb, "PutItem")

    create(rt, new_task(TASK_ID, "hello", rt.settings.policy, rt.clock()))

    assert lost.lost
    assert_indexed_as(rt, TaskStatus.PENDING)


# -- reading the status index -------------------------------------------------------------------


def test_the_index_lists_newest_first_across_shards_and_statuses_within_the_window(
    rt: Runtime, clock: SimClock
) -> None:
    start = rt.clock()
    # GIVEN tasks created a minute apart (their ids spread over the shards), some then claimed
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(40)]
    for task_id in ids:
        rt.store.create(
            new_task(task_id, "x", rt.settings.policy, rt.clock()),
            rt.clock(),
            check_after=first_check_at(rt.clock(), rt.settings.policy),
            owner=CALLER,
        )
        clock.advance(60)
    assert len({check_shard(task_id) for task_id in ids}) > 8
    for task_id in ids[::4]:
        rt.store.claim(current_of(rt, task_id), 1, rt.clock(), rt.clock() + LEASE)
        clock.advance(60)
    claimed_ids = ids[::4]
    pending_ids = [task_id for task_id in ids if task_id not in claimed_ids]

    # THEN each status lists its tasks newest first (by when they were submitted)
    def ids_listed(statuses: list[TaskStatus], since: datetime | None = None) -> list[str]:
        return [s.record.taskId for s in find_tasks(rt.store, statuses, since, None)]

    assert ids_listed([TaskStatus.PENDING]) == pending_ids[::-1]
    assert ids_listed([TaskStatus.PROCESSING]) == claimed_ids[::-1]
    both = ids_listed([TaskStatus.PENDING, TaskStatus.PROCESSING])
    assert both == ids[::-1]
    # AND the index's shards merge in time order, page by page
    entries = list(rt.store.by_status([TaskStatus.PENDING], since=None, page_size=3))
    assert [e.task_id for e in entries] == ids[::-1]
    assert {e.group for e in entries} == {"OPEN"}

    # AND `since` bounds the sort key: only what was submitted at or after it
    since = start + timedelta(seconds=60 * 30)
    assert (
        ids_listed([TaskStatus.PENDING], since)
        == [task_id for task_id in pending_ids if ids.index(task_id) >= 30][::-1]
    )


def current_of(rt: Runtime, task_id: str) -> TaskRecord:
    stored = rt.store.get(task_id)
    assert stored is not None
    return stored.record


def test_completed_tasks_cannot_be_asked_for_and_are_never_in_the_index() -> None:
    with pytest.raises(ValueError, match="not in the status index"):
        status_shard(TaskStatus.COMPLETED, TASK_ID)
