"""Test doubles around the handlers: realistic events, a fake Lambda context, and a `Pipeline`
that plays the part of Lambda's SQS event source mappings. The queues, the clock and the mapping
player are the fault campaign's own (`taskctl.chaos`): one model of SQS on simulated time serves
the tests, `taskctl bench` and `taskctl chaos`."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions import api, dead_letter, runtime, worker
from functions.lifecycle import TaskRecord
from taskctl.chaos.clock import SimClock
from taskctl.chaos.events import Events
from taskctl.chaos.sqs import EventSourceMapping, Received, SimQueue, SimSqs

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
MAIN_QUEUE_VISIBILITY_S = 180  # as deployed: 6 x the 30 s function timeout
BATCH_SIZE = 10  # records per invocation, at most (the receive's maximum)


# The app client the tests call as (an owner), and another one.
CALLER = "7fcaller0000000000000000a1"
OTHER_CALLER = "7fcaller0000000000000000b2"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


# -- API Gateway ------------------------------------------------------------------------------


def http_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    stage: str = "dev",
    caller: str | None = CALLER,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for `method path` (path without the stage), from
    `caller`: the claims API Gateway's JWT authorizer hands over for that client's verified
    client-credentials token (None: no authorizer ran, as on an open stack's routes)."""
    template = "apigw_v2_post_tasks.json" if body is not None else "apigw_v2_get_task.json"
    event = copy.deepcopy(load_event(template))
    event.pop("pathParameters", None)
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event["rawPath"] = raw_path
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["routeKey"] = event["routeKey"]
    event["requestContext"]["stage"] = stage
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    if body is None:
        event.pop("body", None)
        event["headers"].pop("content-type", None)
        event["headers"].pop("content-length", None)
    else:
        raw = body.encode() if isinstance(body, str) else body
        event["headers"]["content-length"] = str(len(raw))
        if base64_body:
            event["body"] = base64.b64encode(raw).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = raw.decode()
    for name, value in (headers or {}).items():
        if value is None:
            event["headers"].pop(name.lower(), None)
        else:
            event["headers"][name.lower()] = value  # HTTP API lowercases header names
    if caller is not None:
        event["requestContext"]["authorizer"] = {"jwt": machine_claims(caller), "principalId": ""}
    return event


def machine_claims(client_id: str) -> dict[str, Any]:
    """The `jwt` block of a payload-2.0 event for a Cognito client-credentials token of
    `client_id` (API Gateway passes every claim as a string, and the scopes apart)."""
    return {
        "claims": {
            "sub": client_id,
            "client_id": client_id,
            "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool",
            "token_use": "access",
            "scope": "tasks/read tasks/write",
            "exp": "1893456000",
            "iat": "1893452400",
        },
        "scopes": ["tasks/read", "tasks/write"],
    }


def submit_event(message: Any = "SUCCESS", **kwargs: Any) -> dict[str, Any]:
    return http_event("POST", "/tasks", body=json.dumps({"message": message}), **kwargs)


def json_body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


# -- Lambda -----------------------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    function_name: str = "fault-tolerant-tasks-dev-worker"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:fault-tolerant-tasks-dev-worker"
    )
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# -- SQS --------------------------------------------------------------------------------------


class CallSpy:
    """Records the parameters of every call of one operation on the boto3 clients it is
    attached to."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.calls: list[dict[str, Any]] = []
        self._attached: set[int] = set()

    def attach(self, client: Any) -> None:
        if id(client) in self._attached:
            return
        self._attached.add(id(client))
        client.meta.events.register(
            f"provide-client-params.{client.meta.service_model.endpoint_prefix}.{self.operation}",
            self._record,
        )

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))


@dataclass
class Delivery:
    """What one worker invocation did with a batch."""

    message_ids: list[str]
    failed_ids: set[str]
    bodies: list[str]


class Pipeline:
    """Lambda's event source mappings, played by `taskctl.chaos.sqs.EventSourceMapping` on the
    simulated queues, which run on the tests' fake clock: receive a batch, invoke the handler,
    delete what it did not report failed. A hidden or delayed message comes back when the clock
    reaches its time; `run_until_idle` moves the clock there.

    `sqs` is the tests' own client (its calls set scenes and are not the worker's); the spies see
    the worker's ChangeMessageVisibility and SendMessage calls."""

    def __init__(self, sqs: Any, resources: Any, clock: SimClock) -> None:
        """`resources`: conftest's `Resources` (the queues and their URLs)."""
        self.sqs, self.clock = sqs, clock
        self.queue_url, self.dlq_url = resources.queue_url, resources.dlq_url
        self.visibility_spy = CallSpy("ChangeMessageVisibility")
        self.send_spy = CallSpy("SendMessage")
        self.context = FakeLambdaContext()
        self.runs: list[Delivery] = []
        self._events = Events()
        self._queues: SimSqs = resources.queues
        self.worker_mapping = EventSourceMapping(
            self._queues.queue(self.queue_url), BATCH_SIZE, self._invoke_worker
        )
        self.dead_letter_mapping = EventSourceMapping(
            self._queues.queue(self.dlq_url), BATCH_SIZE, self._invoke_dead_letter
        )

    @property
    def main_queue(self) -> SimQueue:
        return self.worker_mapping.queue

    @property
    def dead_letter_queue(self) -> SimQueue:
        return self.dead_letter_mapping.queue

    def delays_sent(self) -> list[int]:
        """DelaySeconds of each message the worker sent to the main queue, in order."""
        return [
            call.get("DelaySeconds", 0)
            for call in self.send_spy.calls
            if call["QueueUrl"] == self.queue_url
        ]

    def receive(self, url: str | None = None, max_messages: int = 10) -> list[dict[str, Any]]:
        reply = self.sqs.receive_message(
            QueueUrl=url or self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return reply.get("Messages", [])

    def event(self, messages: list[dict[str, Any]], url: str | None = None) -> dict[str, Any]:
        queue = self._queues.queue(url or self.queue_url)
        return self._events.sqs(self._batch(queue, messages), queue)

    def deliver(self, messages: list[dict[str, Any]]) -> Delivery:
        """Invoke the worker with `messages` (as received) as one batch, then act as the ESM
        does."""
        self.worker_mapping.deliver(self._batch(self.main_queue, messages))
        return self.runs[-1]

    def run_until_idle(self, max_invocations: int = 1_000) -> int:
        """Deliver batches until the main queue is empty, moving the clock to each hidden or
        delayed message's time."""
        invocations = 0
        while invocations < max_invocations:
            if self.worker_mapping.poll(self.clock()):
                invocations += 1
                continue
            due = self.main_queue.next_visible_at()
            if due is None:
                return invocations
            self.clock.advance_to(due)
        raise AssertionError(f"still busy after {max_invocations} worker invocations")

    def drain_dead_letters(self) -> list[dict[str, Any]]:
        """Run the dead-letter function on everything visible in the DLQ; returns the
        messages."""
        handled = []
        while messages := self.receive(self.dlq_url):
            self.dead_letter_mapping.deliver(self._batch(self.dead_letter_mapping.queue, messages))
            handled += messages
        return handled

    def _batch(self, queue: SimQueue, messages: list[dict[str, Any]]) -> list[Received]:
        return [queue.received(message["ReceiptHandle"]) for message in messages]

    def _invoke_worker(self, batch: list[Received]) -> set[str]:
        # Spy on the client the worker will use (a test may have installed a new runtime).
        for spy in (self.visibility_spy, self.send_spy):
            spy.attach(runtime.current().sqs)
        response = worker.handler(self._events.sqs(batch, self.main_queue), self.context)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        messages = [received.message for received in batch]
        self.runs.append(
            Delivery([m.message_id for m in messages], failed, [m.body for m in messages])
        )
        return failed

    def _invoke_dead_letter(self, batch: list[Received]) -> set[str]:
        event = self._events.sqs(batch, self.dead_letter_mapping.queue)
        response = dead_letter.handler(event, self.context)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        assert not failed, f"dead-letter function failed on {failed}"
        return failed


def submit(message: str) -> str:
    """POST a task through the api handler; its id (the submit must be accepted)."""
    response = api.handler(submit_event(message), FakeLambdaContext())
    assert response["statusCode"] == 202, response["body"]
    return json_body(response)["taskId"]


def record_of(rt: Any, task_id: str) -> TaskRecord:
    """The task's public record as stored (it must exist)."""
    stored = rt.store.get(task_id)
    assert stored is not None, f"task {task_id} is not stored"
    return stored.record


def raw_item(rt: Any, task_id: str) -> dict[str, Any]:
    """The whole stored item, internal attributes included: 'changes nothing' means this."""
    return rt.dynamodb.get_item(
        TableName=rt.settings.table_name, Key={"taskId": {"S": task_id}}, ConsistentRead=True
    )["Item"]


def scan_items(rt: Any) -> list[dict[str, Any]]:
    """Every item in the task table (tests check that rejected requests stored nothing)."""
    return rt.dynamodb.scan(TableName=rt.settings.table_name, ConsistentRead=True)["Items"]
