"""What must hold (DESIGN §8), and the checks.

During the run, `Observer` sees every write the table applied, in order (including writes whose
reply was lost and writes made just before a crash), and counts each task's transitions into a
terminal status. After the faults stop and simulated time has run on until nothing moves,
`check` looks at every stored task and every request the clients made:

- stranded: a task that exists but is neither COMPLETED nor FAILED;
- attempts over budget: `attempts > maxAttempts` (a redrive raises maxAttempts);
- extra terminal transition: more non-terminal -> terminal writes than 1 + redriveCount;
- history numbering: the attempts in `history` are not exactly 1..attempts, or an attempt other
  than the last is still open;
- early retry: an attempt started before the previous one's finish plus its promised delay;
- live attempt declared LOST: a write closed attempt n as LOST while the invocation that claimed
  it (the worker write that added history entry n) was still running, more than the lease's
  rounding before its deadline (DESIGN §3: an attempt is taken over only once its claim's lease,
  the claimer's deadline, ran out);
- retry delay off the backoff: failed attempt n's `retryDelaySeconds` is not
  min(maxDelaySeconds, backoffBaseSeconds x 2^(n-1)), or, with jitter, not within [0, that]
  (DESIGN §3; computed here from the stack's policy, not by the functions' own helper);
- rejected request stored: a request answered 4xx wrote anything, or its task exists;
- 202 for a missing task: an accepted task that does not exist when the 202 is sent or after;
- finished task changed: a write that changes the record (what `GET` shows) of a COMPLETED or
  FAILED task, by anything but an operator's redrive (DESIGN §3: a duplicate or late message for
  a finished task changes nothing);
- unfinished task with a TTL: a write left a task that is neither COMPLETED nor FAILED with an
  `expiresAt` (DESIGN §3: TTL never removes an unfinished task);
- status index entry in the wrong group: a write left a PENDING, PROCESSING or RETRYING task
  outside the status index's OPEN group, a FAILED one outside FAILED, or a COMPLETED one in the
  index (`functions.store` moves the entry in the write that changes the status, so an
  operator's list of open or FAILED tasks misses none);
- FAILED with attempts left: no message in a campaign is poisonous (crashes are random, not tied
  to a message), so a task FAILED before its last attempt was failed by receives that were not
  attempts - outages, throttling, duplicates - which DESIGN §8 says must never fail a task;
- message of an unfinished task acknowledged: the worker let Lambda delete a main-queue message
  while its task was unfinished, without first sending another message of the task to the main
  queue (a retry's delayed copy) in that invocation (DESIGN §3: an unfinished task always has a
  message; the reconciler would hide such a bug, so it is checked where it happens);
- dead letter of an unfinished task acknowledged: the same for the dead-letter function and a
  DLQ message (one the main queue's redrive policy moved, or the worker's notice of a FAILED task
  that was not redriven since): deleted while its task was unfinished, without the invocation
  sending the task's message back to the main queue first;
- plus what the functions themselves promise never to do: an exception escaping the worker's or
  dead-letter function's handler, a 500 from the API, a valid submit refused with a 4xx;
- and a world that never settles (a message or task that cycles forever).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from functions.lifecycle import RECORD_FIELDS, TERMINAL_STATUSES, from_iso, to_iso
from functions.policy import TaskPolicy
from functions.store import STATUS_SHARD_ATTRIBUTE

if TYPE_CHECKING:
    from taskctl.chaos.lambdas import Invocation

_TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
# The status index's group of each status (None: not indexed), restated from what
# `functions.store` documents rather than taken from its code, which is what is checked.
_INDEX_GROUPS = {"PENDING": "OPEN", "PROCESSING": "OPEN", "RETRYING": "OPEN", "FAILED": "FAILED"}
# A claim's lease is its invocation's deadline in whole ms, and a claimer waiting in a call (while
# a nested delivery runs) learns only when the call returns that its time is up: within this of
# its deadline, its attempt may rightly be declared LOST.
LEASE_ROUNDING = timedelta(milliseconds=10)


class Kind(StrEnum):
    """What can break, in the order reports list them: DESIGN §8's promises first."""

    STRANDED = "stranded"
    ATTEMPTS_OVER_BUDGET = "attempts over budget"
    EXTRA_TERMINAL = "more terminal transitions than redrives allow"
    HISTORY_NUMBERING = "history not numbered 1..attempts"
    EARLY_RETRY = "retry started before its promised delay"
    BACKOFF_BROKEN = "retry delay off the backoff"
    LIVE_ATTEMPT_LOST = "live attempt declared LOST"
    REJECTED_STORED = "rejected request stored something"
    ACCEPTED_MISSING = "202 names no stored task"
    FAILED_EARLY = "FAILED with attempts left"
    FINISHED_CHANGED = "finished task changed"
    UNFINISHED_TTL = "unfinished task with a TTL"
    STATUS_INDEX_GROUP = "status index entry in the wrong group"
    UNFINISHED_ACKNOWLEDGED = "message of an unfinished task acknowledged"
    DEAD_LETTER_DROPPED = "dead letter of an unfinished task acknowledged"
    HANDLER_ERROR = "exception escaped a handler"
    API_BUG = "API answered 500"
    VALID_REFUSED = "valid submit refused"
    TASK_DELETED = "task record deleted"
    NOT_SETTLED = "world never settled"


@dataclass(frozen=True)
class Violation:
    """One broken promise: which, about which task (if any), what was seen, and the task's
    record at the end (for the report)."""

    kind: str
    detail: str
    task_id: str | None = None
    at: str | None = None  # simulated time it was seen (ISO), if seen during the run
    record: dict[str, Any] | None = None


@dataclass
class TaskWatch:
    """What the observer knows about one task."""

    status: str | None = None
    redrive_count: int = 0
    terminal_transitions: int = 0
    transitions: list[tuple[str, str | None, str]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # the public fields, as last written
    claimers: dict[int, Invocation] = field(default_factory=dict)  # attempt -> who claimed it


class Observer:
    """Fed every applied write (`on_write`), in order; keeps what the final check needs."""

    def __init__(
        self, clock: Callable[[], datetime], running: Callable[[], Collection[Invocation]]
    ) -> None:
        self._clock = clock
        self._running = running
        self.tasks: dict[str, TaskWatch] = {}
        self.unfinished = 0
        self.violations: list[Violation] = []

    def on_write(
        self, task_id: str, item: dict[str, Any] | None, invocation: Invocation | None
    ) -> None:
        """`item` as the write left it (None: deleted), written during `invocation`."""
        if not _TASK_ID.match(task_id):
            return  # the reconciler's cursor, not a task
        watch = self.tasks.setdefault(task_id, TaskWatch())
        writer = invocation.function if invocation is not None else None
        now = to_iso(self._clock())

        def broken(kind: str, detail: str, record: dict[str, Any] | None = None) -> None:
            self.violations.append(Violation(kind, detail, task_id, now, record))

        public = _public(item)
        if watch.status in TERMINAL and writer != "operator" and public != watch.record:
            changed = sorted(
                name
                for name in public.keys() | watch.record.keys()
                if public.get(name) != watch.record.get(name)
            )
            broken(
                Kind.FINISHED_CHANGED,
                f"the {writer} changed {', '.join(changed)} of the task while it was "
                f"{watch.status}",
                record=public,
            )
        before, watch.record = watch.record, public
        self._check_lost(watch, before.get("history") or [], invocation, broken)
        if item is None:
            broken(Kind.TASK_DELETED, "the record was deleted")
            self._set_status(watch, None)
            return
        status = item.get("status")
        if status != watch.status:
            watch.transitions.append((now, watch.status, str(status)))
            if status in TERMINAL and watch.status not in TERMINAL:
                watch.terminal_transitions += 1
        self._set_status(watch, status)
        watch.redrive_count = int(item.get("redriveCount") or 0)
        if status not in TERMINAL and "expiresAt" in item:
            broken(
                Kind.UNFINISHED_TTL, f"a write left the {status} task expiresAt={item['expiresAt']}"
            )
        group = str(item.get(STATUS_SHARD_ATTRIBUTE, "")).partition("#")[0] or None
        if group != _INDEX_GROUPS.get(status):
            broken(
                Kind.STATUS_INDEX_GROUP,
                f"a write left the {status} task in the status index's group {group}",
            )
        attempts = int(item.get("attempts", 0))
        if attempts > int(item.get("maxAttempts", 0)):
            broken(
                Kind.ATTEMPTS_OVER_BUDGET,
                f"a write left attempts={attempts} > maxAttempts={item['maxAttempts']}",
            )

    def _check_lost(
        self,
        watch: TaskWatch,
        before: list[dict[str, Any]],
        invocation: Invocation | None,
        broken: Callable[[str, str], None],
    ) -> None:
        """Each attempt this write closed as LOST: the worker invocation that claimed it must
        have ended, or be at its deadline. Then note who claimed the entry this write added, if
        it did (a claim is the only write adding one)."""
        history = watch.record.get("history") or []
        writer = invocation.function if invocation is not None else None
        now = self._clock()
        for index, entry in enumerate(history):
            already = index < len(before) and before[index].get("outcome") == "LOST"
            if entry.get("outcome") != "LOST" or already:
                continue
            claimer = watch.claimers.get(entry["attempt"])
            if claimer in self._running() and now < claimer.deadline - LEASE_ROUNDING:
                broken(
                    Kind.LIVE_ATTEMPT_LOST,
                    f"the {writer} closed attempt {entry['attempt']} as LOST while the worker "
                    f"that claimed it still ran, {(claimer.deadline - now).total_seconds():.3f} s "
                    "before its deadline",
                )
        if writer == "worker" and len(history) > len(before):
            watch.claimers[history[-1]["attempt"]] = invocation

    def _set_status(self, watch: TaskWatch, status: str | None) -> None:
        was_open = watch.status is not None and watch.status not in TERMINAL
        is_open = status is not None and status not in TERMINAL
        self.unfinished += int(is_open) - int(was_open)
        watch.status = status

    def failed(self, max_redrives: int) -> list[str]:
        """FAILED tasks redriven fewer than `max_redrives` times, in creation order."""
        return [
            task_id
            for task_id, watch in self.tasks.items()
            if watch.status == "FAILED" and watch.redrive_count < max_redrives
        ]


@dataclass
class Requests:
    """What the clients were told."""

    accepted: dict[str, str] = field(default_factory=dict)  # taskId -> first 202 (ISO)
    rejected_keys: list[str] = field(default_factory=list)  # tasks a 4xx must not have made
    violations: list[Violation] = field(default_factory=list)


def check(
    items: Iterable[tuple[str, dict[str, Any] | None]],
    observer: Observer,
    requests: Requests,
    policy: TaskPolicy,
) -> tuple[list[Violation], list[Violation]]:
    """(stranded tasks, violations) over every stored task and every request, under the
    stack's retry `policy`."""
    stranded: list[Violation] = []
    violations = list(observer.violations) + list(requests.violations)
    seen: set[str] = set()
    for task_id, item in items:
        if item is None or not _TASK_ID.match(task_id):
            continue
        seen.add(task_id)
        if item.get("status") not in TERMINAL:
            stranded.append(
                Violation(Kind.STRANDED, f"ended {item.get('status')}", task_id, record=shown(item))
            )
        violations += _check_record(task_id, item, observer.tasks.get(task_id), policy)
    for task_id, at in requests.accepted.items():
        if task_id not in seen:
            violations.append(
                Violation(Kind.ACCEPTED_MISSING, f"accepted at {at}, absent at the end", task_id)
            )
    for task_id in requests.rejected_keys:
        if task_id in seen:
            violations.append(
                Violation(Kind.REJECTED_STORED, "a rejected request's task exists", task_id)
            )
    return stranded, violations


def _check_record(
    task_id: str, item: dict[str, Any], watch: TaskWatch | None, policy: TaskPolicy
) -> list[Violation]:
    found: list[Violation] = []

    def broken(kind: str, detail: str) -> None:
        found.append(Violation(kind, detail, task_id, record=shown(item)))

    attempts, max_attempts = int(item.get("attempts", 0)), int(item.get("maxAttempts", 0))
    if attempts > max_attempts:
        broken(Kind.ATTEMPTS_OVER_BUDGET, f"attempts={attempts} > maxAttempts={max_attempts}")
    if item.get("status") == "FAILED" and attempts < max_attempts:
        broken(
            Kind.FAILED_EARLY,
            f"FAILED after {attempts} of {max_attempts} attempts: {item.get('lastError')}",
        )
    redrives = int(item.get("redriveCount") or 0)
    if watch is not None and watch.terminal_transitions > 1 + redrives:
        broken(
            Kind.EXTRA_TERMINAL,
            f"{watch.terminal_transitions} terminal transitions with redriveCount={redrives}: "
            + ", ".join(f"{at} {old}->{new}" for at, old, new in watch.transitions),
        )
    history = item.get("history") or []
    numbers = [entry.get("attempt") for entry in history]
    if numbers != list(range(1, attempts + 1)):
        broken(Kind.HISTORY_NUMBERING, f"attempts={attempts}, history numbers {numbers}")
    for entry in history:
        delay_s = entry.get("retryDelaySeconds")
        if delay_s is None:
            continue
        ceiling_s = min(
            policy.maxDelaySeconds, policy.backoffBaseSeconds * 2 ** (entry["attempt"] - 1)
        )
        if not (0 <= delay_s <= ceiling_s if policy.jitter else delay_s == ceiling_s):
            promise = f"in [0, {ceiling_s}]" if policy.jitter else f"{ceiling_s}"
            broken(
                Kind.BACKOFF_BROKEN,
                f"attempt {entry['attempt']} failed with retryDelaySeconds={delay_s}, "
                f"not {promise}",
            )
    for entry, following in pairwise(history):
        if entry.get("finishedAt") is None:
            broken(Kind.HISTORY_NUMBERING, f"attempt {entry.get('attempt')} never closed")
            continue
        promised = from_iso(entry["finishedAt"]) + timedelta(
            seconds=entry.get("retryDelaySeconds") or 0
        )
        started = from_iso(following["startedAt"])
        if started < promised:
            broken(
                Kind.EARLY_RETRY,
                f"attempt {following.get('attempt')} started {following['startedAt']}, "
                f"{(promised - started).total_seconds():.3f} s before attempt "
                f"{entry.get('attempt')}'s finish + {entry.get('retryDelaySeconds') or 0} s",
            )
    return found


def _public(item: dict[str, Any] | None) -> dict[str, Any]:
    """What `GET /tasks/{taskId}` shows of an item: internal attributes (the write token, the
    check schedule, the lease) may change on a finished task, the record may not."""
    return {name: value for name, value in (item or {}).items() if name in RECORD_FIELDS}


def shown(item: dict[str, Any]) -> dict[str, Any]:
    """The record as a report shows it (the write token is noise)."""
    return {name: value for name, value in item.items() if name != "writeToken"}
