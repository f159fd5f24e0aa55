"""The DLQ path: whatever task's message reaches the dead-letter queue ends FAILED."""

from __future__ import annotations

import httpx
import pytest
from e2e_support import LocalStackUnderTest, submit, wait_terminal, wait_until

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


def test_a_pending_task_whose_message_is_dead_lettered_ends_failed(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    lam = local_stack.client("lambda")
    sqs = local_stack.client("sqs")
    mapping_uuid = _worker_mapping_uuid(local_stack)
    # GIVEN a PENDING task whose message the worker never gets (its trigger is paused) ...
    lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=False)
    try:
        task_id = submit(api, "SUCCESS")
        assert api.get(f"/tasks/{task_id}").json()["status"] == "PENDING"

        def the_task_message() -> dict | None:
            reply = sqs.receive_message(
                QueueUrl=local_stack.outputs["queueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            return next((m for m in reply.get("Messages", []) if task_id in m["Body"]), None)

        message = wait_until(the_task_message, timeout_s=15, what="the task's queue message")
        # ... and whose message ends up on the DLQ, as redrive would put it there
        sqs.send_message(QueueUrl=local_stack.outputs["dlqUrl"], MessageBody=message["Body"])
        sqs.delete_message(
            QueueUrl=local_stack.outputs["queueUrl"], ReceiptHandle=message["ReceiptHandle"]
        )

        # WHEN the dead-letter function has handled it
        record = wait_terminal(api, task_id)
    finally:
        lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=True)

    # THEN the task is FAILED (never COMPLETED: the work never ran), with the reason recorded
    assert record["status"] == "FAILED"
    assert record["attempts"] == 0
    assert record["lastError"]
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
