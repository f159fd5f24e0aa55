"""The DynamoDB task table: a thin adapter over an injected low-level DynamoDB client.

Every state change is one conditional write. Conditions are composed from small named pieces
(`status_is`, `attempts_are`, `lease_expired`, ...), and a failed condition becomes a domain
exception (`TaskAlreadyExists`, `StaleClaim`, `AttemptSuperseded`, `TaskChanged`); no other
error is caught here. Which write to make is decided by `functions.lifecycle`.

Item layout: the public `TaskRecord` fields, plus internal attributes that `GET` never shows:
`expiresAt` (TTL, epoch seconds, `taskTtlDays` after the last change), `leaseExpiresAt` (epoch
milliseconds, while PROCESSING) and `requestHash` (SHA-256 of the canonical submit body, for
`Idempotency-Key`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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

SECONDS_PER_DAY = 86_400

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
class StoredTask:
    """A task as stored: the public record and the internal attributes."""

    record: TaskRecord
    lease_expires_at: datetime | None = None
    request_hash: str | None = None


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


def task_exists() -> Condition:
    return Condition("attribute_exists(#taskId)", {})


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

    def create(self, task: TaskRecord, now: datetime, request_hash: str | None = None) -> None:
        """Store a new PENDING task; `TaskAlreadyExists` if the id is taken."""
        item = task.model_dump(mode="json", exclude_none=True)
        item["expiresAt"] = self._expires_at(now)
        if request_hash is not None:
            item["requestHash"] = request_hash
        condition = task_absent()
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item={name: _serializer.serialize(value) for name, value in item.items()},
                **_condition_args(condition),
            )
        except ClientError as error:
            if _condition_failed(error):
                raise TaskAlreadyExists(task.taskId, "already exists") from error
            raise

    def delete_if_pending(self, task_id: str) -> bool:
        """Undo a submit whose enqueue failed. False if a worker already started the task
        (so the message did go out after all) or it no longer exists."""
        condition = status_is(TaskStatus.PENDING) & attempts_are(0)
        try:
            self._client.delete_item(
                TableName=self._table_name, Key=_key(task_id), **_condition_args(condition)
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # worker: claim and finish an attempt

    def claim(
        self,
        task: TaskRecord,
        attempt: int,
        now: datetime,
        lease_expires_at: datetime,
        lost_attempt: int | None = None,
    ) -> None:
        """Start attempt `attempt` of `task` (as just read): exactly one delivery wins; the
        others get `StaleClaim`.

        Allowed only if the task has made `attempt - 1` attempts and is PENDING or RETRYING, or
        is PROCESSING attempt `lost_attempt` (= `attempt - 1`) with a lease that ran out; that
        lost attempt is closed with outcome LOST in the same write.
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
            *self._touch(values, now),
        ]
        if lost_attempt is None:
            condition = status_is(*sorted(CLAIMABLE_STATUSES)) & attempts_are(attempt - 1)
            values[":empty"] = []
            values[":entry"] = [entry.model_dump(mode="json", exclude_none=True)]
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
            history = [item.model_copy() for item in task.history]
            history[lost_attempt - 1] = history[lost_attempt - 1].model_copy(
                update={"finishedAt": stamp, "outcome": AttemptOutcome.LOST, "error": error}
            )
            history.append(entry)
            values[":history"] = [h.model_dump(mode="json", exclude_none=True) for h in history]
            values[":error"] = error
            sets += ["#history = :history", "#lastError = :error"]
        self._update(
            task.taskId,
            f"SET {', '.join(sets)} REMOVE #nextAttemptAt",
            values,
            condition,
            StaleClaim(task.taskId, f"attempt {attempt} was claimed by another delivery"),
        )

    def complete(self, task_id: str, attempt: int, now: datetime) -> None:
        """Attempt `attempt` succeeded: COMPLETED (the only way there)."""
        values: dict[str, Any] = {":completed": TaskStatus.COMPLETED.value, ":now": to_iso(now)}
        sets = ["#status = :completed", "#completedAt = :now", *self._touch(values, now)]
        sets += _close_attempt(attempt, AttemptOutcome.SUCCEEDED, values, now)
        self._finish(task_id, attempt, sets, values)

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
            *self._touch(values, now),
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
            *self._touch(values, now),
            "#failedAt = :now",
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
            *self._touch(values, now),
            "#failedAt = :now",
        ]
        open_attempt = record.history[-1] if record.history else None
        if open_attempt is not None and open_attempt.outcome is None:
            sets += _close_attempt(open_attempt.attempt, AttemptOutcome.LOST, values, now)
            sets.append(f"#history[{open_attempt.attempt - 1}].#error = :error")
        self._update(
            record.taskId,
            f"SET {', '.join(sets)} REMOVE #leaseExpiresAt, #nextAttemptAt",
            values,
            status_is(record.status) & attempts_are(record.attempts),
            TaskChanged(record.taskId, f"no longer {record.status} after {record.attempts}"),
        )

    # operator: redrive a FAILED task (`lifecycle.plan_redrive` decides the new record)

    def redrive(self, failed: TaskRecord, redriven: TaskRecord, now: datetime) -> None:
        """Replace FAILED `failed` (as read) by `redriven`; `TaskChanged` unless the task is
        still FAILED with the same attempts and redrive count, so of two operators racing, one
        redrives it and the other is refused."""
        values: dict[str, Any] = {
            ":retrying": TaskStatus.RETRYING.value,
            ":max_attempts": redriven.maxAttempts,
            ":next": redriven.nextAttemptAt,
            ":redriven_at": redriven.redrivenAt,
            ":redrives": redriven.redriveCount,
        }
        sets = [
            "#status = :retrying",
            "#maxAttempts = :max_attempts",
            "#nextAttemptAt = :next",
            "#redrivenAt = :redriven_at",
            "#redriveCount = :redrives",
            *self._touch(values, now),
        ]
        self._update(
            failed.taskId,
            f"SET {', '.join(sets)} REMOVE #failedAt",
            values,
            _unchanged_since(failed, TaskStatus.FAILED),
            TaskChanged(failed.taskId, f"no longer FAILED after {failed.attempts} attempts"),
        )

    def undo_redrive(self, failed: TaskRecord, redriven: TaskRecord, now: datetime) -> bool:
        """Put `failed` back after its message could not be enqueued. False if a worker already
        claimed the redriven task (a stray message reached it), which then runs as redriven."""
        values: dict[str, Any] = {
            ":failed": TaskStatus.FAILED.value,
            ":max_attempts": failed.maxAttempts,
            ":updated_at": failed.updatedAt,
            ":expires": self._expires_at(now),
        }
        sets = [
            "#status = :failed",
            "#maxAttempts = :max_attempts",
            "#updatedAt = :updated_at",
            "#expiresAt = :expires",
        ]
        removes = ["#nextAttemptAt"]
        # Restore the attributes the redrive wrote or removed exactly as they were.
        for name in ("failedAt", "redrivenAt", "redriveCount"):
            previous = getattr(failed, name)
            if previous is None:
                removes.append(f"#{name}")
            else:
                values[f":previous_{name}"] = previous
                sets.append(f"#{name} = :previous_{name}")
        try:
            self._update(
                failed.taskId,
                f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                values,
                _unchanged_since(redriven, TaskStatus.RETRYING),
                TaskChanged(failed.taskId, "claimed by a worker since its redrive"),
            )
        except TaskChanged:
            return False
        return True

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
            f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            values,
            condition,
            AttemptSuperseded(task_id, f"attempt {attempt} is no longer the one in progress"),
        )

    def _touch(self, values: dict[str, Any], now: datetime) -> list[str]:
        values[":now"] = to_iso(now)
        values[":expires"] = self._expires_at(now)
        return ["#updatedAt = :now", "#expiresAt = :expires"]

    def _expires_at(self, now: datetime) -> int:
        return int((now + self._ttl).timestamp())

    def _update(
        self,
        task_id: str,
        update_expression: str,
        values: dict[str, Any],
        condition: Condition,
        conflict: StoreConflict,
    ) -> None:
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=_key(task_id),
                UpdateExpression=update_expression,
                **_condition_args(condition, update_expression, values),
            )
        except ClientError as error:
            if _condition_failed(error):
                raise conflict from error
            raise


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
    return {"taskId": {"S": task_id}}


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
    request_hash = data.pop("requestHash", None)
    data.pop("expiresAt", None)
    return StoredTask(
        record=TaskRecord.model_validate(data),
        lease_expires_at=(
            datetime.fromtimestamp(lease_ms / 1000, tz=UTC) if lease_ms is not None else None
        ),
        request_hash=request_hash,
    )
