"""What the handlers are invoked with: events shaped like the recorded samples the tests share
(`tests/events/`, read at run time, so there is one source of truth for their shape), and a
Lambda context whose remaining time follows the simulated clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.lifecycle import to_epoch_ms
from taskctl.chaos.sqs import Received, SimQueue, receive_attributes
from taskctl.chaos.wire import ACCOUNT, REGION
from taskctl.local.paths import PROJECT_DIR

EVENTS_DIR = PROJECT_DIR / "tests" / "events"
API_EVENT = "apigw_v2_post_tasks.json"
SQS_EVENT = "sqs_task_message.json"
STAGE = "dev"


class Events:
    """Builds API Gateway (HTTP API v2), SQS and EventBridge schedule events."""

    def __init__(self) -> None:
        try:
            self._api = (EVENTS_DIR / API_EVENT).read_text()
            self._sqs_record = json.dumps(
                json.loads((EVENTS_DIR / SQS_EVENT).read_text())["Records"][0]
            )
        except (OSError, KeyError, IndexError, ValueError) as error:
            raise RuntimeError(
                f"cannot read the sample events in {EVENTS_DIR} ({error}); run from a checkout"
            ) from None

    def http(
        self,
        method: str,
        path: str,
        *,
        body: str,
        headers: dict[str, str],
        now: datetime,
        request_id: str,
    ) -> dict[str, Any]:
        """An HTTP API event for `method path` (path without the stage) behind the dev stage."""
        event = json.loads(self._api)
        raw_path = f"/{STAGE}{path}"
        event["rawPath"] = raw_path
        event["routeKey"] = f"{method} {path}"
        context = event["requestContext"]
        context["http"].update(method=method, path=raw_path)
        context["routeKey"] = event["routeKey"]
        context["stage"] = STAGE
        context["requestId"] = request_id
        context["timeEpoch"] = to_epoch_ms(now)
        context["time"] = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
        for name, value in headers.items():
            event["headers"][name.lower()] = value  # an HTTP API lowercases header names
        return event

    def sqs(self, batch: list[Received], queue: SimQueue) -> dict[str, Any]:
        """The event Lambda's event source mapping builds for `batch` from `queue`."""
        return {"Records": [self.sqs_record(received, queue.arn) for received in batch]}

    def sqs_record(self, received: Received, queue_arn: str) -> dict[str, Any]:
        """One record of such an event: the message as that receive returned it."""
        message = received.message
        record = json.loads(self._sqs_record)
        record.update(
            messageId=message.message_id,
            receiptHandle=received.receipt_handle,
            body=message.body,
            md5OfBody=message.md5_of_body,
            eventSourceARN=queue_arn,
            awsRegion=REGION,
            attributes=receive_attributes(received),
            messageAttributes={
                name: {
                    "stringValue": value.get("StringValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in message.message_attributes.items()
            },
        )
        return record

    @staticmethod
    def scheduled(now: datetime, rule_arn: str, event_id: str) -> dict[str, Any]:
        """An EventBridge scheduled event (what invokes the reconciler)."""
        return {
            "version": "0",
            "id": event_id,
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [rule_arn],
            "detail": {},
        }


@dataclass
class LambdaContext:
    """The attributes of a Lambda context the handlers and Powertools read. The remaining time
    is the function timeout minus the simulated time since the invocation started."""

    function_name: str
    aws_request_id: str
    deadline: datetime
    clock: Callable[[], datetime]
    memory_limit_in_mb: int = 256

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock()).total_seconds() * 1000))
