"""The DynamoDB task table: a thin adapter over an injected low-level DynamoDB client.

Every state change is one conditional write. Conditions are composed from small named pieces
(`status_is`, `attempts_are`, `lease_expired`, ...), and a failed condition becomes a domain
exception (`TaskAlreadyExists`, `StaleClaim`, `AttemptSuperseded`, `TaskChanged`); no other
error is caught here. Which write to make is decided by `functions.lifecycle`.

A write that was applied but whose response was lost is retried by the SDK, and the retry then
fails its own condition. So every write carries a fresh `writeToken` and asks for the item as it
is when a condition fails (`ReturnValuesOnConditionCheckFailure=ALL_OLD`): if the item holds our
token, the earlier try was ours and the write succeeded. Only a foreign token is a conflict.

Item layout: the public `TaskRecord` fields, plus internal attributes that `GET` never shows:
- `writeToken`: the token of the last write (see above);
- `expiresAt` (TTL, epoch seconds): set only by a terminal write, `taskTtlDays` later, and
  removed by a redrive, so TTL never deletes an unfinished task;
- `leaseExpiresAt` (epoch milliseconds, while PROCESSING);
- `requestHash` (SHA-256 of the canonical submit body, for `Idempotency-Key`);
- `owner`: who submitted the task (`functions.callers`); only its owner may read it;
- `checkShard` / `checkAfter` (epoch seconds): the task's entry in the sparse `CHECK_INDEX`,
  when the reconciler looks at it next (see `functions.reconciler`);
- `statusShard` (`OPEN#<shard>` or `FAILED#<shard>`) and `listedAt`: the task's entry in the
  sparse `STATUS_INDEX`, on every task but a COMPLETED one. Written by the create (OPEN), the
  writes that make a task FAILED and the redrive that makes it unfinished again, and removed by
  the completing write, each in the same UpdateItem as the status, so the entry can never put a
  task in the wrong group;
- `recoveries`: how often the reconciler re-enqueued the task since its last claim;
- `deadLetterReturns` / `deadLetterReturnAttempts`: trips through the DLQ without a new attempt.
"""

from __future__ import annotations

import heapq
import re
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from functions.lifecycle import (
    CLAIMABLE_STATUSES,
    AttemptOutcome,
    AttemptRecord,
    TaskRecord,
    TaskStatus,
    to_epoch_ms,
    to_iso,
)

# The reconciler's index: KEYS_ONLY, keyed by shard and next check time. The entry is written once
# with the task and moves only when the reconciler (or a redrive) reschedules an unfinished task,
# or when a worker claims a task the reconciler had to recover; no other write of the worker
# touches it, so it costs one index write per task.
CHECK_INDEX = "by-check-time"
CHECK_SHARD_ATTRIBUTE = "checkShard"
CHECK_AFTER_ATTRIBUTE = "checkAfter"
# 16 shards spread 1,000 submits/s to ~63 index writes/s per partition key, far from DynamoDB's
# 1,000 writes/s per partition; the reconciler queries each shard's due range in turn.
CHECK_SHARDS = 16
# The operator's index (`taskctl tasks list`, bulk redrive): KEYS_ONLY, keyed by group and shard,
# newest `listedAt` first. Two groups: OPEN (PENDING, PROCESSING, RETRYING: `listedAt` is when the
# task was created or redriven) and FAILED (`listedAt` is when it failed). A task's moves between
# unfinished statuses (every claim and retry) change neither key, so the worker's writes never
# touch the index: an entry costs two index writes in a task's life (created, completed), not one
# per status change. Sparse: a COMPLETED task (the bulk of them) leaves the index. KEYS_ONLY keeps
# each entry under 1 KB, so each index write is 1 WRU whatever the task's message and error; the
# operator's rare list reads the records (BatchGetItem) and keeps those in the asked-for status
# (see README "Operations").
STATUS_INDEX = "by-status"
STATUS_SHARD_ATTRIBUTE = "statusShard"
STATUS_SORT_ATTRIBUTE = "listedAt"
OPEN_GROUP = "OPEN"
INDEXED_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.RETRYING,
    TaskStatus.FAILED,
)
# The reconciler's progress through the index: one item, not a task (its key is not a UUID, so
# `GET /tasks/{taskId}` can never reach it, and it has no `checkShard`, so it is not indexed).
RECONCILER_CURSOR_KEY = "reconciler-cursor"
TASK_KEY = "taskId"


@dataclass(frozen=True)
class IndexKeys:
    """A KEYS_ONLY global index of the task table, by its hash and range attributes."""

    name: str
    hash_key: str
    range_key: str


# The table's keys, as declared by `components.task_table` and by every emulation of the table:
# each key attribute and its DynamoDB type, and the two global indexes.
KEY_ATTRIBUTE_TYPES = {
    TASK_KEY: "S",
    CHECK_SHARD_ATTRIBUTE: "S",
    CHECK_AFTER_ATTRIBUTE: "N",
    STATUS_SHARD_ATTRIBUTE: "S",
    STATUS_SORT_ATTRIBUTE: "S",
}
TABLE_INDEXES = (
    IndexKeys(CHECK_INDEX, CHECK_SHARD_ATTRIBUTE, CHECK_AFTER_ATTRIBUTE),
    IndexKeys(STATUS_INDEX, STATUS_SHARD_ATTRIBUTE, STATUS_SORT_ATTRIBUTE),
)
OWNER_ATTRIBUTE = "owner"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class StoreConflict(Exception):
    """A conditional write found the task in another state than the caller expected."""

    def __init__(self, task_id: str, detail: str) -> None:
        super().__init__(f"task {task_id}: {detail}")
        self.task_id = task_id


class TaskAlreadyExists(StoreConflict):
    """`create` found a task with this id (an `Idempotency-Key` seen before)."""


class StaleClaim(StoreConflict):
    """Another delivery claimed this attempt first, or the task moved on since it was read."""


class AttemptSuperseded(StoreConflict):
    """The attempt being finished is no longer the task's current PROCESSING attempt."""


class TaskChanged(StoreConflict):
    """The task changed between the read and the write; read it again."""


@dataclass(frozen=True)
class StatusEntry:
    """One entry of the status index: the task, its group (`OPEN` or `FAILED`) and `listedAt`."""

    task_id: str
    group: str
    listed_at: str  # ISO-8601 ms UTC, sortable as text


@dataclass(frozen=True)
class StoredTask:
    """A task as stored: the public record and the internal attributes."""

    record: TaskRecord
    lease_expires_at: datetime | None = None
    request_hash: str | None = None
    owner: str | None = None  # None: stored before tasks had owners
    check_after_s: int | None = None
    recoveries: int = 0
    dead_letter_returns: int = 0
    dead_letter_return_attempts: int | None = None

    @property
    def returns_without_progress(self) -> int:
        """Trips through the DLQ since the task last started an attempt."""
        if self.dead_letter_return_attempts != self.record.attempts:
            return 0
        return self.dead_letter_returns


# -- condition pieces -------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A DynamoDB condition expression with its values; combine pieces with `&`."""

    expression: str
    values: dict[str, Any]

    def __and__(self, other: Condition) -> Condition:
        clash = self.values.keys() & other.values.keys()
        if clash:
            raise ValueError(f"condition pieces reuse placeholders {sorted(clash)}")
        return Condition(
            f"({self.expression}) AND ({other.expression})", {**self.values, **other.values}
        )


def task_absent() -> Condition:
    return Condition("attribute_not_exists(#taskId)", {})


def status_is(*statuses: TaskStatus) -> Condition:
    placeholders = {f":status_{status.value.lower()}": status.value for status in statuses}
    return Condition(f"#status IN ({', '.join(placeholders)})", placeholders)


def attempts_are(count: int) -> Condition:
    return Condition("#attempts = :attempts", {":attempts": count})


def redrives_are(count: int) -> Condition:
    """The task was redriven `count` times (0: never, so the attribute is absent)."""
    if count == 0:
        return Condition("attribute_not_exists(#redriveCount)", {})
    return Condition("#redriveCount = :redrive_count", {":redrive_count": count})


def lease_expired(now: datetime) -> Condition:
    return Condition(
        "attribute_not_exists(#leaseExpiresAt) OR #leaseExpiresAt < :lease_now",
        {":lease_now": to_epoch_ms(now)},
    )


# -- the adapter ------------------------------------------------------------------------------


def check_shard(task_id: str) -> str:
    """The task's shard of the check index: stable, and uniform over random task ids."""
    return f"{zlib.crc32(task_id.encode()) % CHECK_SHARDS:02d}"


def status_shard(status: TaskStatus, task_id: str) -> str:
    """The task's partition key in the status index: its status's group and its `check_shard`,
    so the 16 shards of a group share that group's write rate."""
    return _status_partition(status, check_shard(task_id))


def index_group(status: TaskStatus) -> str:
    """The status index's group holding tasks in `status`."""
    if status not in INDEXED_STATUSES:
        raise ValueError(f"{status} tasks are not in the status index")
    return TaskStatus.FAILED.value if status == TaskStatus.FAILED else OPEN_GROUP


def _status_partition(status: TaskStatus, shard: str) -> str:
    return f"{index_group(status)}#{shard}"


def _index_as(status: TaskStatus, task_id: str, at: datetime, values: dict[str, Any]) -> list[str]:
    """The SET clauses putting the task's status index entry in `status`'s group, listed `at` (not
    COMPLETED: a completing write removes the entry, `_STATUS_ENTRY`)."""
    values[":status_shard"] = status_shard(status, task_id)
    values[":listed_at"] = to_iso(at)
    return [
        f"#{STATUS_SHARD_ATTRIBUTE} = :status_shard",
        f"#{STATUS_SORT_ATTRIBUTE} = :listed_at",
    ]


_STATUS_ENTRY = (f"#{STATUS_SHARD_ATTRIBUTE}", f"#{STATUS_SORT_ATTRIBUTE}")


class TaskStore:
    """Reads and conditionally writes task records in one table."""

    def __init__(self, client: Any, table_name: str, ttl_days: int) -> None:
        self._client = client
        self._table_name = table_name
        self._ttl = timedelta(days=ttl_days)

    # reads

    def get(self, task_id: str) -> StoredTask | None:
        """The task, read consistently (a read right after a write sees it), or None."""
        reply = self._client.get_item(
            TableName=self._table_name, Key=_key(task_id), ConsistentRead=True
        )
        item = reply.get("Item")
        return _from_item(item) if item else None

    # submit

    def create(
        self,
        task: TaskRecord,
        now: datetime,
        check_after: datetime,
        *,
        owner: str,
        request_hash: str | None = None,
    ) -> None:
        """Store a new PENDING task of `owner`, first checked by the reconciler at
        `check_after`; `TaskAlreadyExists` if the id is taken (by anyone but this very call)."""
        _require_future_check(check_after, now)
        item: dict[str, Any] = task.to_json()
        token = _new_token()
        item["writeToken"] = token
        item[CHECK_SHARD_ATTRIBUTE] = check_shard(task.taskId)
        item[CHECK_AFTER_ATTRIBUTE] = _epoch_s(check_after)
        item[OWNER_ATTRIBUTE] = owner
        item[STATUS_SHARD_ATTRIBUTE] = status_shard(task.status, task.taskId)
        item[STATUS_SORT_ATTRIBUTE] = task.createdAt
        if request_hash is not None:
            item["requestHash"] = request_hash
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item={name: _serializer.serialize(value) for name, value in item.items()},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **_condition_args(task_absent()),
            )
        except ClientError as error:
            if _condition_failed(error):
                if _written_by(error, token):
                    return
                raise TaskAlreadyExists(task.taskId, "already exists") from error
            raise

    # worker: claim and finish an attempt

    def claim(
        self,
        task: TaskRecord,
        attempt: int,
        now: datetime,
        lease_expires_at: datetime,
        lost_attempt: int | None = None,
        check_after: datetime | None = None,
    ) -> None:
        """Start attempt `attempt` of `task` (as just read): exactly one delivery wins; the
        others get `StaleClaim`.

        Allowed only if the task has made `attempt - 1` attempts and is PENDING or RETRYING, or
        is PROCESSING attempt `lost_attempt` (= `attempt - 1`) with a lease that ran out; that
        lost attempt is closed with outcome LOST in the same write. `check_after` (for a task
        the reconciler recovered) moves its next check there and clears its recoveries.
        """
        stamp = to_iso(now)
        entry = AttemptRecord(attempt=attempt, startedAt=stamp)
        values: dict[str, Any] = {
            ":processing": TaskStatus.PROCESSING.value,
            ":attempt": attempt,
            ":lease": to_epoch_ms(lease_expires_at),
        }
        sets = [
            "#status = :processing",
            "#attempts = :attempt",
            "#leaseExpiresAt = :lease",
            *_touch(values, now),
        ]
        if lost_attempt is None:
            condition = status_is(*sorted(CLAIMABLE_STATUSES)) & attempts_are(attempt - 1)
            values[":empty"] = []
            values[":entry"] = [entry.to_json()]
            sets.append("#history = list_append(if_not_exists(#history, :empty), :entry)")
        else:
            if lost_attempt != attempt - 1 or lost_attempt != task.attempts:
                raise ValueError(f"lost attempt {lost_attempt} is not attempt {attempt} - 1")
            condition = (
                status_is(TaskStatus.PROCESSING) & attempts_are(lost_attempt) & lease_expired(now)
            )
            # One write may not touch both the list and one of its elements, so the whole history
            # is rewritten; the condition pins it (history only changes with status/attempts).
            error = _lost_error(lost_attempt)
            history = list(task.history)
            history[lost_attempt - 1] = replace(
                history[lost_attempt - 1],
                finishedAt=stamp,
                outcome=AttemptOutcome.LOST,
                error=error,
            )
            history.append(entry)
            values[":history"] = [entry.to_json() for entry in history]
            values[":error"] = error
            sets += ["#history = :history", "#lastError = :error"]
        removes = ["#nextAttemptAt"]
        if check_after is not None:
            _require_future_check(check_after, now)
            values[":check_after"] = _epoch_s(check_after)
            sets.append(f"#{CHECK_AFTER_ATTRIBUTE} = :check_after")
            removes.append("#recoveries")
        self._update(
            task.taskId,
            sets,
            removes,
            values,
            condition,
            StaleClaim(task.taskId, f"attempt {attempt} was claimed by another delivery"),
        )

    def complete(self, task_id: str, attempt: int, now: datetime) -> None:
        """Attempt `attempt` succeeded: COMPLETED (the only way there)."""
        values: dict[str, Any] = {":completed": TaskStatus.COMPLETED.value, ":now": to_iso(now)}
        sets = ["#status = :completed", "#completedAt = :now", *self._finished(values, now)]
        sets += _close_attempt(attempt, AttemptOutcome.SUCCEEDED, values, now)
        # The status index is sparse: a COMPLETED task needs no attention, so it leaves it.
        removes = ("#leaseExpiresAt", "#nextAttemptAt", *_STATUS_ENTRY)
        self._finish(task_id, attempt, sets, values, removes=removes)

    def schedule_retry(
        self,
        task_id: str,
        attempt: int,
        now: datetime,
        error: str,
        retry_delay_s: int,
        next_attempt_at: datetime,
    ) -> None:
        """Attempt `attempt` failed and another is allowed: RETRYING until `next_attempt_at`."""
        values: dict[str, Any] = {
            ":retrying": TaskStatus.RETRYING.value,
            ":next": to_iso(next_attempt_at),
            ":error": error,
            ":delay": retry_delay_s,
        }
        sets = [
            "#status = :retrying",
            "#nextAttemptAt = :next",
            "#lastError = :error",
            *_touch(values, now),
            *_close_attempt(attempt, AttemptOutcome.FAILED, values, now),
            f"#history[{attempt - 1}].#error = :error",
            f"#history[{attempt - 1}].#retryDelaySeconds = :delay",
        ]
        self._finish(task_id, attempt, sets, values, removes=("#leaseExpiresAt",))

    def fail(
        self,
        task_id: str,
        attempt: int,
        now: datetime,
        error: str,
        outcome: AttemptOutcome = AttemptOutcome.FAILED,
    ) -> None:
        """Attempt `attempt` was the last and failed (or was lost): FAILED for good."""
        values: dict[str, Any] = {":failed": TaskStatus.FAILED.value, ":error": error}
        sets = [
            "#status = :failed",
            "#lastError = :error",
            *self._finished(values, now),
            "#failedAt = :now",
            *_index_as(TaskStatus.FAILED, task_id, now, values),
            *_close_attempt(attempt, outcome, values, now),
            f"#history[{attempt - 1}].#error = :error",
        ]
        extra = lease_expired(now) if outcome == AttemptOutcome.LOST else None
        self._finish(task_id, attempt, sets, values, extra)

    # dead-letter

    def fail_dead_lettered(self, seen: StoredTask, reason: str, now: datetime) -> None:
        """Make a task that is not terminal FAILED because its message reached the DLQ.

        `seen` is the task as just read; if it changed since, `TaskChanged` (read again).
        An attempt still open is closed as LOST: its worker never reported back.
        """
        record = seen.record
        if record.is_terminal:
            raise ValueError(f"task {record.taskId} is already {record.status}")
        values: dict[str, Any] = {":failed": TaskStatus.FAILED.value, ":error": reason}
        sets = [
            "#status = :failed",
            "#lastError = :error",
            *self._finished(values, now),
            "#failedAt = :now",
            *_index_as(TaskStatus.FAILED, record.taskId, now, values),
        ]
        open_attempt = record.history[-1] if record.history else None
        if open_attempt is not None and open_attempt.outcome is None:
            sets += _close_attempt(open_attempt.attempt, AttemptOutcome.LOST, values, now)
            sets.append(f"#history[{open_attempt.attempt - 1}].#error = :error")
        self._update(
            record.taskId,
            sets,
            ["#leaseExpiresAt", "#nextAttemptAt"],
            values,
            # The redrive count too: a redriven task is RETRYING after the same attempts again.
            _unchanged_since(record, record.status),
            TaskChanged(record.taskId, f"no longer {record.status} after {record.attempts}"),
        )

    def count_dead_letter_return(self, seen: StoredTask, returns: int, now: datetime) -> None:
        """Record that the task's message went back from the DLQ to the main queue, the
        `returns`-th time since its last attempt; `TaskChanged` if the task moved since `seen`."""
        record = seen.record
        values: dict[str, Any] = {":returns": returns, ":return_attempts": record.attempts}
        sets = [
            "#deadLetterReturns = :returns",
            "#deadLetterReturnAttempts = :return_attempts",
            *_touch(values, now),
        ]
        self._update(
            record.taskId,
            sets,
            [],
            values,
            # The redrive count too: a redriven task is RETRYING after the same attempts again.
            _unchanged_since(record, record.status),
            TaskChanged(record.taskId, f"no longer {record.status} after {record.attempts}"),
        )

    # operator: redrive a FAILED task (`lifecycle.plan_redrive` decides the new record)

    def redrive(
        self, failed: TaskRecord, redriven: TaskRecord, now: datetime, check_after: datetime
    ) -> None:
        """Replace FAILED `failed` (as read) by `redriven`; `TaskChanged` unless the task is
        still FAILED with the same attempts and redrive count, so of two operators racing, one
        redrives it and the other is refused. The task is unfinished again: TTL no longer
        applies, and the reconciler checks it at `check_after` (so a redrive whose enqueue never
        happened still runs)."""
        _require_future_check(check_after, now)
        values: dict[str, Any] = {
            ":retrying": TaskStatus.RETRYING.value,
            ":max_attempts": redriven.maxAttempts,
            ":next": redriven.nextAttemptAt,
            ":redriven_at": redriven.redrivenAt,
            ":redrives": redriven.redriveCount,
            ":check_after": _epoch_s(check_after),
            ":shard": check_shard(failed.taskId),
        }
        sets = [
            "#status = :retrying",
            "#maxAttempts = :max_attempts",
            "#nextAttemptAt = :next",
            "#redrivenAt = :redriven_at",
            "#redriveCount = :redrives",
            f"#{CHECK_AFTER_ATTRIBUTE} = :check_after",
            f"#{CHECK_SHARD_ATTRIBUTE} = :shard",
            *_touch(values, now),
            *_index_as(TaskStatus.RETRYING, failed.taskId, now, values),
        ]
        self._update(
            failed.taskId,
            sets,
            ["#failedAt", "#expiresAt"],
            values,
            _unchanged_since(failed, TaskStatus.FAILED),
            TaskChanged(failed.taskId, f"no longer FAILED after {failed.attempts} attempts"),
        )

    # reconciler: walk the check index

    def due_for_check(self, shard: str, after_s: int, until_s: int) -> Iterator[tuple[str, int]]:
        """`(taskId, checkAfter)` of the tasks in `shard` whose check time is in
        [after_s, until_s], oldest first.
        The index is eventually consistent: an entry written moments ago may be missing."""
        args: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": CHECK_INDEX,
            "KeyConditionExpression": "#shard = :shard AND #check BETWEEN :after AND :until",
            "ExpressionAttributeNames": {
                "#shard": CHECK_SHARD_ATTRIBUTE,
                "#check": CHECK_AFTER_ATTRIBUTE,
            },
            "ExpressionAttributeValues": {
                ":shard": {"S": shard},
                ":after": {"N": str(after_s)},
                ":until": {"N": str(until_s)},
            },
        }
        while True:
            page = self._client.query(**args)
            for item in page.get("Items", []):
                yield item[TASK_KEY]["S"], int(item[CHECK_AFTER_ATTRIBUTE]["N"])
            if "LastEvaluatedKey" not in page:
                return
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # operator: walk the status index

    def by_status(
        self, statuses: Sequence[TaskStatus], since: datetime | None, page_size: int = 100
    ) -> Iterator[StatusEntry]:
        """The status index's entries of the groups holding `statuses`, listed at or after `since`
        (None: any time), newest first: each shard is queried newest first
        (`ScanIndexForward=False`, the bound on the sort key) and the shards' pages are merged
        lazily, so reading the first N costs about one page per shard. An OPEN entry stands for
        any unfinished status, and a GSI read is eventually consistent (an entry may lag its
        task's last write by a moment), so callers read the tasks and keep those in `statuses`."""
        groups = dict.fromkeys(index_group(status) for status in statuses)
        shards = [
            self._status_shard_entries(f"{group}#{n:02d}", since, page_size)
            for group in groups
            for n in range(CHECK_SHARDS)
        ]
        return heapq.merge(*shards, key=lambda entry: entry.listed_at, reverse=True)

    def _status_shard_entries(
        self, shard: str, since: datetime | None, page_size: int
    ) -> Iterator[StatusEntry]:
        names = {"#shard": STATUS_SHARD_ATTRIBUTE}
        values: dict[str, Any] = {":shard": {"S": shard}}
        condition = "#shard = :shard"
        if since is not None:
            names["#listed"] = STATUS_SORT_ATTRIBUTE
            values[":since"] = {"S": to_iso(since)}
            condition += " AND #listed >= :since"
        args: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": page_size,
        }
        while True:
            page = self._client.query(**args)
            for item in page.get("Items", []):
                yield StatusEntry(
                    task_id=item[TASK_KEY]["S"],
                    group=item[STATUS_SHARD_ATTRIBUTE]["S"].split("#", 1)[0],
                    listed_at=item[STATUS_SORT_ATTRIBUTE]["S"],
                )
            if "LastEvaluatedKey" not in page:
                return
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_many(self, task_ids: Sequence[str], *, consistent: bool = False) -> list[StoredTask]:
        """The tasks that exist among `task_ids` (at most 100), in no particular order. Read
        eventually consistently by default: the reconciler only needs to know which are
        unfinished, and a stale read only delays a recovery to its next check. An operator's
        list reads them `consistent`ly, to show each task as it is now."""
        if len(task_ids) > BATCH_GET_MAX_KEYS:
            raise ValueError(f"{len(task_ids)} ids; BatchGetItem takes {BATCH_GET_MAX_KEYS}")
        keys = [_key(task_id) for task_id in dict.fromkeys(task_ids)]
        found: list[StoredTask] = []
        while keys:
            reply = self._client.batch_get_item(
                RequestItems={self._table_name: {"Keys": keys, "ConsistentRead": consistent}}
            )
            found += [_from_item(item) for item in reply["Responses"].get(self._table_name, [])]
            # Unprocessed keys (throttling) are asked for again at once. The loop ends: a reply
            # with unprocessed keys has read at least one, since DynamoDB refuses a batch it can
            # read nothing of (ProvisionedThroughputExceeded), and that the SDK retries, paced.
            keys = reply.get("UnprocessedKeys", {}).get(self._table_name, {}).get("Keys", [])
        return found

    def reschedule_check(
        self, task_id: str, seen_check_after_s: int, check_after: datetime, *, recovered: bool
    ) -> bool:
        """Move the task's next check from `seen_check_after_s` to `check_after` (and count a
        recovery). False if someone else moved it first; their schedule stands."""
        new_s = _epoch_s(check_after)
        values: dict[str, Any] = {":new": new_s, ":seen": seen_check_after_s}
        update = f"SET #{CHECK_AFTER_ATTRIBUTE} = :new"
        if recovered:
            values[":one"] = 1
            values[":zero"] = 0
            update += ", #recoveries = if_not_exists(#recoveries, :zero) + :one"
        # Not on a finished task: a stale (eventually consistent) read may show one unfinished.
        condition = Condition(f"#{CHECK_AFTER_ATTRIBUTE} = :seen", {}) & status_is(
            TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.RETRYING
        )
        failed = self._try_update(task_id, update, values, condition)
        if failed is None:
            return True
        # Our own earlier try (response lost, retried) left exactly the value we write.
        old = failed.response.get("Item", {})
        return old.get(CHECK_AFTER_ATTRIBUTE, {}).get("N") == str(new_s)

    def read_cursor(self) -> dict[str, int]:
        """The reconciler's progress per shard (epoch seconds); empty before its first run."""
        reply = self._client.get_item(
            TableName=self._table_name, Key=_key(RECONCILER_CURSOR_KEY), ConsistentRead=True
        )
        shards = reply.get("Item", {}).get("shards", {}).get("M", {})
        return {shard: int(value["N"]) for shard, value in shards.items()}

    def write_cursor(self, cursor: dict[str, int]) -> None:
        """Save the reconciler's progress. Unconditional: a slower concurrent run may move it
        back, which only makes the next run look at some entries again."""
        self._client.put_item(
            TableName=self._table_name,
            Item={
                TASK_KEY: {"S": RECONCILER_CURSOR_KEY},
                "shards": {"M": {shard: {"N": str(s)} for shard, s in cursor.items()}},
            },
        )

    # helpers

    def _finish(
        self,
        task_id: str,
        attempt: int,
        sets: list[str],
        values: dict[str, Any],
        extra: Condition | None = None,
        removes: tuple[str, ...] = ("#leaseExpiresAt", "#nextAttemptAt"),
    ) -> None:
        # Terminal and retry writes are conditional on owning the current attempt, so no task
        # ever gets two terminal transitions.
        condition = status_is(TaskStatus.PROCESSING) & attempts_are(attempt)
        if extra is not None:
            condition = condition & extra
        self._update(
            task_id,
            sets,
            list(removes),
            values,
            condition,
            AttemptSuperseded(task_id, f"attempt {attempt} is no longer the one in progress"),
        )

    def _finished(self, values: dict[str, Any], now: datetime) -> list[str]:
        """SET clauses of a terminal write: touched, and from now on subject to TTL."""
        values[":expires"] = int((now + self._ttl).timestamp())
        return [*_touch(values, now), "#expiresAt = :expires"]

    def _update(
        self,
        task_id: str,
        sets: list[str],
        removes: list[str],
        values: dict[str, Any],
        condition: Condition,
        conflict: StoreConflict,
    ) -> None:
        """One conditional UpdateItem; `conflict` is raised if the condition fails, unless the
        item carries this call's token (the SDK retried a try that had been applied)."""
        token = _new_token()
        values[":write_token"] = token
        update = "SET " + ", ".join([*sets, "#writeToken = :write_token"])
        if removes:
            update += " REMOVE " + ", ".join(removes)
        failed = self._try_update(task_id, update, values, condition)
        if failed is not None and not _written_by(failed, token):
            raise conflict from failed

    def _try_update(
        self, task_id: str, update: str, values: dict[str, Any], condition: Condition
    ) -> ClientError | None:
        """One conditional UpdateItem that asks for the item as it is if the condition fails:
        None when applied, the failed condition's error (carrying that item) otherwise. Any
        other error propagates."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=_key(task_id),
                UpdateExpression=update,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **_condition_args(condition, update, values),
            )
        except ClientError as error:
            if _condition_failed(error):
                return error
            raise
        return None


BATCH_GET_MAX_KEYS = 100


def _require_future_check(check_after: datetime, now: datetime) -> None:
    """The reconciler walks check times forward from where its last pass stopped, so a check
    time that is not in the future could fall behind it and never be looked at."""
    if check_after <= now:
        raise ValueError(f"check_after={check_after} must be after now={now}")


def _new_token() -> str:
    return uuid.uuid4().hex


def _written_by(error: ClientError, token: str) -> bool:
    """True if the item a failed condition returned (ALL_OLD) was last written with `token`."""
    return error.response.get("Item", {}).get("writeToken", {}).get("S") == token


def _touch(values: dict[str, Any], now: datetime) -> list[str]:
    values[":now"] = to_iso(now)
    return ["#updatedAt = :now"]


def _epoch_s(moment: datetime) -> int:
    return int(moment.timestamp())


def _unchanged_since(task: TaskRecord, status: TaskStatus) -> Condition:
    """`task` (as read or as written) is still in `status` with the same attempts and redrives."""
    return status_is(status) & attempts_are(task.attempts) & redrives_are(task.redriveCount or 0)


def _lost_error(attempt: int) -> str:
    return f"attempt {attempt} was lost: its worker stopped before reporting (crash or timeout)"


def _close_attempt(
    attempt: int, outcome: AttemptOutcome, values: dict[str, Any], now: datetime
) -> list[str]:
    """SET clauses closing history entry `attempt` (1-based) with `outcome` at `now`."""
    index = attempt - 1
    values[":now"] = to_iso(now)
    values[f":outcome_{outcome.value.lower()}"] = outcome.value
    return [
        f"#history[{index}].#finishedAt = :now",
        f"#history[{index}].#outcome = :outcome_{outcome.value.lower()}",
    ]


def _key(task_id: str) -> dict[str, Any]:
    return {TASK_KEY: {"S": task_id}}


_NAME_TOKEN = re.compile(r"#(\w+)")


def _condition_args(
    condition: Condition, update_expression: str = "", values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Request arguments for a conditional write. Every attribute is written `#name` in the
    expressions, so reserved words (`status`, ...) never break one."""
    names = {
        f"#{name}": name
        for name in _NAME_TOKEN.findall(condition.expression + " " + update_expression)
    }
    all_values = {**(values or {}), **condition.values}
    args: dict[str, Any] = {
        "ConditionExpression": condition.expression,
        "ExpressionAttributeNames": names,
    }
    if all_values:
        args["ExpressionAttributeValues"] = {
            placeholder: _serializer.serialize(value) for placeholder, value in all_values.items()
        }
    return args


def _condition_failed(error: ClientError) -> bool:
    """True for a failed condition (the caller's domain conflict); any other error is not ours
    to handle."""
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; ours are all whole numbers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _from_item(item: dict[str, Any]) -> StoredTask:
    data = _plain({name: _deserializer.deserialize(value) for name, value in item.items()})
    lease_ms = data.pop("leaseExpiresAt", None)
    internal = {name: data.pop(name, None) for name in _INTERNAL_ATTRIBUTES}
    return StoredTask(
        record=TaskRecord.from_json(data),
        lease_expires_at=(
            datetime.fromtimestamp(lease_ms / 1000, tz=UTC) if lease_ms is not None else None
        ),
        request_hash=internal["requestHash"],
        owner=internal[OWNER_ATTRIBUTE],
        check_after_s=internal[CHECK_AFTER_ATTRIBUTE],
        recoveries=internal["recoveries"] or 0,
        dead_letter_returns=internal["deadLetterReturns"] or 0,
        dead_letter_return_attempts=internal["deadLetterReturnAttempts"],
    )


_INTERNAL_ATTRIBUTES = (
    "requestHash",
    OWNER_ATTRIBUTE,
    "expiresAt",
    "writeToken",
    CHECK_SHARD_ATTRIBUTE,
    CHECK_AFTER_ATTRIBUTE,
    STATUS_SHARD_ATTRIBUTE,
    STATUS_SORT_ATTRIBUTE,
    "recoveries",
    "deadLetterReturns",
    "deadLetterReturnAttempts",
)
