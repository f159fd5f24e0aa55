"""Drive the real handlers, one task at a time, and meter what they ask of AWS.

Around the functions, the fault campaign's parts (`taskctl.chaos`) without faults: API Gateway's
events and the simulated SQS queues and event source mappings on a simulated clock, which moves to
the moment a delayed or hidden message becomes visible. The task table is moto's. The functions'
clients carry botocore hooks that count every request and work out the DynamoDB capacity units it
consumes from the items' sizes; the mappings use the queues directly, unmetered.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from taskctl.chaos.clock import SimClock
from taskctl.chaos.dynamodb import create_table
from taskctl.chaos.events import Events, LambdaContext
from taskctl.chaos.sqs import EventSourceMapping, Received, SimQueue, SimSqs
from taskctl.chaos.wire import REGION

TABLE = "bench-tasks"
STACK = "bench"
FUNCTION_TIMEOUT_S = 30  # the lease a claim takes: only its length in the item matters here
VISIBILITY_TIMEOUT_S = 180
MAX_WORKER_DELIVERIES = 20  # a task delivered more often than this is stuck: stop carrying it
# DynamoDB's units: a write unit per KB written, a (strongly consistent) read unit per 4 KB read.
WRU_BYTES = 1024
RRU_BYTES = 4096
# Bytes Lambda itself logs per invocation (START, END and REPORT lines): an estimate from their
# documented format, since nothing runs Lambda's log agent here.
PLATFORM_LOG_BYTES_PER_INVOCATION = 270


class ScriptedRandom(random.Random):
    """`random()` returns the scripted `draws` in order, then 0.99: 0.0 fails an attempt, 0.99
    passes it."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws: list[float] = []

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else 0.99

    def getrandbits(self, k: int) -> int:
        # Defined so that `randint` (the backoff's jitter) takes its bits from the seeded
        # generator: a subclass that overrides only `random()` gets a `randint` that calls it,
        # and each jittered retry would use up a scripted draw.
        return super().getrandbits(k)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    description: str
    message: str
    draws: tuple[float, ...] = ()
    ends: tuple[str, int] | None = None  # (final status, attempts) the draws script, if checked


@dataclass(kw_only=True)
class ScenarioRun:
    """What one task of a scenario cost, as metered. A queue function gets one record per
    invocation, so its invocations are its deliveries."""

    final_status: str = "?"
    attempts: int = 0
    calls: Counter = field(default_factory=Counter)  # (function, service, operation) -> requests
    wru: Counter = field(default_factory=Counter)  # function -> write request units
    rru: Counter = field(default_factory=Counter)  # function -> read request units
    invocations: Counter = field(default_factory=Counter)  # function -> invocations
    # function -> the handlers' wall time (metering taken off), bytes they logged
    duration_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    log_bytes: Counter = field(default_factory=Counter)
    worker_acknowledged: int = 0
    item_bytes: int = 0


# -- DynamoDB item sizes (the documented rules; numbers approximated) --------------------------


def attribute_value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(inner)
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(attribute_value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_value_size(v) + 1 for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):  # a set: its members' sizes
        return sum(attribute_value_size({kind[0]: member}) for member in inner)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(v) for name, v in item.items())


# -- metering ----------------------------------------------------------------------------------


class Meter:
    """botocore hooks on the functions' session: they count requests and DynamoDB capacity."""

    def __init__(self, raw_dynamodb: Any, events: Any) -> None:
        self._raw_dynamodb = raw_dynamodb  # unmetered: reads item sizes for the accounting
        self.run: ScenarioRun | None = None
        self.function = "?"  # the function being invoked, for per-function capacity
        self.overhead_s = 0.0  # time spent metering, inside the handlers' wall time
        self._sizes: dict[str, int] = {}  # item key -> size after the last metered write
        events.register("provide-client-params", self._remember_params)
        events.register("before-call", self._count)
        events.register("after-call.dynamodb", self._capacity)

    def _remember_params(self, params: dict, context: dict, **_: Any) -> None:
        context["bench_params"] = dict(params)

    def _count(self, model: Any, **_: Any) -> None:
        if self.run is not None:
            self.run.calls[(self.function, model.service_model.service_name, model.name)] += 1

    def _capacity(self, model: Any, parsed: dict, context: dict, **_: Any) -> None:
        if self.run is None:
            return
        params = context.get("bench_params", {})
        operation = model.name
        if operation == "GetItem":
            units = max(1, math.ceil(item_size(parsed.get("Item")) / RRU_BYTES))
            self.run.rru[self.function] += units if params.get("ConsistentRead") else units / 2
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or {"taskId": params["Item"]["taskId"]}
            key_text = json.dumps(key, sort_keys=True)
            started = time.perf_counter()
            after_item = self._raw_dynamodb.get_item(
                TableName=params["TableName"], Key=key, ConsistentRead=True
            ).get("Item")
            # The metering read is not the handler's work: its time is taken off the duration.
            self.overhead_s += time.perf_counter() - started
            before, after = self._sizes.get(key_text, 0), item_size(after_item)
            self._sizes[key_text] = after
            self.run.wru[self.function] += max(1, math.ceil(max(before, after) / WRU_BYTES))
        elif operation in ("Query", "Scan", "BatchGetItem", "TransactWriteItems", "BatchWriteItem"):
            raise NotImplementedError(f"the benchmark does not meter {operation} yet")

    def reset(self, run: ScenarioRun) -> None:
        self.run = run
        self._sizes = {}


@contextlib.contextmanager
def captured_logs(loggers: list[Any]) -> Iterator[io.StringIO]:
    """Everything the functions log (Powertools handlers, EMF metrics on stdout) into a buffer."""
    buffer = io.StringIO()
    handlers = {handler for logger in loggers if (handler := logger.registered_handler) is not None}
    previous = {handler: handler.setStream(buffer) for handler in handlers}
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        for handler, stream in previous.items():
            handler.setStream(stream)


# -- a pipeline under moto and the simulated queues ----------------------------------------------


class Pipeline:
    """One table (moto) and queue pair (simulated), the three handlers, metered clients."""

    def __init__(self, policy: Any, memory_mb: int) -> None:
        import boto3

        from functions import api, dead_letter, runtime, worker

        self._api = api.handler
        self._loggers = [api.logger, worker.logger, dead_letter.logger]
        self.memory_mb = memory_mb
        self.clock = SimClock()
        self._events = Events()
        ids = itertools.count(1)
        queues = SimSqs(self.clock)
        main, dead = (
            queues.create_queue(
                name,
                visibility_timeout_s=VISIBILITY_TIMEOUT_S,
                new_id=lambda: str(uuid.UUID(int=next(ids), version=4)),
            )
            for name in ("bench-tasks", "bench-tasks-dlq")
        )
        self.worker_mapping = self._mapping("worker", worker.handler, main)
        self.dead_letter_mapping = self._mapping("dead-letter", dead_letter.handler, dead)
        self.raw_dynamodb = boto3.Session(region_name=REGION).client("dynamodb")
        create_table(self.raw_dynamodb, TABLE)
        metered = boto3.Session(region_name=REGION)
        queues.serve(metered.events)
        self.meter = Meter(self.raw_dynamodb, metered.events)
        self.rng = ScriptedRandom()
        # One runtime for every task: its clients are reused, as a warm Lambda reuses them.
        self.runtime = runtime.Runtime(
            runtime.FunctionSettings(
                policy=policy,
                table_name=TABLE,
                queue_url=main.url,
                dead_letter_queue_url=dead.url,
                stack=STACK,
                # Its events come without a verified token: it runs the pipeline behind API
                # Gateway, whose authorizer (and its 401/403) is not what it exercises.
                api_auth="none",
            ),
            clock=self.clock,
            rng=self.rng,
            session=metered,
        )
        runtime.use(self.runtime)

    def _invoke(self, function: str, handler: Any, event: dict) -> Any:
        run = self.meter.run
        assert run is not None
        self.meter.function = function
        context = LambdaContext(
            function_name=f"{STACK}-{function}",
            aws_request_id=str(uuid.uuid4()),
            deadline=self.clock() + timedelta(seconds=FUNCTION_TIMEOUT_S),
            clock=self.clock,
            memory_limit_in_mb=self.memory_mb,
        )
        with captured_logs(self._loggers) as logs:
            overhead_before_s = self.meter.overhead_s
            started = time.perf_counter()
            reply = handler(event, context)
            handler_s = time.perf_counter() - started - (self.meter.overhead_s - overhead_before_s)
        run.invocations[function] += 1
        run.duration_ms[function] += handler_s * 1000.0
        run.log_bytes[function] += len(logs.getvalue().encode())
        return reply

    def _mapping(self, function: str, handler: Any, queue: SimQueue) -> EventSourceMapping:
        """`queue`'s mapping to `function`: one record per invocation, so that each is metered on
        its own (batching is priced)."""

        def invoke(batch: list[Received]) -> set[str]:
            reply = self._invoke(function, handler, self._events.sqs(batch, queue))
            return {item["itemIdentifier"] for item in reply["batchItemFailures"]}

        return EventSourceMapping(queue, 1, invoke)

    def run_task(self, scenario: Scenario) -> ScenarioRun:
        """Submit one task and carry it to its end; meter the functions' requests."""
        self.rng.draws = list(scenario.draws)
        run = ScenarioRun()
        self.meter.reset(run)
        event = self._events.http(
            "POST",
            "/tasks",
            body=json.dumps({"message": scenario.message}),
            headers={"content-type": "application/json"},
            now=self.clock(),
            request_id=str(uuid.uuid4()),
        )
        reply = self._invoke("api", self._api, event)
        if reply["statusCode"] != 202:
            raise RuntimeError(f"submit answered {reply['statusCode']}: {reply.get('body')}")
        task_id = json.loads(reply["body"])["taskId"]

        worker = self.worker_mapping
        while run.invocations["worker"] < MAX_WORKER_DELIVERIES:
            if not worker.poll(self.clock()):
                if (due := worker.queue.next_visible_at()) is None:
                    break
                self.clock.advance_to(due)  # a retry's delay passes
        run.worker_acknowledged = worker.deleted
        worker.deleted = 0
        while self.dead_letter_mapping.poll(self.clock()):
            pass

        item = self.raw_dynamodb.get_item(
            TableName=TABLE, Key={"taskId": {"S": task_id}}, ConsistentRead=True
        )["Item"]
        self.meter.run = None
        run.final_status = item["status"]["S"]
        run.attempts = int(item["attempts"]["N"])
        run.item_bytes = item_size(item)
        return run
