"""The operator's view of tasks: which need attention (from the status index), and one task's
history as a timeline. No output formatting here (`taskctl.ops.tasks_cli` prints); no clock of
its own (callers pass `now`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from functions.lifecycle import AttemptOutcome, AttemptRecord, TaskStatus, from_iso, to_iso
from functions.store import BATCH_GET_MAX_KEYS, INDEXED_STATUSES, StoredTask, TaskStore

# `--since 90s`, `30m`, `1h30m`, `2d`, `1w`.
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
SINCE_HELP = (
    "Only FAILED tasks that failed since then, and unfinished tasks submitted or redriven since "
    "then: a duration back from now (90s, 30m, 1h, 2d, 1h30m) or a time (2026-11-29T18:00Z; UTC "
    "unless it says otherwise)."
)


def parse_since(text: str, now: datetime) -> datetime:
    """The moment `--since` names; ValueError (saying what is accepted) for anything else."""
    compact = text.strip().replace(" ", "").lower()
    parts = _DURATION_PART.findall(compact)
    if parts and "".join(number + unit for number, unit in parts) == compact:
        try:
            return now - timedelta(seconds=sum(int(n) * _UNIT_S[unit] for n, unit in parts))
        except OverflowError:  # further back than datetime goes
            raise ValueError(f"--since {text!r} reaches back before the year 1") from None
    try:
        moment = from_iso(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration such as 30m, 1h or 2d, or a time such as "
            "2026-11-29T18:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def statuses_to_list(status: TaskStatus | None) -> tuple[TaskStatus, ...]:
    """`--status` as the index's statuses: one of them, or (none given) all four."""
    if status is None:
        return INDEXED_STATUSES
    if status not in INDEXED_STATUSES:
        names = ", ".join(s.value for s in INDEXED_STATUSES)
        raise ValueError(
            f"--status {status.value}: COMPLETED tasks are not indexed (they need no attention); "
            f"give one of {names}"
        )
    return (status,)


def find_tasks(
    store: TaskStore,
    statuses: Sequence[TaskStatus],
    since: datetime | None,
    limit: int | None,
) -> list[StoredTask]:
    """The tasks in `statuses` listed since `since` (FAILED ones by when they failed, unfinished
    ones by when they were submitted or redriven), newest first, at most `limit` (None: all).

    The ids come from the status index, newest first; the records are then read consistently,
    in batches, and a task not in `statuses` (an OPEN entry stands for all three unfinished
    statuses, and the index lags its writes by a moment) is skipped, so every task returned is as
    it is now.
    """
    wanted = set(statuses)
    found: list[StoredTask] = []
    seen: set[str] = set()
    entries = iter(store.by_status(statuses, since, page_size=min(limit or 1_000, 1_000)))
    while limit is None or len(found) < limit:
        size = BATCH_GET_MAX_KEYS if limit is None else min(BATCH_GET_MAX_KEYS, limit - len(found))
        chunk = [e.task_id for e in itertools.islice(entries, size) if e.task_id not in seen]
        if not chunk:
            break
        seen.update(chunk)
        by_id = {s.record.taskId: s for s in store.get_many(chunk, consistent=True)}
        found += [by_id[i] for i in chunk if i in by_id and by_id[i].record.status in wanted]
    return found[:limit] if limit is not None else found


# -- the timeline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEvent:
    """One thing that happened to a task (or is due to), at `at` (ISO-8601 UTC)."""

    at: str
    event: str
    detail: str = ""


def timeline(stored: StoredTask) -> list[TimelineEvent]:
    """The task's record as events in time order: submitted, each attempt's start (with the
    wait before it), outcome and error, each backoff chosen, the last redrive, the end, and
    what is due next."""
    task = stored.record
    events = [TimelineEvent(task.createdAt, "submitted", shorten(task.message, 60))]

    def add(at: str, event: str, detail: str = "") -> None:
        events.append(TimelineEvent(at, event, detail))

    previous = None
    for entry in task.history:
        name = f"attempt {entry.attempt}"
        add(entry.startedAt, f"{name} started", _waited(previous, entry.startedAt, task.redrivenAt))
        if entry.finishedAt is not None and entry.outcome is not None:
            add(entry.finishedAt, f"{name} {entry.outcome.value}", entry.error or "")
            if entry.retryDelaySeconds is not None:
                due = from_iso(entry.finishedAt) + timedelta(seconds=entry.retryDelaySeconds)
                backoff = f"backoff {_duration(entry.retryDelaySeconds)}"
                add(entry.finishedAt, backoff, f"attempt {entry.attempt + 1} due at {to_iso(due)}")
        previous = entry
    if task.redrivenAt is not None:
        redrive = f"by an operator (redrive {task.redriveCount})"
        add(task.redrivenAt, "redriven", f"{redrive}; up to {task.maxAttempts} attempts in all")
    if task.completedAt is not None:
        add(task.completedAt, "COMPLETED")
    if task.failedAt is not None:
        add(task.failedAt, "FAILED", task.lastError or "")
    if task.status == TaskStatus.RETRYING and task.nextAttemptAt is not None:
        add(task.nextAttemptAt, f"attempt {task.attempts + 1} due")
    elif task.status == TaskStatus.PROCESSING and stored.lease_expires_at is not None:
        lost = "if its worker has not reported by then, the attempt counts as LOST"
        add(to_iso(stored.lease_expires_at), f"attempt {task.attempts} lease ends", lost)
    # Stable: events at the same moment keep the order they happen in (outcome, backoff, end).
    return sorted(events, key=lambda event: event.at)


def _waited(previous: AttemptRecord | None, started_at: str, redriven_at: str | None) -> str:
    """How long the attempt waited after the one before it, and why."""
    if previous is None or previous.finishedAt is None:
        return ""
    waited = _duration((from_iso(started_at) - from_iso(previous.finishedAt)).total_seconds())
    if redriven_at is not None and previous.finishedAt <= redriven_at <= started_at:
        return f"after {waited}: attempt {previous.attempt} had failed the task; redriven"
    if previous.outcome == AttemptOutcome.LOST:
        return f"after {waited}: attempt {previous.attempt} was lost"
    if previous.retryDelaySeconds is not None:
        return f"waited {waited} (backoff {_duration(previous.retryDelaySeconds)})"
    return f"waited {waited}"


def _duration(seconds: float) -> str:
    """`0.4 s`, `12 s`, `2 min 5 s`, `3 h 20 min`, `2 d 4 h`."""
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    for unit_s, unit, sub_s, sub in (
        (86_400, "d", 3_600, "h"),
        (3_600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if whole >= unit_s:
            rest = (whole % unit_s) // sub_s
            return f"{whole // unit_s} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{whole} s"


def shorten(text: str | None, width: int) -> str:
    """One line of at most `width` characters (an ellipsis marks a cut)."""
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"
