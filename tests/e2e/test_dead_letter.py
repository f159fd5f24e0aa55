"""The DLQ path: a message the queue's redrive moved goes back while its task is unfinished; one
that keeps coming back without an attempt fails its task; a task the worker failed stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from e2e_support import LocalStackUnderTest, submit, wait_terminal, wait_until

from functions.policy import MAX_DEAD_LETTER_RETURNS

pytestmark = pytest.mark.e2e


def _worker_mapping_uuid(local_stack: LocalStackUnderTest) -> str:
    mappings = local_stack.client("lambda").list_event_source_mappings(
        EventSourceArn=_queue_arn(local_stack, local_stack.outputs["queueUrl"])
    )["EventSourceMappings"]
    assert len(mappings) == 1, mappings
    return mappings[0]["UUID"]


def _queue_arn(local_stack: LocalStackUnderTest, url: str) -> str:
    attributes = local_stack.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]
    )
    return attributes["Attributes"]["QueueArn"]


@contextmanager
def _worker_paused(local_stack: LocalStackUnderTest) -> Iterator[None]:
    """The worker's trigger disabled: messages stay on the main queue for the test to move."""
    lam = local_stack.client("lambda")
    mapping_uuid = _worker_mapping_uuid(local_stack)
    lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=False)
    try:
        yield
    finally:
        lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=True)


def _redrive_to_dlq(local_stack: LocalStackUnderTest, task_id: str) -> None:
    """Move the task's message from the main queue to the DLQ as the queue's redrive policy does
    (same body, no `reason` attribute: only the worker states one)."""
    sqs = local_stack.client("sqs")
    queue_url = local_stack.outputs["queueUrl"]

    def the_task_message() -> dict | None:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        found = None
        for message in reply.get("Messages", []):
            if found is None and task_id in message["Body"]:
                found = message
            else:  # someone else's (another task's, a duplicate): visible again at once
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        return found

    message = wait_until(the_task_message, timeout_s=15, what=f"task {task_id}'s queue message")
    sqs.send_message(QueueUrl=local_stack.outputs["dlqUrl"], MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _dead_letter_returns(local_stack: LocalStackUnderTest, task_id: str) -> int:
    item = local_stack.stored_item(task_id)
    return int(item.get("deadLetterReturns", {}).get("N", 0))


def test_a_pending_task_whose_message_the_redrive_moved_goes_back_and_completes(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    # GIVEN a PENDING task whose message the queue's redrive policy moved to the DLQ before the
    # worker got to it (receives are not attempts: throttling or an outage can do this)
    with _worker_paused(local_stack):
        task_id = submit(api, "SUCCESS")
        assert api.get(f"/tasks/{task_id}").json()["status"] == "PENDING"
        _redrive_to_dlq(local_stack, task_id)

        # WHEN the dead-letter function has handled it
        wait_until(
            lambda: _dead_letter_returns(local_stack, task_id) == 1,
            timeout_s=30,
            what="the dead-letter function to return the message",
        )
        assert api.get(f"/tasks/{task_id}").json()["status"] == "PENDING"  # not FAILED

    # THEN the message is back on the main queue, and the worker runs the task to the end
    record = wait_terminal(api, task_id)
    assert record["status"] == "COMPLETED"
    assert record["attempts"] == 1
    assert [(e["attempt"], e["outcome"]) for e in record["history"]] == [(1, "SUCCEEDED")]


def test_a_task_whose_message_keeps_reaching_the_dlq_without_an_attempt_ends_failed(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    # GIVEN a PENDING task whose message reaches the DLQ again and again without the worker
    # ever starting an attempt (a poisonous message that kills the worker before its claim)
    with _worker_paused(local_stack):
        task_id = submit(api, "SUCCESS")
        for trip in range(1, MAX_DEAD_LETTER_RETURNS + 1):
            _redrive_to_dlq(local_stack, task_id)
            wait_until(
                lambda trip=trip: _dead_letter_returns(local_stack, task_id) == trip,
                timeout_s=30,
                what=f"the dead-letter function to return the message ({trip})",
            )

        # WHEN it arrives there once more
        _redrive_to_dlq(local_stack, task_id)
        record = wait_terminal(api, task_id)

    # THEN the task is FAILED (never COMPLETED: the work never ran), with the reason recorded
    assert record["status"] == "FAILED"
    assert record["attempts"] == 0
    assert f"{MAX_DEAD_LETTER_RETURNS + 1} times" in record["lastError"]
    assert record["failedAt"] is not None


def test_a_task_that_failed_its_last_attempt_is_left_as_the_worker_failed_it(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    # GIVEN a task that fails every attempt: the worker marks it FAILED and dead-letters it
    task_id = submit(api, "ERROR")
    failed = wait_terminal(api, task_id, timeout_s=90)
    assert failed["status"] == "FAILED"

    # WHEN the dead-letter function has handled its message (it logs the task id)
    logs = local_stack.client("logs")
    function = next(
        r
        for r in local_stack.deployed("aws:lambda/function:Function")
        if "dead-letter" in r["name"]
    )
    group = f"/aws/lambda/{function['outputs']['name']}"

    def dead_letter_function_saw_it() -> bool:
        try:
            events = logs.filter_log_events(logGroupName=group)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return False
        return any(task_id in event["message"] for event in events)

    wait_until(dead_letter_function_saw_it, timeout_s=30, what="the dead-letter function's log")

    # THEN the record is exactly as the worker left it: one terminal transition, not two
    assert api.get(f"/tasks/{task_id}").json() == failed
