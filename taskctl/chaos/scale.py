"""`taskctl chaos --scale`: the main queue at 10 to 1,000+ submits per second, in simulated time.

The fault campaign runs the real handlers over moto, a few dozen tasks a second on this machine.
At a thousand a second what matters is the queue's in-flight quota, so this mode models the queue
and the worker instead, second by second on a `SimClock`:

- `QuotaQueue`: a standard queue's messages as counts (visible, delayed until a second, hidden
  in flight until a second). ReceiveMessage fails with `OverLimit` while the in-flight count is
  at the quota (SQS's ~120,000), and the whole queue stalls: new tasks too.
- The worker, as the event source mapping runs it: at most `workerMaxConcurrency` batches at once
  (ramping up from 5 by 300 a minute), each record taking the capacity model's record time. A
  received message counts as in flight for the whole second it is received in (an upper bound:
  a batch takes less). Each attempt fails for an ERROR task, and with the stack's errorRate for
  any other; a failed attempt that is not the last waits `lifecycle.backoff_ceiling_s` (spread
  uniformly over [0, that] with jitter) - as a delayed re-send (what the worker does since
  issue 13, `DELAYED`) or hidden in flight by ChangeMessageVisibility (the design before it,
  `IN_FLIGHT`).
- Sampled task records: one task in `sample_every` is followed in full, its attempts decided by
  the real `lifecycle.simulate_work` and `lifecycle.decide_after_attempt`; the rest are counts.
  The sampled tasks are checked: each ends (when the run settles), within its attempts, and no
  retry starts before its promised time.

The same run is made for both designs, so one command shows the ratio of their peaks.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from functions.lifecycle import (
    ALWAYS_FAILS,
    Completed,
    FailedForGood,
    RetryLater,
    backoff_ceiling_s,
    decide_after_attempt,
    longest_retry_wait_s,
    simulate_work,
)
from functions.settings import StackSettings
from taskctl.capacity.assumptions import Assumptions
from taskctl.capacity.quotas import Quotas
from taskctl.chaos.clock import SimClock

Design = Literal["delayed", "in-flight"]
DELAYED: Design = "delayed"  # since issue 13: a retry wait is a delayed re-send
IN_FLIGHT: Design = "in-flight"  # before it: the wait is kept in flight (ChangeMessageVisibility)
ORDINARY_MESSAGE = "scale task"  # fails an attempt with the stack's errorRate
SETTLE_MARGIN_S = 120  # after the last submit: the longest retry wait plus this

# A group of messages: (always fails, the attempt its next delivery starts).
Key = tuple[bool, int]


class OverLimit(Exception):
    """ReceiveMessage while the queue's in-flight messages are at its quota."""


class QuotaQueue:
    """A standard queue as counts of messages by `Key`; time is whole seconds."""

    def __init__(self, in_flight_quota: int) -> None:
        self.quota = in_flight_quota
        self.visible: Counter[Key] = Counter()
        self.delayed: dict[int, Counter[Key]] = {}  # due second -> messages
        self.hidden: dict[int, Counter[Key]] = {}  # visible again at second -> in flight
        self.delayed_count = 0
        self.hidden_count = 0

    @property
    def visible_count(self) -> int:
        return self.visible.total()

    @property
    def empty(self) -> bool:
        return not (self.visible_count or self.delayed_count or self.hidden_count)

    def send(self, key: Key, count: int, due_s: int, now_s: int) -> None:
        """SendMessage with DelaySeconds: visible at `due_s`, not in flight meanwhile."""
        if due_s <= now_s:
            self.visible[key] += count
        else:
            self.delayed.setdefault(due_s, Counter())[key] += count
            self.delayed_count += count

    def hide(self, key: Key, count: int, until_s: int) -> None:
        """ChangeMessageVisibility on received messages: in flight until `until_s`."""
        self.hidden.setdefault(until_s, Counter())[key] += count
        self.hidden_count += count

    def release(self, now_s: int) -> None:
        """Delays and visibility timeouts that end at `now_s`."""
        delayed, hidden = self.delayed.pop(now_s, Counter()), self.hidden.pop(now_s, Counter())
        self.visible.update(delayed)
        self.visible.update(hidden)
        self.delayed_count -= delayed.total()
        self.hidden_count -= hidden.total()

    def receive(self, wanted: int, in_flight_now: int) -> Counter[Key]:
        """Up to `wanted` visible messages, spread over the groups in proportion to their size.
        `in_flight_now` counts those received earlier this second as well as the hidden ones."""
        if in_flight_now >= self.quota:
            raise OverLimit(f"{in_flight_now} messages in flight (quota {self.quota})")
        total = self.visible_count
        take = min(wanted, total, self.quota - in_flight_now)
        if take <= 0:
            return Counter()
        shares = {key: take * count / total for key, count in self.visible.items() if count}
        got = Counter({key: int(share) for key, share in shares.items()})
        by_remainder = sorted(shares, key=lambda k: shares[k] - int(shares[k]), reverse=True)
        got.update(by_remainder[: take - got.total()])  # the largest remainders: one more
        self.visible.subtract(got)
        self.visible = +self.visible  # drop the groups now empty
        return got


@dataclass
class SampledTask:
    """One task followed in full."""

    number: int
    always_fails: bool
    attempts: int = 0
    status: str = "PENDING"
    due_s: int = 0  # the earliest second its next attempt may start (the promise)
    early_starts: list[int] = field(default_factory=list)  # seconds a retry started too soon


@dataclass(frozen=True, kw_only=True)
class ScaleConfig:
    settings: StackSettings
    rate_per_s: float
    duration_s: int
    error_share: float = 1.0  # tasks whose message is ERROR; the others fail with errorRate
    worker_concurrency: int | None = None  # default: the stack's workerMaxConcurrency
    worker_record_ms: float = Assumptions.worker_record_ms
    quotas: Quotas = field(default_factory=Quotas.load)
    sample_every: int = 1000
    seed: int = 1

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or self.settings.workerMaxConcurrency

    @property
    def horizon_s(self) -> int:
        """The last simulated second: submits stop at `duration_s`, the rest settles."""
        return self.duration_s + longest_retry_wait_s(self.settings.policy) + SETTLE_MARGIN_S


@dataclass
class ScaleResult:
    design: Design
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    peak_in_flight: int = 0
    peak_delayed: int = 0
    peak_backlog: int = 0
    stalled_s: int = 0  # seconds in which the in-flight quota held back messages to receive
    over_limit_receives: int = 0  # seconds in which ReceiveMessage failed with OverLimit
    first_stall_s: int | None = None
    simulated_s: int = 0
    settled: bool = False
    sampled: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> int:
        return self.submitted - self.completed - self.failed

    def to_json(self) -> dict:
        return {
            "design": self.design,
            "submitted": self.submitted,
            "completed": self.completed,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "peakInFlight": self.peak_in_flight,
            "peakDelayed": self.peak_delayed,
            "peakBacklog": self.peak_backlog,
            "stalledSeconds": self.stalled_s,
            "overLimitReceives": self.over_limit_receives,
            "firstStallSecond": self.first_stall_s,
            "simulatedSeconds": self.simulated_s,
            "settled": self.settled,
            "sampledTasks": self.sampled,
            "violations": self.violations,
        }


def run_scale(config: ScaleConfig, design: Design) -> ScaleResult:
    return _Run(config, design).run()


class _Run:
    def __init__(self, config: ScaleConfig, design: Design) -> None:
        self.config = config
        self.design = design
        self.policy = config.settings.policy
        self.rng = random.Random(config.seed)
        self.clock = SimClock()
        self.queue = QuotaQueue(config.quotas.sqs_in_flight)
        self.result = ScaleResult(design=design)
        # Sampled tasks ride on counted messages: visible ones by group, waiting ones by second.
        self.sampled_visible: dict[Key, list[SampledTask]] = {}
        self.sampled_waiting: dict[int, list[tuple[Key, SampledTask]]] = {}
        self.sampled: list[SampledTask] = []
        self.failure_carry: dict[Key, float] = {}
        self.error_carry = 0.0

    def run(self) -> ScaleResult:
        config, result = self.config, self.result
        record_s = config.worker_record_ms / 1000.0
        quotas = config.quotas
        for now_s in range(config.horizon_s + 1):
            if now_s < config.duration_s:
                self._submit(now_s)
            self.queue.release(now_s)
            for key, task in self.sampled_waiting.pop(now_s, []):
                self.sampled_visible.setdefault(key, []).append(task)
            # The mapping's batches ramp up from 5 by 300 a minute, to the configured maximum.
            batches = min(
                config.concurrency,
                quotas.esm_initial_batches + quotas.esm_scale_up_per_min * now_s // 60,
            )
            wanted = math.floor(batches / record_s)  # records one second of workers gets through
            visible_before = Counter(self.queue.visible)
            if self.queue.quota - self.queue.hidden_count < min(wanted, visible_before.total()):
                # The quota, not the workers, decides what is received: messages wait behind it.
                result.stalled_s += 1
                if result.first_stall_s is None:
                    result.first_stall_s = now_s
            try:
                received = self.queue.receive(wanted, self.queue.hidden_count)
            except OverLimit:
                result.over_limit_receives += 1
                received = Counter()
            result.peak_in_flight = max(
                result.peak_in_flight, self.queue.hidden_count + received.total()
            )
            for key, count in received.items():
                self._attempt(key, count, visible_before[key], now_s)
            result.peak_delayed = max(result.peak_delayed, self.queue.delayed_count)
            result.peak_backlog = max(result.peak_backlog, self.queue.visible_count)
            result.simulated_s = now_s
            if now_s >= config.duration_s and self.queue.empty:
                result.settled = True
                break
        self._check_sampled()
        return result

    def _submit(self, now_s: int) -> None:
        config = self.config
        arrivals = math.floor(config.rate_per_s * (now_s + 1)) - math.floor(
            config.rate_per_s * now_s
        )
        errors = math.floor(arrivals * config.error_share + self.error_carry)
        self.error_carry += arrivals * config.error_share - errors
        for always_fails, count in ((True, errors), (False, arrivals - errors)):
            if not count:
                continue
            key = (always_fails, 1)
            self.queue.send(key, count, now_s, now_s)
            first = self.result.submitted + 1
            self.result.submitted += count
            # The multiples of sample_every among the numbers first..submitted, not every number.
            every = config.sample_every
            for number in range(-(-first // every) * every, self.result.submitted + 1, every):
                task = SampledTask(number=number, always_fails=always_fails, due_s=now_s)
                self.sampled.append(task)
                self.sampled_visible.setdefault(key, []).append(task)

    def _attempt(self, key: Key, count: int, visible: int, now_s: int) -> None:
        """`count` of the `visible` messages of group `key` were received and run their attempt;
        record what comes of them."""
        always_fails, attempt = key
        last = attempt >= self.policy.maxAttempts
        # Each sampled task among the visible ones was received with probability count/visible;
        # those decide their own fate, the counted rest follow the group's failure rate.
        # One draw per candidate, in order; the first `count` hits are received. Split by
        # position, not by `task not in chosen` (dataclass equality, all against all, each
        # second): this runs for every waiting sampled task every second.
        candidates = self.sampled_visible.get(key, [])
        draw, share = self.rng.random, count / visible
        hits = set([index for index in range(len(candidates)) if draw() < share][:count])
        chosen = [task for index, task in enumerate(candidates) if index in hits]
        if hits:
            left = [task for index, task in enumerate(candidates) if index not in hits]
            self.sampled_visible[key] = left
        waits: Counter[int] = Counter()  # wait in seconds -> failed deliveries to retry
        failures = 0
        for task in chosen:
            wait = self._sampled_attempt(task, attempt, now_s)
            if wait is not None:
                failures += 1
                if not last:
                    waits[wait] += 1
                    self.sampled_waiting.setdefault(now_s + 1 + wait, []).append(
                        ((always_fails, attempt + 1), task)
                    )
            elif task.status == "FAILED":
                failures += 1
        counted = count - len(chosen)
        p = 1.0 if always_fails else self.policy.errorRate
        counted_failures = math.floor(counted * p + self.failure_carry.get(key, 0.0))
        self.failure_carry[key] = self.failure_carry.get(key, 0.0) + counted * p - counted_failures
        failures += counted_failures
        self.result.completed += count - failures
        if last:
            self.result.failed += failures  # FAILED; the worker dead-letters and acknowledges
            return
        self._spread(waits, counted_failures, attempt)
        retry = (always_fails, attempt + 1)
        for wait, retried in waits.items():
            due_s = now_s + 1 + wait
            if self.design == DELAYED:
                self.queue.send(retry, retried, due_s, now_s)
            else:
                self.queue.hide(retry, retried, due_s)

    def _spread(self, waits: Counter[int], failures: int, attempt: int) -> None:
        """The counted failures' waits: the ceiling, or uniform over [0, ceiling] with jitter."""
        ceiling = backoff_ceiling_s(attempt, self.policy)
        if not self.policy.jitter:
            waits[ceiling] += failures
            return
        each, rest = divmod(failures, ceiling + 1)
        if each:
            for wait in range(ceiling + 1):
                waits[wait] += each
        for wait in self.rng.sample(range(ceiling + 1), rest):
            waits[wait] += 1

    def _sampled_attempt(self, task: SampledTask, attempt: int, now_s: int) -> int | None:
        """Run a sampled task's attempt with the real lifecycle; its retry wait, or None."""
        if now_s < task.due_s:
            task.early_starts.append(now_s)
        task.attempts = attempt
        now = self.clock.at(now_s)
        message = ALWAYS_FAILS if task.always_fails else ORDINARY_MESSAGE
        work = simulate_work(message, self.policy.errorRate, self.rng)
        decision = decide_after_attempt(
            attempt, self.policy.maxAttempts, work, self.policy, self.rng, now
        )
        match decision:
            case Completed():
                task.status = "COMPLETED"
                return None
            case FailedForGood():
                task.status = "FAILED"
                return None
            case RetryLater(retry_delay_s=wait):
                task.status = "RETRYING"
                task.due_s = now_s + wait
                return wait
        raise AssertionError(f"unplanned decision {decision!r}")

    def _check_sampled(self) -> None:
        result = self.result
        result.sampled = len(self.sampled)
        for task in self.sampled:
            if task.attempts > self.policy.maxAttempts:
                result.violations.append(
                    f"sampled task {task.number}: {task.attempts} attempts, more than "
                    f"{self.policy.maxAttempts}"
                )
            if task.early_starts:
                result.violations.append(
                    f"sampled task {task.number}: a retry started at second "
                    f"{task.early_starts[0]}, before its promised time"
                )
            if result.settled and task.status not in ("COMPLETED", "FAILED"):
                result.violations.append(
                    f"sampled task {task.number}: {task.status} after the queue settled"
                )


# -- the command: `python -m taskctl chaos --scale` ---------------------------------------------


@dataclass(frozen=True)
class ScaleReport:
    config: ScaleConfig
    stack: str
    ours: ScaleResult
    old: ScaleResult

    @property
    def passed(self) -> bool:
        """This design never held messages back at the quota, and the sampled tasks held."""
        return self.ours.stalled_s == 0 and not self.ours.violations

    @property
    def in_flight_ratio(self) -> float:
        return self.old.peak_in_flight / max(1, self.ours.peak_in_flight)

    def to_json(self) -> dict:
        config = self.config
        return {
            "stack": self.stack,
            "ratePerSecond": config.rate_per_s,
            "durationSeconds": config.duration_s,
            "errorShare": config.error_share,
            "workerConcurrency": config.concurrency,
            "workerRecordMs": config.worker_record_ms,
            "inFlightQuota": config.quotas.sqs_in_flight,
            "sampleEvery": config.sample_every,
            "seed": config.seed,
            "designs": {DELAYED: self.ours.to_json(), IN_FLIGHT: self.old.to_json()},
            "peakInFlightRatioOldToOurs": self.in_flight_ratio,
            "passed": self.passed,
        }


def scale_report(config: ScaleConfig, stack: str) -> ScaleReport:
    """Both designs over the same run."""
    return ScaleReport(config, stack, run_scale(config, DELAYED), run_scale(config, IN_FLIGHT))


def print_scale_report(report: ScaleReport, console) -> None:  # a rich Console
    from rich.console import Console
    from rich.table import Column, Table

    if not console.is_terminal:  # piped or logged: wide enough for the table to stay readable
        console = Console(highlight=False, width=max(console.width, 110))
    config = report.config
    settings = config.settings
    console.print(
        f"Scale run, stack {report.stack}: {config.rate_per_s:,.0f} submits/s for "
        f"{config.duration_s} simulated s, {config.error_share:.0%} of them ERROR (the rest fail "
        f"an attempt with p={settings.errorRate:g}); maxAttempts {settings.maxAttempts}, backoff "
        f"base {settings.backoffBaseSeconds} s{' with jitter' if settings.jitter else ''}; "
        f"{config.concurrency} concurrent worker batches of {settings.workerBatchSize}, "
        f"{config.worker_record_ms:g} ms a record; in-flight quota "
        f"{config.quotas.sqs_in_flight:,}; 1 task in {config.sample_every} followed in full."
    )
    designs = ("retry waits as delayed re-sends (now)", "waits kept in flight (before #13)")
    columns = [Column(label, justify="right") for label in designs]
    table = Table("", *columns, title="Main queue, per design", title_justify="left")
    ours, old = report.ours, report.old

    def row(label: str, value) -> None:
        table.add_row(label, *(str(value(result)) for result in (ours, old)))

    row("peak in flight", lambda r: f"{r.peak_in_flight:,}")
    row("peak delayed (not in flight)", lambda r: f"{r.peak_delayed:,}")
    row("peak visible backlog", lambda r: f"{r.peak_backlog:,}")
    row(
        "seconds held back by the quota",
        lambda r: f"[red]{r.stalled_s}[/] (from second {r.first_stall_s})" if r.stalled_s else "0",
    )
    row("submitted", lambda r: f"{r.submitted:,}")
    row("COMPLETED / FAILED", lambda r: f"{r.completed:,} / {r.failed:,}")
    row("unfinished at the end", lambda r: f"{r.unfinished:,}")
    row("settled (queue empty)", lambda r: "yes" if r.settled else f"no, at {r.simulated_s} s")
    row("sampled tasks / violations", lambda r: f"{r.sampled} / {len(r.violations)}")
    console.print(table)
    for violation in ours.violations[:5]:
        console.print(f"[red]violation[/] {violation}")
    console.print(
        f"The old design held {report.in_flight_ratio:,.1f}x as many messages in flight "
        f"({old.peak_in_flight:,} against {ours.peak_in_flight:,})"
        + (
            f" and stalled for {old.stalled_s} s."
            if old.stalled_s
            else f", {old.peak_in_flight / config.quotas.sqs_in_flight:.0%} of the quota."
        )
    )
    if not ours.settled:
        console.print(
            "[yellow]Behind[/]: the workers did not keep up with this rate (see "
            "`taskctl capacity` for the workerMaxConcurrency it needs)."
        )
    if report.passed:
        console.print("[green]Passed[/]: the queue never stalled at the in-flight quota.")
    else:
        console.print("[red]Check failed[/]: the queue stalled or a sampled task broke a rule.")
