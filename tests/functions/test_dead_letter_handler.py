"""The dead-letter function on moto: every task whose message reaches the DLQ ends FAILED, once,
and each dead letter is counted in one low-cardinality metric."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aws_harness import (
    FakeLambdaContext,
    Pipeline,
    raw_item,
    record_of,
    submit,
)
from botocore.exceptions import ClientError

from functions import dead_letter
from functions.queue import task_message_body
from functions.runtime import Runtime


def emf_blobs(captured: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric documents printed to stdout."""
    blobs = []
    for line in captured.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def metric_total(blobs: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for blob in blobs:
        value = blob.get(name, 0)
        total += sum(value) if isinstance(value, list) else value
    return total


def dead_letter_directly(pipeline: Pipeline, body: str) -> None:
    """A message moved to the DLQ by redrive (no reason attribute)."""
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=body)


def test_a_task_the_worker_failed_stays_as_it_is_and_is_counted_once(
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
    assert metric_total(blobs, dead_letter.DEAD_LETTERED_METRIC) == 1
    (blob,) = blobs
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "FaultTolerantTasks"
    # low cardinality: service and stack only, never a per-task dimension
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["service", "stack"]]
    assert (blob["service"], blob["stack"]) == ("tasks-test", "dev")
    assert task_id not in json.dumps(directive)


def test_a_redriven_retrying_task_is_failed_with_the_reason(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a task waiting to retry whose message the redrive policy moved to the DLQ
    task_id = submit("ERROR")
    pipeline.deliver(pipeline.receive())
    assert record_of(rt, task_id).status == "RETRYING"
    dead_letter_directly(pipeline, task_message_body(task_id))
    pipeline.clock.advance(1)

    pipeline.drain_dead_letters()

    record = record_of(rt, task_id)
    assert record.status == "FAILED"
    assert record.failedAt is not None and record.nextAttemptAt is None
    assert (record.lastError or "").startswith("dead-lettered after")
    assert record.attempts == 1


def test_a_redriven_task_stuck_processing_is_failed_and_its_open_attempt_closed_lost(
    rt: Runtime, pipeline: Pipeline
) -> None:
    task_id = submit("SUCCESS")
    seen = record_of(rt, task_id)
    rt.store.claim(seen, 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    dead_letter_directly(pipeline, task_message_body(task_id))

    pipeline.drain_dead_letters()

    record = record_of(rt, task_id)
    assert record.status == "FAILED"
    assert [(h.attempt, h.outcome) for h in record.history] == [(1, "LOST")]
    assert record.history[0].finishedAt is not None
    # the late worker's result cannot make it a second terminal state
    with pytest.raises(Exception, match="no longer the one in progress"):
        rt.store.complete(task_id, 1, rt.clock())
    assert record_of(rt, task_id).status == "FAILED"


def test_a_redriven_pending_task_is_failed(rt: Runtime, pipeline: Pipeline) -> None:
    task_id = submit("SUCCESS")
    dead_letter_directly(pipeline, task_message_body(task_id))

    pipeline.drain_dead_letters()

    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("FAILED", 0)


def test_a_task_completed_between_read_and_write_is_not_failed(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a worker finishes the task just as the dead-letter function is about to fail it
    task_id = submit("SUCCESS")
    seen = record_of(rt, task_id)
    rt.store.claim(seen, 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    dead_letter_directly(pipeline, task_message_body(task_id))

    def worker_completes_first(**_: Any) -> None:
        rt.dynamodb.meta.events.unregister(
            "before-call.dynamodb.UpdateItem", worker_completes_first
        )
        rt.store.complete(task_id, 1, rt.clock())

    rt.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", worker_completes_first)

    pipeline.drain_dead_letters()

    # THEN the conditional write loses, the re-read sees COMPLETED, and it stays COMPLETED
    record = record_of(rt, task_id)
    assert record.status == "COMPLETED"
    assert record.failedAt is None


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
    assert metric_total(blobs, dead_letter.UNREADABLE_METRIC) == 3
    assert metric_total(blobs, dead_letter.DEAD_LETTERED_METRIC) == 3
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


def test_redrive_moves_a_message_that_keeps_crashing_the_worker_and_the_task_ends_failed(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a task whose every delivery crashes the worker before it can claim an attempt
    task_id = submit("SUCCESS")

    def crash(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "GetItem")

    rt.dynamodb.meta.events.register("before-call.dynamodb.GetItem", crash)
    max_receive_count = rt.settings.policy.maxAttempts + 5  # as the stack derives it

    # WHEN SQS delivers it again each time its visibility runs out
    receives = 0
    while messages := pipeline.receive():
        receives += 1
        assert pipeline.deliver(messages).failed_ids == {messages[0]["MessageId"]}
        pipeline.sqs.change_message_visibility(
            QueueUrl=pipeline.queue_url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=0,
        )

    # THEN after maxReceiveCount receives the redrive policy moved it to the DLQ
    assert receives == max_receive_count
    rt.dynamodb.meta.events.unregister("before-call.dynamodb.GetItem", crash)
    (dead,) = pipeline.drain_dead_letters()
    assert json.loads(dead["Body"]) == {"taskId": task_id}
    # AND the dead-letter function failed the task, saying why
    record = record_of(rt, task_id)
    assert record.status == "FAILED"
    assert f"after {max_receive_count + 1} receives" in (record.lastError or "")
