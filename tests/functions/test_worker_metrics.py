"""The worker's metrics on moto: a FAILED task (attempts used up) is a business outcome counted in
`FailedTasks`; a record whose handling raised is a fault counted in `WorkerRecordExceptions`, which
Lambda's `Errors` cannot see (the partial batch response never raises); the deliberate "not yet"
failures (a retry wait, a live lease) are neither."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aws_harness import Pipeline, record_of, submit
from botocore.exceptions import ClientError
from emf import emf_blobs, metric_total, reported

from functions.metrics import (
    COMPLETED_TASKS_METRIC,
    FAILED_TASKS_METRIC,
    POISON_MESSAGES_METRIC,
    WORKER_COUNTS,
    WORKER_RECORD_EXCEPTIONS_METRIC,
)
from functions.runtime import Runtime


def worker_metrics(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF documents printed since the last read."""
    return emf_blobs(capsys.readouterr().out)


def totals(blobs: list[dict[str, Any]]) -> dict[str, float]:
    return {name: metric_total(blobs, name) for name in WORKER_COUNTS}


def corrupt_record(rt: Runtime, task_id: str) -> None:
    """Leave a task record the worker cannot parse: a status it does not know (a hand edit, or a
    record written by another version of the code)."""
    rt.dynamodb.update_item(
        TableName=rt.settings.table_name,
        Key={"taskId": {"S": task_id}},
        UpdateExpression="SET #status = :paused",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":paused": {"S": "PAUSED"}},
    )


def test_a_completed_task_is_counted_as_completed(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    submit("SUCCESS")
    capsys.readouterr()

    pipeline.run_until_idle()

    assert totals(worker_metrics(capsys)) == {
        COMPLETED_TASKS_METRIC: 1,
        FAILED_TASKS_METRIC: 0,
        WORKER_RECORD_EXCEPTIONS_METRIC: 0,
    }


def test_a_task_that_used_up_its_attempts_counts_as_failed_and_is_no_fault(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a task whose every attempt fails (the ERROR control word)
    task_id = submit("ERROR")
    capsys.readouterr()

    # WHEN the worker runs it to the end (a retry wait on the way) and the DLQ is drained
    pipeline.run_until_idle()
    pipeline.drain_dead_letters()

    # THEN it is FAILED and counted once as the business outcome, and nothing counts as a fault:
    # not its retry wait (a deliberate batch item failure), not its dead letter
    assert record_of(rt, task_id).status == "FAILED"
    blobs = worker_metrics(capsys)
    assert totals(blobs) == {
        COMPLETED_TASKS_METRIC: 0,
        FAILED_TASKS_METRIC: 1,
        WORKER_RECORD_EXCEPTIONS_METRIC: 0,
    }
    assert metric_total(blobs, POISON_MESSAGES_METRIC) == 0


def test_a_lost_last_attempt_counts_as_failed(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = submit("SUCCESS")
    for attempt in (1, 2):  # both attempts claimed by workers that died
        seen = record_of(rt, task_id)
        lost = attempt - 1 or None
        rt.store.claim(seen, attempt, rt.clock(), rt.clock() + timedelta(seconds=30), lost)
        pipeline.clock.advance(180)
    capsys.readouterr()

    pipeline.deliver(pipeline.receive())

    assert record_of(rt, task_id).status == "FAILED"
    assert totals(worker_metrics(capsys))[FAILED_TASKS_METRIC] == 1


def test_a_delivery_kept_hidden_for_a_live_lease_is_no_exception(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN another worker is running the task's attempt
    task_id = submit("SUCCESS")
    seen = record_of(rt, task_id)
    rt.store.claim(seen, 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    capsys.readouterr()

    # WHEN a duplicate arrives: reported failed on purpose, to stay hidden until the lease ends
    delivery = pipeline.deliver(pipeline.receive())

    assert delivery.failed_ids == set(delivery.message_ids)
    assert totals(worker_metrics(capsys))[WORKER_RECORD_EXCEPTIONS_METRIC] == 0


def test_a_record_the_worker_cannot_parse_is_a_record_exception_and_no_failed_task(
    rt: Runtime,
    pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a batch of a task whose record the worker cannot parse and a healthy task
    broken, healthy = submit("SUCCESS"), submit("SUCCESS")
    corrupt_record(rt, broken)
    messages = pipeline.receive()
    by_task = {json.loads(m["Body"])["taskId"]: m["MessageId"] for m in messages}
    capsys.readouterr()

    # WHEN the worker handles the batch
    delivery = pipeline.deliver(messages)

    # THEN only the broken record is reported failed (for SQS to deliver again), and Lambda's
    # Errors would see nothing (the invocation returned normally) ...
    assert delivery.failed_ids == {by_task[broken]}
    assert record_of(rt, healthy).status == "COMPLETED"
    # ... but the fault metric does; the broken task is not a business failure
    assert totals(worker_metrics(capsys)) == {
        COMPLETED_TASKS_METRIC: 1,
        FAILED_TASKS_METRIC: 0,
        WORKER_RECORD_EXCEPTIONS_METRIC: 1,
    }
    # AND the error line the alarm sends on-call to names the message and so the task
    (line,) = [r for r in caplog.records if "delivery failed" in r.getMessage()]
    assert line.levelname == "ERROR" and line.exc_info
    assert (line.messageId, json.loads(line.body)) == (by_task[broken], {"taskId": broken})


def test_an_aws_error_is_a_record_exception(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    submit("SUCCESS")

    def unavailable(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "GetItem")

    rt.dynamodb.meta.events.register("before-call.dynamodb.GetItem", unavailable)
    capsys.readouterr()

    delivery = pipeline.deliver(pipeline.receive())

    assert delivery.failed_ids == set(delivery.message_ids)
    assert totals(worker_metrics(capsys))[WORKER_RECORD_EXCEPTIONS_METRIC] == 1


def test_every_invocation_reports_every_count_with_service_and_stack_only(
    rt: Runtime, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an invocation in which nothing finished and nothing raised (a retry wait)
    submit("ERROR")
    capsys.readouterr()

    pipeline.deliver(pipeline.receive())

    # THEN it still reports each count, as 0: the alarms and the failure rate see a steady series
    (blob,) = worker_metrics(capsys)
    assert all(reported([blob], name) for name in WORKER_COUNTS)
    assert totals([blob]) == dict.fromkeys(WORKER_COUNTS, 0)
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "FaultTolerantTasks"
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["service", "stack"]]
    assert (blob["service"], blob["stack"]) == ("tasks-test", "dev")
