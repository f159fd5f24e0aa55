"""Test doubles around the handlers: realistic events, a fake Lambda context and clock, and a
`Pipeline` that plays the part of Lambda's SQS event source mapping on moto's queues."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from functions import api, dead_letter, runtime, worker
from functions.lifecycle import TaskRecord

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
MAIN_QUEUE_VISIBILITY_S = 180  # as deployed: 6 x the 30 s function timeout
PINNED_VISIBILITY_S = 3_600  # well past any test's wall time, within SQS's 12 h total


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


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


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


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """The Lambda event record for a message as `ReceiveMessage` returned it."""
    record = copy.deepcopy(load_event("sqs_task_message.json")["Records"][0])
    record.update(
        messageId=message["MessageId"],
        receiptHandle=message["ReceiptHandle"],
        body=message["Body"],
        attributes=message.get("Attributes", {}),
        md5OfBody=message["MD5OfBody"],
        eventSourceARN=queue_arn,
        messageAttributes={
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
    )
    return record


@dataclass
class Delivery:
    """What one worker invocation did with a batch."""

    message_ids: list[str]
    failed_ids: set[str]


class Pipeline:
    """Lambda's event source mapping, played on moto: receive a batch, invoke the handler,
    delete the messages it did not report failed. Failed ones stay hidden for whatever
    visibility the worker set; `advance_to_next_retry` moves the fake clock there and lets
    SQS deliver them (moto's own visibility runs on wall time)."""

    def __init__(
        self, sqs: Any, queue_url: str, dlq_url: str, clock: FakeClock, visibility_spy: CallSpy
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.clock = clock
        self.visibility_spy = visibility_spy
        self.context = FakeLambdaContext()
        self.hidden: dict[str, datetime] = {}  # receipt handle -> when SQS shows it again
        self.pin_hidden = True
        self._arns: dict[str, str] = {}
        self.runs: list[Delivery] = []

    def queue_arn(self, url: str) -> str:
        if url not in self._arns:
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            self._arns[url] = attributes["Attributes"]["QueueArn"]
        return self._arns[url]

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
        arn = self.queue_arn(url or self.queue_url)
        return {"Records": [sqs_record(message, arn) for message in messages]}

    def deliver(self, messages: list[dict[str, Any]]) -> Delivery:
        """Invoke the worker with `messages` as one batch, then act as the ESM does."""
        # Spy on the client the worker will use (a test may have installed a new runtime).
        self.visibility_spy.attach(runtime.current().sqs)
        calls_before = len(self.visibility_spy.calls)
        response = worker.handler(self.event(messages), self.context)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        for call in self.visibility_spy.calls[calls_before:]:
            if self.pin_hidden:
                # moto counts visibility in wall time, the worker in fake time: keep the message
                # hidden until the fake clock reaches its time (`advance_to_next_retry`).
                try:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=call["ReceiptHandle"],
                        VisibilityTimeout=PINNED_VISIBILITY_S,
                    )
                except ClientError:
                    continue  # a stale handle: the worker's own call failed the same way
            self.hidden[call["ReceiptHandle"]] = self.clock.now + timedelta(
                seconds=call["VisibilityTimeout"]
            )
        delivery = Delivery([m["MessageId"] for m in messages], failed)
        self.runs.append(delivery)
        return delivery

    def advance_to_next_retry(self) -> bool:
        """Move the clock to the earliest hidden message's time and make those due visible.
        False if nothing is hidden."""
        if not self.hidden:
            return False
        due = min(self.hidden.values())
        self.clock.now = max(self.clock.now, due)
        for handle, at in list(self.hidden.items()):
            if at <= self.clock.now:
                del self.hidden[handle]
                try:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                    )
                except ClientError:
                    continue  # superseded by a newer receive of the same message
        return True

    def run_until_idle(self, max_invocations: int = 1_000) -> int:
        """Deliver batches until the main queue is empty and nothing waits for a retry."""
        invocations = 0
        while invocations < max_invocations:
            messages = self.receive()
            if messages:
                self.deliver(messages)
                invocations += 1
            elif not self.advance_to_next_retry():
                return invocations
        raise AssertionError(f"still busy after {max_invocations} worker invocations")

    def drain_dead_letters(self) -> list[dict[str, Any]]:
        """Run the dead-letter function on everything in the DLQ; returns the messages."""
        handled = []
        while messages := self.receive(self.dlq_url):
            response = dead_letter.handler(self.event(messages, self.dlq_url), self.context)
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            assert not failed, f"dead-letter function failed on {failed}"
            for message in messages:
                self.sqs.delete_message(
                    QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                )
            handled += messages
        return handled


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
