"""SQS: the main task queue and its dead-letter queue, over an injected low-level SQS client.

A message on either queue is the JSON object `{"taskId": "<uuid>"}` (other keys are ignored); the
task itself lives in DynamoDB. A message the worker sends to the DLQ carries the reason in the
`reason` attribute.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

REASON_ATTRIBUTE = "reason"
SQS_MAX_ATTRIBUTE_CHARS = 1024  # our own bound: a reason is a sentence, not a dump


class UnreadableMessage(ValueError):
    """A message body that is not `{"taskId": "<uuid>"}`."""


def task_message_body(task_id: str) -> str:
    return json.dumps({"taskId": task_id}, separators=(",", ":"))


def parse_task_message(body: str) -> str:
    """The task id (canonical lowercase UUID) in a message body, or `UnreadableMessage`."""
    try:
        task_id = json.loads(body).get("taskId")  # other keys are ignored
        if isinstance(task_id, str):
            return str(UUID(task_id))
    except (ValueError, AttributeError, RecursionError):  # not JSON, or no object, or no UUID
        pass
    shown = body if len(body) <= 200 else body[:200] + "..."
    raise UnreadableMessage(f"message body is not {{'taskId': <uuid>}}: {shown!r}")


class TaskQueue:
    """Send, re-hide and dead-letter task messages."""

    def __init__(self, client: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def enqueue(self, task_id: str, delay_s: int = 0) -> None:
        """Put a task's message on the main queue, delivered no earlier than `delay_s` (0..900)
        from now; raises whatever SQS raises.

        A delayed message is not in flight while it waits (SQS's in-flight quota counts only
        received messages), so a retry's wait costs the queue nothing.
        """
        self._client.send_message(
            QueueUrl=self._queue_url, MessageBody=task_message_body(task_id), DelaySeconds=delay_s
        )

    def hide(self, receipt_handle: str, seconds: int) -> None:
        """Make a received main-queue message invisible for `seconds` from now (0..43200).

        With the message reported as a batch item failure, SQS redelivers it no earlier than
        this; meanwhile it stays in flight (the worker's fallback when a delayed `enqueue`
        fails, and its short wait for another delivery's lease).
        """
        self._client.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def dead_letter(self, body: str, reason: str) -> None:
        """Send a message body to the DLQ, with why it is there."""
        self._client.send_message(
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes={
                REASON_ATTRIBUTE: {
                    "DataType": "String",
                    "StringValue": reason[:SQS_MAX_ATTRIBUTE_CHARS] or "unknown",
                }
            },
        )
