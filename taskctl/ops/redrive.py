"""Redrive one FAILED task from its DynamoDB record: decide, write, enqueue.

The table is the source of truth (DESIGN §3): `lifecycle.plan_redrive` decides the redriven
record, `TaskStore.redrive` writes it conditionally (still FAILED, same attempts, same redrive
count: two operators racing redrive a task once; a write whose response was lost and that the SDK
retried is recognised as ours), and only then is `{"taskId": ...}` enqueued on the main queue,
where the worker claims attempt `attempts + 1` as for any retry.

The write also schedules the task's next check by the reconciler. So if the enqueue fails, or the
command is killed between the write and the enqueue, the task is still redriven: the reconciler
finds it RETRYING and overdue after `recoveryGraceSeconds` and queues its message. No undo.
That check time is never behind the reconciler's walk, even when this machine's clock is behind
(see `_reconciler_time`).

A dry run (`redrive_task(..., dry_run=True)`) reads and decides the same way and stops there:
what a redrive would write.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError

from functions.lifecycle import RedriveRefused, TaskRecord, first_check_at, plan_redrive
from functions.policy import TaskPolicy
from functions.store import TaskChanged, TaskStore, check_shard


class RedriveOutcome(StrEnum):
    REDRIVEN = "redriven"
    REFUSED = "refused"
    NOT_FOUND = "not found"
    # Redriven, but its message could not be sent: the reconciler sends it after the grace.
    ENQUEUE_FAILED = "enqueue failed"
    # An AWS error (after the SDK's retries) stopped this task's redrive; nothing was written
    # unless its reply was the part lost, and then the reconciler queues it as above.
    ERROR = "error"
    # A dry run: it would be redriven; nothing written.
    WOULD_REDRIVE = "would redrive"


@dataclass(frozen=True)
class RedriveResult:
    """What happened to one task id; `before`/`after` are the records as read and as written."""

    task_id: str
    outcome: RedriveOutcome
    detail: str
    before: TaskRecord | None = None
    after: TaskRecord | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome in (RedriveOutcome.REDRIVEN, RedriveOutcome.WOULD_REDRIVE)


def canonical_task_id(text: str) -> str | None:
    """The id as the API writes it (lowercase UUID), or None if `text` cannot be a task id."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


def redrive_task(
    store: TaskStore,
    enqueue: Callable[[str], None],
    task_id: str,
    extra_attempts: int,
    now: datetime,
    policy: TaskPolicy,
    *,
    dry_run: bool = False,
) -> RedriveResult:
    """Redrive `task_id` with `extra_attempts` more attempts (`policy`: the stack's, for the
    reconciler's grace period); with `dry_run`, write and send nothing: WOULD_REDRIVE (with the
    record it would write), REFUSED or NOT_FOUND.

    AWS errors other than the enqueue's propagate (the caller stops: the table or the network is
    the problem, not this task). An enqueue error is reported as ENQUEUE_FAILED: the task is
    redriven all the same, and the reconciler queues it.
    """
    canonical = canonical_task_id(task_id)
    if canonical is None:
        return RedriveResult(task_id, RedriveOutcome.NOT_FOUND, "not a task id (a UUID)")
    stored = store.get(canonical)
    before = stored.record if stored else None
    decision = plan_redrive(before, extra_attempts, now)
    if isinstance(decision, RedriveRefused):
        outcome = RedriveOutcome.NOT_FOUND if before is None else RedriveOutcome.REFUSED
        return RedriveResult(canonical, outcome, decision.reason, before=before)
    failed, redriven = decision.failed, decision.redriven
    task_id = failed.taskId

    def planned(outcome: RedriveOutcome, detail: str) -> RedriveResult:
        return RedriveResult(task_id, outcome, detail, before=failed, after=redriven)

    more = f"{redriven.maxAttempts - failed.attempts} more attempt(s)"
    if dry_run:
        return planned(RedriveOutcome.WOULD_REDRIVE, f"{more}; nothing written (dry run)")
    check_after = first_check_at(_reconciler_time(store, task_id, now), policy)
    try:
        store.redrive(failed, redriven, now, check_after)
    except TaskChanged:
        # Someone else redrove it (or it moved on) between our read and our write.
        current = store.get(task_id)
        status = current.record.status if current else "gone"
        return RedriveResult(
            task_id,
            RedriveOutcome.REFUSED,
            f"task changed while being redriven (now {status}); nothing written",
            before=current.record if current else None,
        )
    try:
        enqueue(task_id)
    except (BotoCoreError, ClientError) as error:
        return planned(
            RedriveOutcome.ENQUEUE_FAILED,
            f"redriven, but its message could not be sent ({one_line(error)}); the reconciler "
            f"queues it after {(check_after - now).total_seconds():.0f} s",
        )
    return planned(RedriveOutcome.REDRIVEN, f"{more}; message enqueued")


def _reconciler_time(store: TaskStore, task_id: str, now: datetime) -> datetime:
    """`now`, or where the reconciler's walk of the task's shard has reached, if that is later.

    The walk moves forward by Lambda's clock and never looks back. `now` is this machine's clock:
    were it behind by more than the grace period, the redrive's check time would fall behind the
    walk, and a task whose enqueue failed would never be queued."""
    walked_to = store.read_cursor().get(check_shard(task_id), 0)
    return max(now, datetime.fromtimestamp(walked_to, UTC))


def one_line(error: Exception) -> str:
    """An AWS error's message on one line, for a table cell or an `error:` line."""
    return " ".join(str(error).split())
