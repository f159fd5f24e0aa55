"""The reconciler: a scheduled backstop that re-enqueues every unfinished task that is overdue.

Every other path keeps a task's message alive until the delivery that finishes it. This one covers
what no handler can: a process that died between writing a record and sending its message (the
api, a redrive), a message deleted or expired by hand or by retention, a worker that keeps dying.

How it finds them without scanning the table: every task is written with an entry in the sparse,
KEYS_ONLY index `CHECK_INDEX` - a shard (16 of them, so 1,000 submits/s are ~63 index writes/s
per partition key) and a check time (`checkAfter`, first `recoveryGraceSeconds` after it was
created). The worker's writes leave the entry alone, except a claim of a task this function
recovered, which moves it back to when that attempt is overdue. Each run walks, per shard, the
entries whose check time came since the previous run (a cursor stored in the table), reads those
tasks in batches of 100, and lets `lifecycle.plan_recovery` decide:
- finished: nothing (the entry stays until TTL deletes the record, at no cost);
- unfinished but on schedule: its check moves to when it would be overdue;
- overdue (`recoveryGraceSeconds` past its due progress): its check moves on (backing off), and
  its message goes back on the main queue. A duplicate message is harmless by design.
The check moves first and the message goes second, so a crash in between only delays the
recovery to the next check. Metrics: `RecoveredTasks` and `OldestOverdueTaskAgeSeconds`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import runtime
from functions.lifecycle import Recheck, Recover, plan_recovery
from functions.metrics import (
    COUNT_UNIT,
    OLDEST_OVERDUE_METRIC,
    RECOVERED_TASKS_METRIC,
    start_invocation,
)
from functions.store import BATCH_GET_MAX_KEYS, CHECK_SHARDS, StoredTask

STOP_MARGIN_MS = 10_000

logger = Logger()
metrics = Metrics()  # namespace and service: set per invocation from the runtime settings


@dataclass
class Sweep:
    """What one run found."""

    checked: int = 0
    rescheduled: int = 0
    recovered: int = 0
    oldest_overdue_s: float = 0.0
    complete: bool = True  # False: stopped early to stay within the function's timeout


def reconcile(rt: runtime.Runtime, out_of_time: Callable[[], bool] = lambda: False) -> Sweep:
    """One pass over every shard's entries that came due since the last pass.

    The cursor is saved after every batch, so a pass cut short (`out_of_time`, a timeout, a
    crash) resumes where it stopped; entries at the saved check time are looked at again, which
    is harmless.
    """
    now = rt.clock()
    until_s = int(now.timestamp())
    cursor = rt.store.read_cursor()
    sweep = Sweep()
    for shard in (f"{number:02d}" for number in range(CHECK_SHARDS)):
        due = rt.store.due_for_check(shard, cursor.get(shard, 0), until_s)
        for batch in _batches(due, BATCH_GET_MAX_KEYS):
            for stored in rt.store.get_many([task_id for task_id, _ in batch]):
                _check(rt, stored, now, sweep)
            cursor[shard] = batch[-1][1]
            rt.store.write_cursor(cursor)
            if out_of_time():
                sweep.complete = False
                return sweep
        # Every entry written from now on has a check time after `until_s` (creates, redrives
        # and reschedules all look ahead), so the next pass may start here.
        cursor[shard] = until_s
    rt.store.write_cursor(cursor)
    return sweep


def _check(rt: runtime.Runtime, stored: StoredTask, now: datetime, sweep: Sweep) -> None:
    sweep.checked += 1
    task = stored.record
    if stored.check_after_s is None:
        return  # not in the index: nothing to move
    grace_s = rt.settings.policy.recoveryGraceSeconds
    decision = plan_recovery(task, stored.lease_expires_at, stored.recoveries, grace_s, now)
    match decision:
        case Recheck(next_check_at=next_check_at):
            if rt.store.reschedule_check(
                task.taskId, stored.check_after_s, next_check_at, recovered=False
            ):
                sweep.rescheduled += 1
        case Recover(overdue_s=overdue_s, next_check_at=next_check_at):
            if not rt.store.reschedule_check(
                task.taskId, stored.check_after_s, next_check_at, recovered=True
            ):
                return  # rescheduled meanwhile (a redrive, a concurrent pass): theirs stands
            rt.queue.enqueue(task.taskId)
            sweep.recovered += 1
            sweep.oldest_overdue_s = max(sweep.oldest_overdue_s, overdue_s)
            logger.warning(
                "overdue task re-enqueued",
                extra={
                    "taskId": task.taskId,
                    "status": task.status,
                    "attempts": task.attempts,
                    "overdueSeconds": round(overdue_s, 1),
                },
            )


def _batches(entries: Iterator[tuple[str, int]], size: int) -> Iterator[list[tuple[str, int]]]:
    while batch := list(islice(entries, size)):
        yield batch


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime.current()
    start_invocation(metrics, rt.settings)
    # Stop with time to spare: the cursor is saved, and the next scheduled pass goes on.
    sweep = reconcile(rt, lambda: context.get_remaining_time_in_millis() < STOP_MARGIN_MS)
    # Both always emitted, zeros included, so the alarms see a steady series.
    metrics.add_metric(name=RECOVERED_TASKS_METRIC, unit=COUNT_UNIT, value=sweep.recovered)
    metrics.add_metric(name=OLDEST_OVERDUE_METRIC, unit="Seconds", value=sweep.oldest_overdue_s)
    logger.info("reconciler pass done", extra=sweep.__dict__)
    return dict(sweep.__dict__)
