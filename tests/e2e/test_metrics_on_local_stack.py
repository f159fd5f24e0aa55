"""Metrics on the local stack: a worker record exception raises the fault metric, and a task that
used up its attempts raises only the business one.

How the metrics are observed here: the deployed worker prints CloudWatch embedded-metric (EMF)
documents to stdout, as on AWS. The emulator (ministack 1.5.33) keeps each invocation's output in
CloudWatch Logs, one log stream per invocation, but it does not turn EMF documents into metrics
(ListMetrics and GetMetricData see only PutMetricData). So the test reads the EMF documents from
the worker's log group, exactly the documents CloudWatch would extract on AWS, and adds up those
of the invocations that handled its task.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from e2e_support import LocalStackUnderTest, submit, wait_terminal, wait_until

from functions.metrics import (
    COMPLETED_TASKS_METRIC,
    FAILED_TASKS_METRIC,
    WORKER_RECORD_EXCEPTIONS_METRIC,
)
from functions.queue import task_message_body
from taskctl.local.logs import functions_of, log_events

pytestmark = pytest.mark.e2e


def _worker_metrics_for(
    local_stack: LocalStackUnderTest, task_id: str, since_ms: int
) -> Counter[str]:
    """The worker's metrics, summed over the invocations since `since_ms` (epoch milliseconds)
    whose log mentions `task_id`. The bound matters: the emulator's FilterLogEvents returns at
    most 10,000 events, oldest first, with no next page, and the suite's earlier tests fill the
    worker's log group with more than that."""
    group = functions_of(local_stack.deployment())["worker"]
    streams: dict[str, list[str]] = {}
    for event in log_events(local_stack.client("logs"), group, since_ms):
        streams.setdefault(event["logStreamName"], []).append(event["message"])
    totals: Counter[str] = Counter()
    for lines in streams.values():
        if any(task_id in line for line in lines):
            for document in filter(None, map(_emf_document, lines)):
                totals.update(_metric_values(document))
    return totals


def _emf_document(line: str) -> dict[str, Any] | None:
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    document = json.loads(line)
    return document if "CloudWatchMetrics" in document["_aws"] else None


def _metric_values(document: dict[str, Any]) -> Counter[str]:
    values: Counter[str] = Counter()
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return values


def _store_unparseable_task(local_stack: LocalStackUnderTest) -> str:
    """A task record the worker cannot parse: a status no version of it knows, as a hand edit or
    a record written by other code could leave. Returns its id."""
    task_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    local_stack.client("dynamodb").put_item(
        TableName=local_stack.outputs["tableName"],
        Item={
            "taskId": {"S": task_id},
            "status": {"S": "PAUSED"},
            "message": {"S": "SUCCESS"},
            "attempts": {"N": "0"},
            "createdAt": {"S": now},
            "updatedAt": {"S": now},
        },
    )
    return task_id


def test_a_worker_exception_raises_the_fault_metric_and_a_failed_task_does_not(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    since_ms = int(time.time() * 1000) - 1_000  # the emulator's and this clock are one clock
    # GIVEN a task that uses up its attempts (the ERROR control word): a business outcome
    failed_id = submit(api, "ERROR")
    assert wait_terminal(api, failed_id, timeout_s=90)["status"] == "FAILED"

    # THEN the worker counts it as a failed task, and as no record exception
    business = wait_until(
        lambda: (
            (counts := _worker_metrics_for(local_stack, failed_id, since_ms))[FAILED_TASKS_METRIC]
            and counts
        ),
        timeout_s=30,
        what="the worker's FailedTasks for the ERROR task",
    )
    assert business[FAILED_TASKS_METRIC] == 1
    assert business[WORKER_RECORD_EXCEPTIONS_METRIC] == 0

    # WHEN a message arrives for a task whose record the worker cannot parse
    broken_id = _store_unparseable_task(local_stack)
    try:
        local_stack.client("sqs").send_message(
            QueueUrl=local_stack.outputs["queueUrl"], MessageBody=task_message_body(broken_id)
        )

        # THEN the worker counts a record exception (Lambda's Errors never would: the
        # invocation returns its partial batch response normally) and no failed task
        fault = wait_until(
            lambda: (
                (counts := _worker_metrics_for(local_stack, broken_id, since_ms))[
                    WORKER_RECORD_EXCEPTIONS_METRIC
                ]
                and counts
            ),
            timeout_s=30,
            what="the worker's WorkerRecordExceptions for the unparseable task",
        )
    finally:
        # Its message comes back after the visibility timeout, finds no task and is acknowledged.
        local_stack.client("dynamodb").delete_item(
            TableName=local_stack.outputs["tableName"], Key={"taskId": {"S": broken_id}}
        )
    assert fault[WORKER_RECORD_EXCEPTIONS_METRIC] >= 1
    assert fault[FAILED_TASKS_METRIC] == 0
    assert fault[COMPLETED_TASKS_METRIC] == 0
