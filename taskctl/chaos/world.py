"""One world: the whole stack in one process, driven by a discrete event loop on simulated time.

A world is one DynamoDB table (moto), a main queue and its DLQ (simulated), the four functions
with their own runtimes (clients, clock, seeded random source), clients submitting tasks through
the API, the two event source mappings, the reconciler's schedule and an operator redriving FAILED
tasks. Its timeline, all drawn from the seed: cycles of normal operation and a DynamoDB outage
longer than `maxReceiveCount x visibility timeout`, then a last stretch of normal operation; faults
are injected until then. Then time runs on, without faults, until nothing can move any more (every
task finished, both queues empty, no client waiting) or `SETTLE_MAX_S` has passed, and the
invariants are checked.

The loop takes, in simulated time order, the next timed event (a client's request, a reconciler
run, an outage starting or ending, an operator's redrive) or the moment the next message becomes
visible in a queue (the mapping polls then). Handlers run one at a time; time passes inside them
through the AWS calls' latency, the SDK's retry backoff and faults, so an event may start later
than its time, never earlier.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import botocore.endpoint
from botocore.retries import standard
from moto import mock_aws

from functions import api, callers, dead_letter, reconciler, worker
from functions.lifecycle import ALWAYS_FAILS, ALWAYS_SUCCEEDS, MESSAGE_MAX_CHARS, to_iso
from functions.queue import REASON_ATTRIBUTE
from functions.runtime import CLIENT_CONFIG, FunctionSettings, Runtime
from functions.settings import StackSettings
from taskctl.chaos.clock import SimClock
from taskctl.chaos.dynamodb import SimTable, create_table
from taskctl.chaos.events import Events
from taskctl.chaos.faults import FaultKind, FaultRates, Faults, Transport, task_of
from taskctl.chaos.invariants import TERMINAL, Kind, Observer, Requests, Violation, check, shown
from taskctl.chaos.lambdas import (
    Crash,
    Invocation,
    Lambdas,
    Outcome,
    own_batch_processor,
    quiet_functions,
)
from taskctl.chaos.sqs import EventSourceMapping, Received, SimQueue, SimSqs
from taskctl.chaos.wire import ACCOUNT, REGION, offline_aws_environment
from taskctl.ops.redrive import redrive_task

TABLE_NAME = "chaos-tasks"
MAIN_QUEUE = "chaos-tasks"
DEAD_LETTER_QUEUE = "chaos-tasks-dlq"
FUNCTIONS = ("api", "worker", "dead-letter", "reconciler", "operator")

GAP_S = (300.0, 900.0)  # normal operation before each outage: 5 to 15 minutes
OUTAGE_STRETCH = (1.05, 1.35)  # outage length / (maxReceiveCount x visibility timeout)
FINAL_GAP_S = 1_800.0  # normal operation after the last outage, faults still on
SETTLE_MAX_S = 12 * 3_600.0  # after the faults stop, at most this long for everything to settle
CLUSTER_MEAN = 6  # clients submit in bursts of this many on average...
CLUSTER_SPREAD_S = 20.0  # ...within this many seconds
IN_NORMAL_TIME = 0.9  # share of bursts that start outside an outage
REJECTED_SHARE = 0.04  # invalid requests, on top of the tasks
CLIENT_MAX_TRIES = 10  # with the backoff below, a client keeps trying for about 10 minutes
CLIENT_BACKOFF_CAP_S = 120.0
OPERATOR_TIMEOUT_S = 300  # an operator's command is not a Lambda function; it is patient
MAX_REDRIVES_PER_TASK = 2
REDRIVE_INTERRUPTED = 0.3  # share of redrives killed between their write and their enqueue
REDRIVE_RACED = 0.15  # share raced by a second operator redriving the same task
INDEX_LAG_S = (0.0, 1.0)  # GSI replication: usually well under a second...
INDEX_LAG_SLOW = (0.02, (1.0, 15.0))  # ...sometimes seconds
EVENTS_PER_TASK_LIMIT = 400  # a runaway loop (a message that never settles) stops the world
RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/chaos-reconcile"
# The mix of messages: always succeeds, always fails, or fails each attempt with errorRate.
ALWAYS_SUCCEEDS_SHARE = 0.3
ALWAYS_FAILS_SHARE = 0.15
JSON = "application/json"
# Requests the API must refuse (4xx) and store nothing for.
_INVALID_REQUESTS = (
    (JSON, "{not json"),
    (JSON, ""),
    (JSON, '{"message": ""}'),
    (JSON, '[{"message": "SUCCESS"}]'),
    (JSON, '{"message": "SUCCESS", "priority": 1}'),
    (JSON, json.dumps({"message": "x" * (MESSAGE_MAX_CHARS + 1)})),
    ("text/plain", '{"message": "SUCCESS"}'),
)


@dataclass(frozen=True)
class WorldPlan:
    """What one world runs: `tasks` valid submits (plus a few invalid ones), `outages` outage
    windows, `redrives` operator redrives, under `settings` (a validated stack)."""

    index: int
    seed: int
    tasks: int
    settings: StackSettings
    stack: str
    outages: int
    redrives: int
    rates: FaultRates = field(default_factory=FaultRates)
    reconciler: bool = True  # off only to show that the checker notices what it would fix
    lose_messages: int = 0  # the API's first sends, deleted by hand at once (same purpose)

    @property
    def requests(self) -> int:
        """Client requests the world makes: the tasks and the invalid ones."""
        return self.tasks + round(self.tasks * REJECTED_SHARE)


@dataclass
class WorldReport:
    """What one world did and found (plain data: it crosses process boundaries)."""

    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    gave_up: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    fault_details: dict[str, int] = field(default_factory=dict)
    stranded: list[Violation] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    invocations: dict[str, int] = field(default_factory=dict)
    deaths: dict[str, int] = field(default_factory=dict)
    aws_attempts: int = 0
    outage_refusals: int = 0
    reconciler_recoveries: int = 0
    dead_letter_moves: int = 0
    messages_left: int = 0
    delayed_sends: int = 0  # messages sent to the main queue with DelaySeconds
    peak_in_flight: int = 0  # the main queue's in-flight messages at their most
    simulated_s: float = 0.0
    settled: bool = False
    digest: str = ""


@dataclass
class _ClientRequest:
    key: str
    body: str
    content_type: str
    valid: bool
    tries: int = 0


class World:
    """Build, run and check one world (`run`). `progress(n)` is told of each client request that
    got its final answer."""

    def __init__(self, plan: WorldPlan, progress: Callable[[int], None] | None = None) -> None:
        self.plan = plan
        self.settings = plan.settings
        self._progress = progress or (lambda _n: None)
        self._seed = f"taskctl-chaos:{plan.seed}:{plan.index}"
        self._events: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._clients_waiting = 0
        self.report = WorldReport()
        self.requests = Requests()

    # -- running

    def run(self) -> WorldReport:
        with offline_aws_environment(), mock_aws(), quiet_functions():
            self._build()
            with mock.patch.object(
                botocore.endpoint, "time", SimpleNamespace(sleep=self.lambdas.sleep)
            ):
                self._schedule()
                self._loop()
            self._finish()
        return self.report

    def _random(self, stream: str) -> random.Random:
        """An independent seeded stream, so one part drawing more does not shift the others."""
        return random.Random(f"{self._seed}:{stream}")

    def _build(self) -> None:
        settings = self.settings
        self.clock = SimClock()
        ids = self._random("ids")
        self.new_id = lambda: str(uuid.UUID(int=ids.getrandbits(128), version=4))
        self.rng = self._random("world")
        self.lambdas = Lambdas(self.clock, self.new_id)
        self.observer = Observer(self.clock, lambda: self.lambdas.running)
        self.events = Events()
        session = boto3.Session()  # the fake credentials and region run() puts in the environment
        create_table(session.client("dynamodb"), TABLE_NAME)
        lag = self._random("index-lag")
        self.table = SimTable(
            TABLE_NAME,
            self.clock,
            partial(_index_lag_s, lag),
            self._on_write,
            unprocessed=lambda keys: self.faults.unprocessed_keys(keys, self.lambdas.current),
        )
        self.sqs = SimSqs(self.clock)
        self.dead_letter_queue = self.sqs.create_queue(
            DEAD_LETTER_QUEUE,
            visibility_timeout_s=settings.visibility_timeout_s,
            new_id=self.new_id,
        )
        self.main_queue = self.sqs.create_queue(
            MAIN_QUEUE,
            visibility_timeout_s=settings.visibility_timeout_s,
            new_id=self.new_id,
            dead_letter=self.dead_letter_queue,
            max_receive_count=settings.max_receive_count,
        )
        self.faults = Faults(self._random("faults"), self.plan.rates)
        self.transport = Transport(
            clock=self.clock,
            rng=self._random("network"),
            faults=self.faults,
            lambdas=self.lambdas,
            table=self.table,
            sqs=self.sqs,
            on_duplicate=self._run_twice,
        )
        function_settings = FunctionSettings(
            policy=settings.policy,
            table_name=TABLE_NAME,
            queue_url=self.main_queue.url,
            dead_letter_queue_url=self.dead_letter_queue.url,
            stack=self.plan.stack,
            # Its events come without a verified token: it runs the pipeline behind API
            # Gateway, whose authorizer (and its 401/403) is not what it exercises.
            api_auth="none",
        )
        client = self._client_factory(session)
        self.runtimes = {
            name: Runtime(
                function_settings,
                clock=self.clock,
                rng=self._random(f"runtime:{name}"),
                session=session,
                client_factory=client,
            )
            for name in FUNCTIONS
        }
        self.worker_mapping = EventSourceMapping(
            self.main_queue,
            settings.workerBatchSize,
            partial(self._invoke_batch, "worker", worker, self.main_queue),
            partial(self._acknowledged, Kind.UNFINISHED_ACKNOWLEDGED),
        )
        self.dead_letter_mapping = EventSourceMapping(
            self.dead_letter_queue,
            settings.workerBatchSize,
            partial(self._invoke_batch, "dead-letter", dead_letter, self.dead_letter_queue),
            partial(self._acknowledged, Kind.DEAD_LETTER_DROPPED),
        )
        if self.plan.lose_messages:
            self._lose_sent_messages(self.plan.lose_messages)

    def _client_factory(self, session: boto3.Session) -> Callable[[str], Any]:
        """The functions' clients: the deployed client config, retry jitter from the world's
        seed, requests to the transport."""
        backoff = self._random("sdk-backoff")
        seeded_backoff = partial(standard.ExponentialBackoff, random=backoff.random)

        def client(service: str) -> Any:
            with mock.patch.object(standard, "ExponentialBackoff", seeded_backoff):
                made = session.client(service, config=CLIENT_CONFIG)
            self.transport.attach(made)
            return made

        return client

    def _at(self, offset_s: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.clock.at(offset_s), next(self._seq), action))

    def _schedule(self) -> None:
        settings = self.settings
        timeline = self._random("timeline")
        outage_floor_s = settings.max_receive_count * settings.visibility_timeout_s
        normal: list[tuple[float, float]] = []
        offset = 0.0
        self.faults.active = True
        for _ in range(self.plan.outages):
            gap = timeline.uniform(*GAP_S)
            normal.append((offset, offset + gap))
            offset += gap
            length = outage_floor_s * timeline.uniform(*OUTAGE_STRETCH)
            self._at(offset, partial(self._outage, True))
            self._at(offset + length, partial(self._outage, False))
            offset += length
        normal.append((offset, offset + FINAL_GAP_S))
        self.faults_end_s = offset + FINAL_GAP_S
        self._at(self.faults_end_s, self._faults_stop)
        for at, request in self._client_requests(timeline, normal):
            self._clients_waiting += 1
            self._at(at, partial(self._submit, request))
        # Operators redrive outside outages (during one, their command just fails), once some
        # tasks have FAILED.
        later = [(max(start, 0.1 * self.faults_end_s), end) for start, end in normal]
        later = [(start, end) for start, end in later if end > start]
        for _ in range(self.plan.redrives):
            self._at(_moment_in(timeline, later), self._redrive)
        self._at(self._tick_s(1), partial(self._tick, 1))

    def _client_requests(
        self, timeline: random.Random, normal: list[tuple[float, float]]
    ) -> Iterator[tuple[float, _ClientRequest]]:
        """Valid and invalid submits at their first send time, in bursts."""
        requests = [
            _ClientRequest(
                self.new_id(), json.dumps({"message": _message(n, timeline)}), JSON, True
            )
            for n in range(self.plan.tasks)
        ]
        for _ in range(self.plan.requests - self.plan.tasks):
            content_type, body = timeline.choice(_INVALID_REQUESTS)
            requests.append(_ClientRequest(self.new_id(), body, content_type, False))
        timeline.shuffle(requests)
        times: list[float] = []
        while len(times) < len(requests):
            if timeline.random() < IN_NORMAL_TIME:
                burst_at = _moment_in(timeline, normal)
            else:
                burst_at = timeline.uniform(0.0, self.faults_end_s)
            size = 1 + int(timeline.expovariate(1 / (CLUSTER_MEAN - 1)))
            times += [burst_at + timeline.uniform(0.0, CLUSTER_SPREAD_S) for _ in range(size)]
        self.report.requests = len(requests)
        yield from zip(sorted(times[: len(requests)]), requests, strict=True)

    def _tick_s(self, number: int) -> float:
        return number * self.settings.reconcileIntervalMinutes * 60.0

    def _loop(self) -> None:
        end = self.clock.at(self.faults_end_s + SETTLE_MAX_S)
        budget = EVENTS_PER_TASK_LIMIT * (self.report.requests + 1) + 10 * int(
            (self.faults_end_s + SETTLE_MAX_S) / self._tick_s(1)
        )
        for _ in range(budget):
            if self.report.settled:
                return
            next_main = self.main_queue.next_visible_at()
            next_dead_letter = self.dead_letter_queue.next_visible_at()
            next_event = self._events[0][0] if self._events else None
            moments = [t for t in (next_main, next_dead_letter, next_event) if t is not None]
            if not moments or min(moments) > end:
                return
            moment = min(moments)
            self.clock.advance_to(moment)
            if moment == next_main:
                self.worker_mapping.poll(self.clock())
            elif moment == next_dead_letter:
                self.dead_letter_mapping.poll(self.clock())
            else:
                heapq.heappop(self._events)[2]()
        self._violation(
            Kind.NOT_SETTLED, f"still busy after {budget} events (a message or task cycles forever)"
        )

    # -- timed events

    def _outage(self, begins: bool) -> None:
        self.faults.outage = begins
        if begins:
            self.faults.count(FaultKind.OUTAGE)

    def _faults_stop(self) -> None:
        self.faults.active = False  # from now on the world only settles

    def _tick(self, number: int) -> None:
        if self.plan.reconciler:
            self._reconcile()
        if not self.faults.active and self._quiet():
            self.report.settled = True  # the loop stops
            return
        self._at(self._tick_s(number + 1), partial(self._tick, number + 1))

    def _reconcile(self) -> None:
        event = Events.scheduled(self.clock(), RULE_ARN, self.new_id())
        outcome = self.lambdas.invoke(
            "reconciler",
            reconciler.handler,
            event,
            self.runtimes["reconciler"],
            self.settings.functionTimeoutSeconds,
        )
        if outcome.returned:
            self.report.reconciler_recoveries += int(outcome.result.get("recovered", 0))

    def _quiet(self) -> bool:
        """Nothing can change any more: no unfinished task, no message, no waiting client."""
        return (
            self.observer.unfinished == 0
            and len(self.main_queue) == 0
            and len(self.dead_letter_queue) == 0
            and self._clients_waiting == 0
        )

    def _submit(self, request: _ClientRequest) -> None:
        """One try of a client's POST /tasks; a 5xx (or 409 "in progress") is tried again later
        with the same Idempotency-Key."""
        request.tries += 1
        now = self.clock()
        event = self.events.http(
            "POST",
            "/tasks",
            body=request.body,
            headers={"content-type": request.content_type, "idempotency-key": request.key},
            now=now,
            request_id=self.new_id(),
        )
        outcome = self.lambdas.invoke(
            "api", api.handler, event, self.runtimes["api"], self.settings.apiTimeoutSeconds
        )
        invocation = self.lambdas.last
        assert invocation is not None
        status = int(outcome.result["statusCode"]) if outcome.returned else 502
        if outcome.error is not None:
            self._violation(Kind.HANDLER_ERROR, f"api: {outcome.error!r}")
        if status == 500:
            self._violation(Kind.API_BUG, f"POST /tasks answered 500: {outcome.result.get('body')}")
        if status == 202:
            task_id = json.loads(outcome.result["body"])["taskId"]
            if not request.valid:
                self._violation(
                    Kind.REJECTED_STORED, f"invalid body {request.body[:60]!r} got a 202"
                )
            elif task_id not in self.requests.accepted:
                self.requests.accepted[task_id] = to_iso(now)
                self.report.accepted += 1
                if self.table.item(task_id) is None:
                    self._violation(
                        Kind.ACCEPTED_MISSING, "no record when the 202 was sent", task_id, now
                    )
            return self._resolved()
        if not request.valid and 400 <= status < 500:
            self.report.rejected += 1
            self.requests.rejected_keys.append(
                callers.idempotent_task_id(callers.ANONYMOUS_OWNER, request.key)
            )
            if invocation.writes:
                self._violation(
                    Kind.REJECTED_STORED,
                    f"a {status} reply to {request.body[:60]!r} came after {invocation.writes} "
                    "writes",
                )
            return self._resolved()
        if status >= 500 or status == 409:
            if request.tries < CLIENT_MAX_TRIES:
                delay_s = min(CLIENT_BACKOFF_CAP_S, 2.0**request.tries) * self.rng.uniform(0.5, 1.5)
                self._at(self.clock.elapsed_s + delay_s, partial(self._submit, request))
                return None
            self.report.gave_up += 1
            return self._resolved()
        self._violation(Kind.VALID_REFUSED, f"{status} for {request.body[:60]!r}")
        return self._resolved()

    def _resolved(self) -> None:
        self._clients_waiting -= 1
        self._progress(1)

    def _redrive(self) -> None:
        """An operator redrives one FAILED task: sometimes killed between the write and the
        enqueue, sometimes racing a second operator on the same task."""
        candidates = self.observer.failed(MAX_REDRIVES_PER_TASK)
        if not candidates:
            return
        task_id = self.rng.choice(candidates)
        extra = self.rng.randint(1, 2)
        mode = self.rng.random()
        before_call: dict[str, Callable[[], None]] = {}
        if mode < REDRIVE_INTERRUPTED:
            before_call["SendMessage"] = _die("the operator's command was killed before enqueue")
            how = "killed before its enqueue"
        elif mode < REDRIVE_INTERRUPTED + REDRIVE_RACED:
            before_call["UpdateItem"] = partial(self._operator, task_id, extra, {})
            how = "raced by a 2nd operator"
        else:
            how = "alone"
        outcome = self._operator(task_id, extra, before_call)
        if outcome.returned:
            ended = str(outcome.result.outcome)
        else:
            ended = "died" if outcome.death is not None else type(outcome.error).__name__
        self.faults.count(FaultKind.REDRIVE, f"{how} -> {ended}")

    def _operator(
        self, task_id: str, extra: int, before_call: dict[str, Callable[[], None]]
    ) -> Outcome:
        rt = self.runtimes["operator"]

        def command(_event: Any, _context: Any) -> Any:
            return redrive_task(
                rt.store, rt.queue.enqueue, task_id, extra, self.clock(), self.settings.policy
            )

        return self.lambdas.invoke(
            "operator", command, None, rt, OPERATOR_TIMEOUT_S, before_call=before_call
        )

    def _lose_sent_messages(self, count: int) -> None:
        """The API's first `count` messages are deleted by hand as soon as they are sent (only
        the reconciler can save those tasks: this shows the checker sees stranded ones)."""
        send = self.main_queue.send

        def send_then_lose(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            message = send(*args, **kwargs)
            invocation = self.lambdas.current
            if count > 0 and invocation is not None and invocation.function == "api":
                count -= 1
                self.main_queue.remove(message)
            return message

        self.main_queue.send = send_then_lose  # type: ignore[method-assign]

    # -- the event source mappings

    def _invoke_batch(
        self, function: str, module: Any, queue: SimQueue, batch: list[Received]
    ) -> set[str] | None:
        by_task: dict[str, Received] = {}
        for received in batch:
            task_id = task_of(received.message.body)
            if task_id is not None:
                by_task.setdefault(task_id, received)
        nested = self.lambdas.current is not None
        with own_batch_processor(module) if nested else contextlib.nullcontext():
            outcome = self.lambdas.invoke(
                function,
                module.handler,
                self.events.sqs(batch, queue),
                self.runtimes[function],
                self.settings.functionTimeoutSeconds,
                batch=by_task,
            )
        if outcome.error is not None:
            self._violation(Kind.HANDLER_ERROR, f"{function}: {outcome.error!r}")
        if not outcome.returned:
            return None
        return {item["itemIdentifier"] for item in outcome.result["batchItemFailures"]}

    def _run_twice(self, invocation: Invocation, task_id: str | None) -> str | None:
        """What `invocation` is doing starts a second time and runs to its end, before the
        first one's next call goes out. For the reconciler, a second pass. For the worker, a
        second poller gets a message of task `task_id`: another copy of the task's message if one
        is visible (copies come from lost SendMessage replies, recoveries, DLQ returns), else the
        same message once more (SQS's at-least-once delivery). Returns which, or None if
        nothing could start."""
        if invocation.function == "reconciler":
            self._reconcile()
            return "second reconciler pass"
        received = invocation.batch.get(task_id) if task_id is not None else None
        if received is None:
            return None
        now = self.clock()
        copies = [
            message
            for message in self.main_queue.messages()
            if message is not received.message
            and message.visible_at <= now
            and task_of(message.body) == task_id
        ]
        message, which = (copies[0], "another copy") if copies else (received.message, "same")
        again = self.main_queue.receive_one(message, now)
        if again is None:
            return None
        self.worker_mapping.deliver([again])
        return which

    def _acknowledged(self, kind: Kind, received: Received) -> None:
        """The worker (or the dead-letter function) let Lambda delete a message: its task must
        be finished (or unknown), or the invocation must have put another message of the task on
        the main queue first (the worker's delayed copy of a retry or a deferral, the dead-letter
        function's return). Else `kind` is reported.

        Exempt: the worker's own notice on the DLQ that it made the task FAILED (it carries a
        reason). It was never the task's message; if the task is unfinished now, an operator
        redrove it after the notice, and the redrive gave the task a message of its own."""
        task_id = task_of(received.message.body)
        item = self.table.item(task_id) if task_id is not None else None
        invocation = self.lambdas.last
        replaced = invocation is not None and any(
            url == self.main_queue.url and task_of(body) == task_id for url, body in invocation.sent
        )
        if item is None or item.get("status") in TERMINAL or replaced:
            return
        if REASON_ATTRIBUTE in received.message.message_attributes and item.get("redriveCount"):
            return  # the worker's notice, older than the task's redrive
        function = invocation.function if invocation is not None else "?"
        self._violation(
            kind,
            f"the {function} acknowledged a message while the task was {item.get('status')}",
            task_id,
            record=shown(item),
        )

    def _on_write(self, task_id: str, item: dict[str, Any] | None) -> None:
        self.observer.on_write(task_id, item, self.lambdas.current)

    def _violation(
        self,
        kind: str,
        detail: str,
        task_id: str | None = None,
        at: datetime | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        """A broken promise seen during the run, at `at` (default: now)."""
        seen_at = to_iso(at or self.clock())
        self.requests.violations.append(Violation(kind, detail, task_id, seen_at, record))

    # -- the end

    def _finish(self) -> None:
        report = self.report
        items = [(task_id, self.table.item(task_id)) for task_id in self.table.task_ids()]
        report.stranded, report.violations = check(
            items, self.observer, self.requests, self.settings.policy
        )
        statuses: Counter[str] = Counter()
        fingerprint = hashlib.sha256()
        for task_id, item in sorted(items, key=lambda pair: pair[0]):
            if item is None or "status" not in item:
                continue
            statuses[item["status"]] += 1
            outcomes = [entry.get("outcome") for entry in item.get("history") or []]
            fingerprint.update(f"{task_id}:{item['status']}:{outcomes};".encode())
        report.statuses = dict(sorted(statuses.items()))
        report.faults = {kind.value: self.faults.counts.get(kind, 0) for kind in FaultKind}
        report.fault_details = dict(sorted(self.faults.details.items()))
        report.invocations = dict(self.lambdas.invocations)
        report.deaths = dict(self.lambdas.deaths)
        report.aws_attempts = self.transport.attempts
        report.outage_refusals = self.transport.outage_refusals
        report.dead_letter_moves = self.main_queue.moved_to_dead_letter
        report.delayed_sends = self.main_queue.sent_delayed
        report.peak_in_flight = self.main_queue.peak_in_flight
        report.messages_left = len(self.main_queue) + len(self.dead_letter_queue)
        report.simulated_s = self.clock.elapsed_s
        report.digest = fingerprint.hexdigest()[:16]


def _moment_in(rng: random.Random, windows: list[tuple[float, float]]) -> float:
    """A moment uniformly spread over `windows` (start, end offsets in seconds)."""
    start, end = rng.choices(windows, [end - start for start, end in windows])[0]
    return rng.uniform(start, end)


def _message(number: int, rng: random.Random) -> str:
    draw = rng.random()
    if draw < ALWAYS_SUCCEEDS_SHARE:
        return ALWAYS_SUCCEEDS
    if draw < ALWAYS_SUCCEEDS_SHARE + ALWAYS_FAILS_SHARE:
        return ALWAYS_FAILS
    return f"work {number}"


def _die(reason: str) -> Callable[[], None]:
    def die() -> None:
        raise Crash(reason)

    return die


def _index_lag_s(rng: random.Random) -> float:
    slow_share, slow_range = INDEX_LAG_SLOW
    return rng.uniform(*slow_range) if rng.random() < slow_share else rng.uniform(*INDEX_LAG_S)
