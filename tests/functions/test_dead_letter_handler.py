"""The dead-letter function on moto: a task the worker failed stays FAILED and is no fault; a task
whose message got there on receives that were not attempts goes back to the main queue and still
runs; only a poisonous message ends its task FAILED, counted in the low-cardinality
`PoisonMessages` metric."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aws_faults import fail_calls
from aws_harness import (
    FakeLambdaContext,
    Pipeline,
    raw_item,
    record_of,
    submit,
)
from botocore.exceptions import ClientError
from emf import emf_blobs, metric_total

from functions import dead_letter
from functions.metrics import (
    FAILED_TASKS_METRIC,
    POISON_MESSAGES_METRIC,
    RETURNED_DEAD_LETTERS_METRIC,
    UNREADABLE_DEAD_LETTERS_METRIC,
    WORKER_RECORD_EXCEPTIONS_METRIC,
)
from functions.policy import MAX_DEAD_LETTER_RETURNS
from functions.queue import task_message_body
from functions.runtime import Runtime
from functions.settings import REDRIVE_RECEIVE_MARGIN


def dead_letter_directly(pipeline: Pipeline, body: str) -> None:
    """A message moved to the DLQ by redrive (no reason attribute)."""
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=body)


def test_a_task_the_worker_failed_stays_as_it_is_and_is_no_poison(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = submit("ERROR")
    pipeline.run_until_idle()
    before = raw_item(rt, task_id)
    capsys.readouterr()

    handled = pipeline.drain_dead_letters()

    assert len(handled) == 1
    assert raw_item(rt, task_id) == before
    blobs = emf_blobs(capsys.readouterr().out)
    # an ordinary FAILED task is a business outcome (the worker counted it): no fault here
    assert metric_total(blobs, POISON_MESSAGES_METRIC) == 0
    (blob,) = blobs
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "FaultTolerantTasks"
    # low cardinality: service and stack only, never a per-task dimension
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["service", "stack"]]
    assert (blob["service"], blob["stack"]) == ("tasks-test", "dev")
    assert task_id not in json.dumps(directive)


def run_to_the_end(pipeline: Pipeline) -> None:
    """Main queue and DLQ, until both are quiet (a returned dead letter runs again)."""
    while pipeline.run_until_idle() + len(pipeline.drain_dead_letters()):
        pass


def test_a_retrying_task_moved_by_the_redrive_policy_goes_back_and_uses_its_attempts(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a task waiting to retry whose message the redrive policy moved to the DLQ
    task_id = submit("ERROR")
    pipeline.deliver(pipeline.receive())
    assert record_of(rt, task_id).status == "RETRYING"
    dead_letter_directly(pipeline, task_message_body(task_id))
    pipeline.clock.advance(1)

    # WHEN the dead-letter function handles it
    pipeline.drain_dead_letters()

    # THEN the task is not FAILED with an attempt left: its message is back on the main queue,
    # and the task ends as its attempts decide
    assert record_of(rt, task_id).status == "RETRYING"
    run_to_the_end(pipeline)
    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("FAILED", 2)


def test_a_task_stuck_processing_goes_back_and_its_lost_attempt_counts(
    rt: Runtime, pipeline: Pipeline
) -> None:
    task_id = submit("SUCCESS")
    seen = record_of(rt, task_id)
    rt.store.claim(seen, 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    for message in pipeline.receive():  # the original copy is gone; only the dead letter is left
        pipeline.sqs.delete_message(
            QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
    dead_letter_directly(pipeline, task_message_body(task_id))

    pipeline.drain_dead_letters()
    pipeline.clock.advance(31)  # the stuck attempt's lease runs out
    run_to_the_end(pipeline)

    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("COMPLETED", 2)
    assert [(h.attempt, h.outcome) for h in record.history] == [(1, "LOST"), (2, "SUCCEEDED")]


def test_hours_of_dynamodb_outage_fail_no_task_that_never_got_an_attempt(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN DynamoDB is down for longer than maxReceiveCount receives of a pending task
    task_id = submit("SUCCESS")
    outage = fail_calls(rt.dynamodb, "GetItem")
    receives = 0
    while messages := pipeline.receive():
        receives += 1
        assert pipeline.deliver(messages).failed_ids
        pipeline.sqs.change_message_visibility(
            QueueUrl=pipeline.queue_url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=0,
        )
    assert receives == rt.settings.policy.maxAttempts + REDRIVE_RECEIVE_MARGIN
    assert outage.count > 0

    # WHEN it comes back and the dead letter is handled
    outage.stop()
    run_to_the_end(pipeline)

    # THEN the task ran: COMPLETED on its first attempt
    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("COMPLETED", 1)


def test_a_task_completed_between_read_and_write_is_not_failed(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a task in an attempt whose message has come back from the DLQ as often as a
    # poisonous one may, so its next dead letter fails it ...
    task_id = submit("SUCCESS")
    rt.store.claim(record_of(rt, task_id), 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    rt.store.count_dead_letter_return(rt.store.get(task_id), MAX_DEAD_LETTER_RETURNS, rt.clock())
    dead_letter_directly(pipeline, task_message_body(task_id))
    # ... and its worker finishes it just as the dead-letter function is about to fail it
    raced = []

    def worker_completes_first(**_: Any) -> None:
        rt.dynamodb.meta.events.unregister(
            "before-call.dynamodb.UpdateItem", worker_completes_first
        )
        rt.store.complete(task_id, 1, rt.clock())
        raced.append(task_id)

    rt.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", worker_completes_first)

    pipeline.drain_dead_letters()

    # THEN the conditional write loses, the re-read sees COMPLETED, and it stays COMPLETED
    assert raced == [task_id]
    record = record_of(rt, task_id)
    assert record.status == "COMPLETED"
    assert record.failedAt is None
    assert record.lastError is None
    assert raw_item(rt, task_id)["deadLetterReturns"] == {"N": str(MAX_DEAD_LETTER_RETURNS)}


def test_unreadable_dead_letters_are_logged_loudly_and_counted(
    rt: Runtime,
    pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for body in ("garbage", '{"taskId": "not-a-uuid"}', "[]"):
        dead_letter_directly(pipeline, body)

    handled = pipeline.drain_dead_letters()

    assert len(handled) == 3
    out = capsys.readouterr().out
    blobs = emf_blobs(out)
    assert metric_total(blobs, UNREADABLE_DEAD_LETTERS_METRIC) == 3
    assert metric_total(blobs, POISON_MESSAGES_METRIC) == 3
    loud = [r for r in caplog.records if r.levelname == "ERROR" and "unreadable" in r.getMessage()]
    assert len(loud) == 3


def test_a_dynamodb_failure_reports_the_dead_letter_failed_for_redelivery(
    rt: Runtime, pipeline: Pipeline
) -> None:
    task_id = submit("SUCCESS")
    dead_letter_directly(pipeline, task_message_body(task_id))

    def unavailable(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "GetItem")

    rt.dynamodb.meta.events.register("before-call.dynamodb.GetItem", unavailable)
    messages = pipeline.receive(pipeline.dlq_url)

    response = dead_letter.handler(pipeline.event(messages, pipeline.dlq_url), FakeLambdaContext())

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        messages[0]["MessageId"]
    ]


def test_a_poisonous_message_ends_its_task_failed_after_bounded_trips_through_the_dlq(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a task whose every delivery crashes the worker before it can claim an attempt
    task_id = submit("SUCCESS")
    max_receive_count = rt.settings.policy.maxAttempts + REDRIVE_RECEIVE_MARGIN

    def crash_the_worker(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "GetItem")

    trips = 0
    capsys.readouterr()
    while record_of(rt, task_id).status != "FAILED":
        assert trips <= MAX_DEAD_LETTER_RETURNS, "a poisonous message must end its task"
        # WHEN SQS delivers it again each time its visibility runs out ...
        rt.dynamodb.meta.events.register("before-call.dynamodb.GetItem", crash_the_worker)
        receives = 0
        while messages := pipeline.receive():
            receives += 1
            assert pipeline.deliver(messages).failed_ids == {messages[0]["MessageId"]}
            pipeline.sqs.change_message_visibility(
                QueueUrl=pipeline.queue_url,
                ReceiptHandle=messages[0]["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        # ... the redrive policy moves it to the DLQ after maxReceiveCount receives
        assert receives == max_receive_count
        rt.dynamodb.meta.events.unregister("before-call.dynamodb.GetItem", crash_the_worker)
        (dead,) = pipeline.drain_dead_letters()
        assert json.loads(dead["Body"]) == {"taskId": task_id}
        trips += 1

    # THEN it went back MAX_DEAD_LETTER_RETURNS times, then its task was FAILED, saying why
    assert trips == MAX_DEAD_LETTER_RETURNS + 1
    record = record_of(rt, task_id)
    assert record.attempts == 0
    assert f"after {max_receive_count + 1} receives" in (record.lastError or "")
    assert "without a new attempt" in (record.lastError or "")
    # AND it counts as one poison message: a fault, never the business outcome FailedTasks
    blobs = emf_blobs(capsys.readouterr().out)
    assert metric_total(blobs, POISON_MESSAGES_METRIC) == 1
    assert metric_total(blobs, RETURNED_DEAD_LETTERS_METRIC) == MAX_DEAD_LETTER_RETURNS
    assert metric_total(blobs, FAILED_TASKS_METRIC) == 0
    # and every delivery that crashed the worker was a worker record exception
    assert metric_total(blobs, WORKER_RECORD_EXCEPTIONS_METRIC) == trips * max_receive_count
