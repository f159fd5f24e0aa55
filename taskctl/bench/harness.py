"""Drive the real handlers under moto, one task at a time, and meter what they ask of AWS.

The harness plays the parts AWS plays around the functions: API Gateway (an HTTP API v2 event),
the SQS event source mappings (receive, hand the record to the function, delete it if the
function did not report it failed) and time (a fake clock advanced past a retry's delay, the
message made visible again). Those calls go through an unmetered client. The functions' own
calls go through clients whose botocore hooks count every request by service and operation and
work out the DynamoDB capacity units it consumes from the items' sizes.

Used by `taskctl bench`; the functions are imported lazily, after the environment they read at
import time (Powertools service name, metrics namespace) is set.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.metrics import METRICS_NAMESPACE  # plain constants: nothing reads the environment

REGION = "us-east-1"
TABLE = "bench-tasks"
STACK = "bench"
ACCOUNT = "123456789012"
WRU_BYTES = 1024
RRU_BYTES = 4096
# Bytes Lambda itself logs per invocation (START, END and REPORT lines): an estimate from their
# documented format, since nothing runs Lambda's log agent here.
PLATFORM_LOG_BYTES_PER_INVOCATION = 270


class ScriptedRandom(random.Random):
    """`random()` returns the scripted draws in order: 0.0 fails an attempt, 0.99 passes it."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(0)
        self._draws = list(draws)

    def random(self) -> float:
        return self._draws.pop(0) if self._draws else 0.99


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    description: str
    message: str
    draws: tuple[float, ...] = ()


@dataclass(kw_only=True)
class Invocation:
    function: str
    duration_ms: float
    log_bytes: int
    records: int = 1


@dataclass(kw_only=True)
class ScenarioRun:
    """What one task of a scenario cost, as metered."""

    scenario: str
    final_status: str
    attempts: int
    calls: Counter = field(default_factory=Counter)  # (function, service, operation) -> requests
    wru: Counter = field(default_factory=Counter)  # function -> write request units
    rru: Counter = field(default_factory=Counter)  # function -> read request units
    invocations: list[Invocation] = field(default_factory=list)
    worker_deliveries: int = 0
    worker_acknowledged: int = 0
    dead_letter_deliveries: int = 0
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
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(attribute_value_size({"N": n}) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(v) for name, v in item.items())


# -- metering ----------------------------------------------------------------------------------


class Meter:
    """botocore hooks that count requests and DynamoDB capacity on the functions' clients."""

    def __init__(self, raw_dynamodb: Any) -> None:
        self._raw_dynamodb = raw_dynamodb  # unmetered: reads item sizes for the accounting
        self.run: ScenarioRun | None = None
        self.function = "?"  # the function being invoked, for per-function capacity
        self.overhead_s = 0.0  # time spent metering, inside the handlers' wall time
        self._sizes: dict[str, int] = {}  # item key -> size after the last metered write

    def attach(self, events: Any) -> None:
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
            before = self._sizes.get(json.dumps(key, sort_keys=True), 0)
            started = time.perf_counter()
            after_item = self._raw_dynamodb.get_item(
                TableName=params["TableName"], Key=key, ConsistentRead=True
            ).get("Item")
            # The metering read is not the handler's work: its time is taken off the duration.
            self.overhead_s += time.perf_counter() - started
            after = item_size(after_item)
            self._sizes[json.dumps(key, sort_keys=True)] = after
            self.run.wru[self.function] += max(1, math.ceil(max(before, after) / WRU_BYTES))
        elif operation in ("Query", "Scan", "BatchGetItem", "TransactWriteItems", "BatchWriteItem"):
            raise NotImplementedError(f"the benchmark does not meter {operation} yet")

    def reset(self, run: ScenarioRun) -> None:
        self.run = run
        self._sizes = {}


# -- the parts AWS plays -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeContext:
    """The LambdaContext fields the Powertools decorators read."""

    def __init__(self, function: str, memory_mb: int) -> None:
        self.function_name = f"{STACK}-{function}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        )
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def http_api_event(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": f"/{STACK}{path}",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "bench.execute-api.localhost"},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "bench",
            "domainName": "bench.execute-api.localhost",
            "domainPrefix": "bench",
            "http": {
                "method": method,
                "path": f"/{STACK}{path}",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "taskctl-bench",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}",
            "stage": STACK,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Received messages in the shape the SQS event source mapping hands a function."""
    records = []
    for message in messages:
        attributes = {
            name: {
                "stringValue": a.get("StringValue"),
                "binaryValue": a.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": a["DataType"],
            }
            for name, a in (message.get("MessageAttributes") or {}).items()
        }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": attributes,
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


@contextlib.contextmanager
def captured_logs(loggers: list[Any]) -> Iterator[io.StringIO]:
    """Everything the functions log (Powertools handlers, EMF metrics on stdout) into a buffer."""
    buffer = io.StringIO()
    handlers = {id(h): h for lg in loggers if (h := lg.registered_handler) is not None}
    previous = {key: handler.setStream(buffer) for key, handler in handlers.items()}
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        for key, handler in handlers.items():
            handler.setStream(previous[key])


# -- a pipeline under moto -------------------------------------------------------------------------


def prepare_environment() -> None:
    """What the functions read at import time, and credentials moto accepts."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_SESSION_TOKEN="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        POWERTOOLS_SERVICE_NAME="bench",
        POWERTOOLS_METRICS_NAMESPACE=METRICS_NAMESPACE,
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


class Pipeline:
    """One table and queue pair in moto, the three handlers, metered clients."""

    def __init__(self, policy: Any, memory_mb: int) -> None:
        import boto3

        from functions import api, dead_letter, runtime, worker

        self._modules = (api, dead_letter, runtime, worker)
        self.memory_mb = memory_mb
        raw = boto3.Session(region_name=REGION)
        self.raw_sqs = raw.client("sqs")
        self.raw_dynamodb = raw.client("dynamodb")
        self.raw_dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "taskId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "taskId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.queue_url = self.raw_sqs.create_queue(QueueName="bench-tasks")["QueueUrl"]
        self.dlq_url = self.raw_sqs.create_queue(QueueName="bench-tasks-dlq")["QueueUrl"]
        self.queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:bench-tasks"
        self.dlq_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:bench-tasks-dlq"
        self.meter = Meter(self.raw_dynamodb)
        metered = boto3.Session(region_name=REGION)
        self.meter.attach(metered.events)
        self.clock = FakeClock()
        self.settings = runtime.FunctionSettings(
            policy=policy,
            table_name=TABLE,
            queue_url=self.queue_url,
            dead_letter_queue_url=self.dlq_url,
            stack=STACK,
            # Its events come without a verified token: it runs the pipeline behind API
            # Gateway, whose authorizer (and its 401/403) is not what it exercises.
            api_auth="none",
        )
        self._metered_session = metered

    def _invoke(self, run: ScenarioRun, function: str, handler: Any, event: dict) -> Any:
        api, dead_letter, _runtime, worker = self._modules
        self.meter.function = function
        with captured_logs([api.logger, worker.logger, dead_letter.logger]) as logs:
            overhead_before_s = self.meter.overhead_s
            started = time.perf_counter()
            reply = handler(event, FakeContext(function, self.memory_mb))
            elapsed_s = time.perf_counter() - started
            duration_ms = (elapsed_s - (self.meter.overhead_s - overhead_before_s)) * 1000.0
        run.invocations.append(
            Invocation(
                function=function,
                duration_ms=duration_ms,
                log_bytes=len(logs.getvalue().encode()),
                records=len(event.get("Records", [1])),
            )
        )
        return reply

    def run_task(self, scenario: Scenario, *, max_deliveries: int = 20) -> ScenarioRun:
        """Submit one task and carry it to its end; meter the functions' requests."""
        api, dead_letter, runtime, worker = self._modules
        runtime.use(
            runtime.Runtime(
                self.settings,
                clock=self.clock,
                rng=ScriptedRandom(list(scenario.draws)),
                session=self._metered_session,
            )
        )
        # Reuse the clients across tasks, as a warm Lambda does.
        if not hasattr(self, "_clients"):
            self._clients = (runtime.current().dynamodb, runtime.current().sqs)
        current = runtime.current()
        current.__dict__["dynamodb"], current.__dict__["sqs"] = self._clients
        run = ScenarioRun(scenario=scenario.name, final_status="?", attempts=0)
        self.meter.reset(run)

        reply = self._invoke(
            run,
            "api",
            api.handler,
            http_api_event("POST", "/tasks", json.dumps({"message": scenario.message})),
        )
        if reply["statusCode"] != 202:
            raise RuntimeError(f"submit answered {reply['statusCode']}: {reply.get('body')}")
        task_id = json.loads(reply["body"])["taskId"]

        for _ in range(max_deliveries):
            message = self._receive(self.queue_url)
            if message is None:
                break
            run.worker_deliveries += 1
            reply = self._invoke(
                run, "worker", worker.handler, sqs_event([message], self.queue_arn)
            )
            if reply.get("batchItemFailures"):
                # The worker hid the message until its retry: let that time pass.
                self._pass_retry_delay(task_id, message)
            else:
                run.worker_acknowledged += 1
                self.raw_sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        while (message := self._receive(self.dlq_url)) is not None:
            run.dead_letter_deliveries += 1
            self._invoke(
                run, "dead-letter", dead_letter.handler, sqs_event([message], self.dlq_arn)
            )
            self.raw_sqs.delete_message(
                QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )

        item = self.raw_dynamodb.get_item(
            TableName=TABLE, Key={"taskId": {"S": task_id}}, ConsistentRead=True
        )["Item"]
        self.meter.run = None
        run.final_status = item["status"]["S"]
        run.attempts = int(item["attempts"]["N"])
        run.item_bytes = item_size(item)
        return run

    def _receive(self, queue_url: str) -> dict | None:
        messages = self.raw_sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return messages[0] if messages else None

    def _pass_retry_delay(self, task_id: str, message: dict) -> None:
        item = self.raw_dynamodb.get_item(
            TableName=TABLE, Key={"taskId": {"S": task_id}}, ConsistentRead=True
        )["Item"]
        if "nextAttemptAt" in item:
            due = datetime.fromisoformat(item["nextAttemptAt"]["S"].replace("Z", "+00:00"))
            self.clock.advance(max(0.0, (due - self.clock.now).total_seconds()) + 0.001)
        self.raw_sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
