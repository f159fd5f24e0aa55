"""The task lifecycle: statuses, the task record, backoff, simulated work, and every decision.

Pure: no I/O, no boto3, no clock and no randomness of its own. The caller injects the current
time (`now`) and the random source (`random.Random`), so every decision here is reproducible in a
test. The adapters (`store`, `queue`) carry out what this module decides; the handlers only wire
the two together.

Lifecycle (DESIGN §3):

    PENDING ──claim──► PROCESSING ──success──► COMPLETED
                           │  ▲
                   failure │  │ claim (at nextAttemptAt)
                           ▼  │
                        RETRYING            PROCESSING ──last failure──► FAILED

A PROCESSING task whose lease ran out (its worker crashed or timed out) may be claimed again; the
lost attempt is closed with outcome LOST and still counts. The dead-letter function may move any
task that is not terminal to FAILED.

An operator may redrive a FAILED task from its record (`plan_redrive`): FAILED ──redrive──►
RETRYING, due now, with more attempts allowed. The attempts made and their history are kept.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, TypeVar, get_type_hints

from functions.policy import MAX_DEAD_LETTER_RETURNS, TaskPolicy

MESSAGE_MAX_CHARS = 4096  # a task's message; documented in the API and the OpenAPI document
ALWAYS_SUCCEEDS = "SUCCESS"
ALWAYS_FAILS = "ERROR"


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED})
# Statuses from which a worker may start the next attempt without waiting for a lease to run out.
CLAIMABLE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RETRYING})


class AttemptOutcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    LOST = "LOST"  # the worker never reported back (crash, timeout); found when its lease ran out


# Every status change a worker makes. The dead-letter function additionally moves any
# non-terminal status to FAILED (DEAD_LETTER_TRANSITIONS).
WORKER_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.PROCESSING}),
    # PROCESSING -> PROCESSING: a lost attempt is closed and the next one claimed in one write.
    TaskStatus.PROCESSING: frozenset(
        {TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.RETRYING, TaskStatus.FAILED}
    ),
    TaskStatus.RETRYING: frozenset({TaskStatus.PROCESSING}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
}
DEAD_LETTER_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    status: frozenset() if status.is_terminal else frozenset({TaskStatus.FAILED})
    for status in TaskStatus
}


# An operator's redrive (`plan_redrive`): the only way out of a terminal status.
REDRIVE_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    status: frozenset({TaskStatus.RETRYING}) if status == TaskStatus.FAILED else frozenset()
    for status in TaskStatus
}


def can_transition(
    current: TaskStatus, target: TaskStatus, *, dead_letter: bool = False, redrive: bool = False
) -> bool:
    """True if `current -> target` is a transition the lifecycle allows."""
    allowed = WORKER_TRANSITIONS[current]
    if dead_letter:
        allowed = allowed | DEAD_LETTER_TRANSITIONS[current]
    if redrive:
        allowed = allowed | REDRIVE_TRANSITIONS[current]
    return target in allowed


# -- time -------------------------------------------------------------------------------------


def to_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`: sortable as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- the task record --------------------------------------------------------------------------


class JsonSchema:
    """JSON Schema keywords for a record field, for the API's OpenAPI document only.

    The records are plain dataclasses, so the functions that never serve HTTP never import
    pydantic (README, "Cold start"). The api generates its document with pydantic, which asks
    each field's metadata for this hook. A `minimum` is also checked whenever a record is made.
    """

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(core_schema), **self.keywords}


# Both stay plain strings on the wire and in the table (a task id in its canonical lowercase form,
# a timestamp as `to_iso` writes it); the `format` tells the document's readers (clients,
# fuzzers) what the strings hold.
TaskId = Annotated[str, JsonSchema(format="uuid")]
Timestamp = Annotated[str, JsonSchema(format="date-time")]

# Pydantic reads a stdlib dataclass's config here: the documented records allow no other field.
_CLOSED_RECORD = {"extra": "forbid"}


class RecordError(ValueError):
    """Data that is not a task record (a stored item someone else wrote, or a bug)."""


@dataclass(frozen=True, kw_only=True)
class AttemptRecord:
    """One attempt in a task's history; `outcome` is None while the attempt runs."""

    __pydantic_config__ = _CLOSED_RECORD

    attempt: Annotated[int, JsonSchema(minimum=1, description="1-based attempt number")]
    startedAt: Timestamp
    finishedAt: Timestamp | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None
    retryDelaySeconds: Annotated[
        int | None, JsonSchema(description="Wait before the next attempt, if one was scheduled")
    ] = None

    def __post_init__(self) -> None:
        _check_minimums(self)

    def to_json(self) -> dict[str, Any]:
        """The attempt as `GET` shows it and the table stores it: unset fields left out."""
        return _json_fields(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptRecord:
        """The inverse of `to_json`; `RecordError` for anything else."""
        return _record(cls, data, outcome=AttemptOutcome)


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """A task as `GET /tasks/{taskId}` shows it (DESIGN §2)."""

    __pydantic_config__ = _CLOSED_RECORD

    taskId: TaskId
    status: TaskStatus
    message: str
    attempts: Annotated[int, JsonSchema(minimum=0, description="Attempts started so far")]
    maxAttempts: Annotated[int, JsonSchema(minimum=1)]
    createdAt: Timestamp
    updatedAt: Timestamp
    nextAttemptAt: Annotated[Timestamp | None, JsonSchema(description="Set while RETRYING")] = None
    lastError: str | None = None
    completedAt: Timestamp | None = None
    failedAt: Timestamp | None = None
    redrivenAt: Annotated[
        Timestamp | None,
        JsonSchema(description="When an operator last redrove the task after it FAILED"),
    ] = None
    redriveCount: Annotated[
        int | None,
        JsonSchema(minimum=1, description="How many times the task was redriven (absent: never)"),
    ] = None
    history: list[AttemptRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_minimums(self)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_json(self) -> dict[str, Any]:
        """The task as `GET` shows it and the table stores it: unset fields left out."""
        shown = _json_fields(self)
        shown["history"] = [entry.to_json() for entry in self.history]
        return shown

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRecord:
        """The inverse of `to_json`; `RecordError` for anything else."""
        history = data.get("history", [])
        if not isinstance(history, list):
            raise RecordError(f"history={history!r}: not a list of attempts")
        return _record(
            cls,
            {**data, "history": [AttemptRecord.from_json(entry) for entry in history]},
            status=TaskStatus,
        )


R = TypeVar("R", AttemptRecord, TaskRecord)
RECORD_FIELDS: frozenset[str] = frozenset(spec.name for spec in fields(TaskRecord))


def _json_fields(record: AttemptRecord | TaskRecord) -> dict[str, Any]:
    return {
        spec.name: value.value if isinstance(value, StrEnum) else value
        for spec in fields(record)
        if (value := getattr(record, spec.name)) is not None
    }


def _check_minimums(record: AttemptRecord | TaskRecord) -> None:
    """The documented lower bounds (`JsonSchema(minimum=...)`), checked on every record made."""
    for name, minimum in _minimums(type(record)).items():
        value = getattr(record, name)
        if value is not None and value < minimum:
            raise RecordError(f"{name}={value!r}: should be at least {minimum}")


@cache
def _minimums(cls: type) -> dict[str, int]:
    return {
        name: schema.keywords["minimum"]
        for name, hint in get_type_hints(cls, include_extras=True).items()
        for schema in getattr(hint, "__metadata__", ())
        if isinstance(schema, JsonSchema) and "minimum" in schema.keywords
    }


def _record(cls: type[R], data: Mapping[str, Any], **enums: type[StrEnum]) -> R:
    """`cls` from `data`: the named fields read as their enums, the others as given; missing or
    unknown fields, and values that are not the field's enum, are a `RecordError`."""
    try:
        values = dict(data)
        for name, enum in enums.items():
            if values.get(name) is not None:
                values[name] = enum(values[name])
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise RecordError(f"not a {cls.__name__}: {error}") from None


def new_task(task_id: str, message: str, policy: TaskPolicy, now: datetime) -> TaskRecord:
    """A freshly accepted task: PENDING, no attempts yet."""
    stamp = to_iso(now)
    return TaskRecord(
        taskId=task_id,
        status=TaskStatus.PENDING,
        message=message,
        attempts=0,
        maxAttempts=policy.maxAttempts,
        createdAt=stamp,
        updatedAt=stamp,
    )


# -- backoff and simulated work ---------------------------------------------------------------


def backoff_ceiling_s(attempt: int, policy: TaskPolicy) -> int:
    """`min(maxDelaySeconds, backoffBaseSeconds * 2**(attempt-1))` for 1-based `attempt`."""
    if attempt < 1:
        raise ValueError(f"attempt={attempt}: attempts are numbered from 1")
    # Cap the exponent first: 2**(attempt-1) for a large attempt is a huge int for nothing.
    exponent = min(attempt - 1, policy.maxDelaySeconds.bit_length() + 1)
    return min(policy.maxDelaySeconds, policy.backoffBaseSeconds * 2**exponent)


def longest_retry_wait_s(policy: TaskPolicy) -> int:
    """The longest a task can wait between its attempts in all: every backoff at its ceiling."""
    return sum(backoff_ceiling_s(attempt, policy) for attempt in range(1, policy.maxAttempts))


def retry_delay_s(attempt: int, policy: TaskPolicy, rng: random.Random) -> int:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one.

    Without jitter: exactly `backoff_ceiling_s`. With full jitter: uniform over the whole
    seconds in [0, ceiling], as Step Functions' `JitterStrategy: FULL`. Whole seconds because
    SQS visibility timeouts are whole seconds.
    """
    ceiling_s = backoff_ceiling_s(attempt, policy)
    return rng.randint(0, ceiling_s) if policy.jitter else ceiling_s


@dataclass(frozen=True)
class WorkResult:
    succeeded: bool
    error: str | None = None


def simulate_work(message: str, error_rate: float, rng: random.Random) -> WorkResult:
    """The original system's stand-in for real work.

    "SUCCESS" always succeeds, "ERROR" always fails, anything else fails with probability
    `error_rate` (one draw from `rng` per attempt).
    """
    if message == ALWAYS_SUCCEEDS:
        return WorkResult(succeeded=True)
    if message == ALWAYS_FAILS:
        return WorkResult(succeeded=False, error="simulated error: the message asks to fail")
    if rng.random() < error_rate:
        return WorkResult(succeeded=False, error=f"simulated random error (errorRate={error_rate})")
    return WorkResult(succeeded=True)


# -- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acknowledge:
    """Nothing to run: delete the message. `reason` is for the log."""

    reason: str


@dataclass(frozen=True)
class Defer:
    """Not this delivery's turn: the task's message must come back in `delay_s`. The task is
    unfinished and this copy may be the only one left, so it is acknowledged only once a copy
    delayed by `delay_s` has been sent. `keep_in_flight`: hide this very copy instead and report
    it failed (a short wait for another delivery's lease, which a re-send would not shorten)."""

    delay_s: int
    reason: str
    keep_in_flight: bool = False


@dataclass(frozen=True)
class Claim:
    """Start attempt `attempt`; `lost_attempt` is the attempt to close as LOST first, if any."""

    attempt: int
    lost_attempt: int | None = None


@dataclass(frozen=True)
class FailLost:
    """The last attempt was lost and none remain: the task is FAILED without running again."""

    lost_attempt: int


DeliveryAction = Acknowledge | Defer | Claim | FailLost


def plan_delivery(
    task: TaskRecord | None, now: datetime, lease_expires_at: datetime | None
) -> DeliveryAction:
    """What a worker does with one delivery of a task's message, given the task as stored.

    `lease_expires_at` is the stored lease of a PROCESSING task (None otherwise).
    """
    if task is None:
        # The submit was undone (enqueue reported failure yet the message went out) or the
        # record expired: there is nothing to run.
        return Acknowledge("no such task")
    if task.is_terminal:
        return Acknowledge(f"task is already {task.status}")
    if task.status == TaskStatus.RETRYING and task.nextAttemptAt is not None:
        wait_s = (from_iso(task.nextAttemptAt) - now).total_seconds()
        if wait_s > 0:
            return Defer(_whole_seconds(wait_s), "the retry is not due yet")
    if task.status == TaskStatus.PROCESSING:
        if lease_expires_at is not None and lease_expires_at > now:
            # Another delivery runs the attempt. If it fails, its own message handle may be
            # gone (SQS may have handed this copy the newer one): come back when its lease ends.
            wait_s = (lease_expires_at - now).total_seconds() + LEASE_MARGIN_S
            return Defer(
                _whole_seconds(wait_s), "another delivery holds a live lease", keep_in_flight=True
            )
        # The attempt in flight was lost: it counts, like any attempt.
        if task.attempts >= task.maxAttempts:
            return FailLost(lost_attempt=task.attempts)
        return Claim(attempt=task.attempts + 1, lost_attempt=task.attempts)
    return Claim(attempt=task.attempts + 1)


# Come back this long after another delivery's lease ends, so the lease has surely run out.
LEASE_MARGIN_S = 1


def _whole_seconds(seconds: float) -> int:
    """Round up: redelivering a fraction of a second early would just defer again."""
    return max(1, int(-(-seconds // 1)))


@dataclass(frozen=True)
class Completed:
    pass


@dataclass(frozen=True)
class RetryLater:
    retry_delay_s: int
    next_attempt_at: datetime


@dataclass(frozen=True)
class FailedForGood:
    pass


AttemptDecision = Completed | RetryLater | FailedForGood


def decide_after_attempt(
    attempt: int,
    max_attempts: int,
    result: WorkResult,
    policy: TaskPolicy,
    rng: random.Random,
    now: datetime,
) -> AttemptDecision:
    """The task's next state once attempt `attempt` (1-based) has finished with `result`."""
    if result.succeeded:
        return Completed()
    if attempt >= max_attempts:
        return FailedForGood()
    delay_s = retry_delay_s(attempt, policy, rng)
    return RetryLater(retry_delay_s=delay_s, next_attempt_at=now + timedelta(seconds=delay_s))


# -- redrive (an operator's decision, DESIGN §3: "a FAILED task can be redriven from its record") --


@dataclass(frozen=True)
class Redrive:
    """Write `redriven` in place of `failed` (as read), then enqueue the task's message."""

    failed: TaskRecord
    redriven: TaskRecord


@dataclass(frozen=True)
class RedriveRefused:
    """Nothing to write: `reason` says why, in one line."""

    reason: str


RedriveDecision = Redrive | RedriveRefused


def plan_redrive(task: TaskRecord | None, extra_attempts: int, now: datetime) -> RedriveDecision:
    """What redriving `task` (as just read) with `extra_attempts` more attempts means.

    Only a FAILED task is redriven. It becomes RETRYING and due now (`nextAttemptAt = now`), so
    the worker's next delivery claims attempt `attempts + 1` as for any retry. It may make exactly
    `extra_attempts` more attempts: `maxAttempts = attempts + extra_attempts` (a task the
    dead-letter function failed early has `attempts < maxAttempts`; "N more" still means N).
    `attempts`, `history` and `lastError` are kept; `failedAt` goes; `redrivenAt` and
    `redriveCount` record the redrive.
    """
    if extra_attempts < 1:
        raise ValueError(f"extra_attempts={extra_attempts}: a redrive allows at least 1 attempt")
    if task is None:
        return RedriveRefused("not found")
    if task.status != TaskStatus.FAILED:
        return RedriveRefused(f"it is {task.status}; only a FAILED task can be redriven")
    stamp = to_iso(now)
    redriven = replace(
        task,
        status=TaskStatus.RETRYING,
        maxAttempts=task.attempts + extra_attempts,
        nextAttemptAt=stamp,
        failedAt=None,
        updatedAt=stamp,
        redrivenAt=stamp,
        redriveCount=(task.redriveCount or 0) + 1,
    )
    return Redrive(failed=task, redriven=redriven)


# -- the reconciler's decision (DESIGN §3: no task is left unfinished without a message) ----------

# A task recovered again and again (its worker keeps failing before it can claim) is looked at
# less and less often: grace x 2^recoveries, at most this long.
MAX_RECHECK_S = 6 * 3_600


@dataclass(frozen=True)
class Recover:
    """The task is overdue: re-enqueue its message and look again at `next_check_at`."""

    overdue_s: float
    next_check_at: datetime


@dataclass(frozen=True)
class Recheck:
    """The task is unfinished but on schedule: look again when it would be overdue."""

    next_check_at: datetime


@dataclass(frozen=True)
class Finished:
    """Nothing to watch: the task is COMPLETED or FAILED."""


RecoveryDecision = Recover | Recheck | Finished


def progress_due_at(task: TaskRecord, lease_expires_at: datetime | None) -> datetime:
    """When the unfinished `task` should next make progress: PENDING ones when created,
    RETRYING ones at their retry time, PROCESSING ones when their lease ends."""
    if task.status == TaskStatus.RETRYING and task.nextAttemptAt is not None:
        return from_iso(task.nextAttemptAt)
    if task.status == TaskStatus.PROCESSING and lease_expires_at is not None:
        return lease_expires_at
    return from_iso(task.updatedAt if task.status != TaskStatus.PENDING else task.createdAt)


def plan_recovery(
    task: TaskRecord,
    lease_expires_at: datetime | None,
    recoveries: int,
    grace_s: int,
    now: datetime,
) -> RecoveryDecision:
    """What the reconciler does with a task whose check time has come.

    Overdue means `grace_s` past `progress_due_at` with no progress since: the task's message
    is missing (never sent, deleted, expired) or its worker keeps dying. A duplicate message is
    harmless, so recovering one that was merely slow costs one extra delivery.
    """
    if task.is_terminal:
        return Finished()
    due = progress_due_at(task, lease_expires_at)
    overdue_at = due + timedelta(seconds=grace_s)
    if now < overdue_at:
        return Recheck(next_check_at=overdue_at)
    recheck_s = min(MAX_RECHECK_S, grace_s * 2 ** min(recoveries, 16))
    return Recover(
        overdue_s=(now - due).total_seconds(),
        next_check_at=now + timedelta(seconds=recheck_s),
    )


def first_check_at(since: datetime, policy: TaskPolicy) -> datetime:
    """When the reconciler first looks at a task created or redriven at `since`, or at a task it
    had recovered whose claimed attempt's lease ends at `since` (the claim is progress: its
    looking less and less often starts over)."""
    return since + timedelta(seconds=policy.recoveryGraceSeconds)


# -- the dead-letter function's decision ---------------------------------------------------------


@dataclass(frozen=True)
class ReturnToQueue:
    """Receives that were not attempts brought the message here: send it back to the main queue,
    the `returns`-th time in a row without a new attempt."""

    returns: int


@dataclass(frozen=True)
class FailDeadLettered:
    """Make the task FAILED, with `reason`."""

    reason: str


DeadLetterAction = Acknowledge | ReturnToQueue | FailDeadLettered


def plan_dead_letter(
    task: TaskRecord | None,
    returns_without_progress: int,
    sent_by_worker: bool,
    reason: str,
) -> DeadLetterAction:
    """What the dead-letter function does with one DLQ message for `task` (as just read).

    The worker dead-letters a message only after making its task FAILED. A message the queue's
    redrive policy moved got there on receives, and receives are not attempts (throttling, an
    outage, deferrals, duplicates): while the task is unfinished it goes back to the main queue,
    where the attempt budget in DynamoDB decides. Only a message that came back
    `MAX_DEAD_LETTER_RETURNS` times without any new attempt is poisonous: it kills the worker
    before a claim, and the task is FAILED so that it ends.
    """
    if task is None:
        return Acknowledge("no such task")
    if task.is_terminal:
        return Acknowledge(f"task is already {task.status}")
    if sent_by_worker:
        if task.redriveCount:
            # Not FAILED any more, so redriven after the worker sent this message.
            return Acknowledge("the message predates the task's redrive")
        return FailDeadLettered(reason)
    if returns_without_progress < MAX_DEAD_LETTER_RETURNS:
        return ReturnToQueue(returns=returns_without_progress + 1)
    return FailDeadLettered(
        f"{reason}; its message reached the DLQ {returns_without_progress + 1} times without a "
        "new attempt (it stops the worker before an attempt can start)"
    )
