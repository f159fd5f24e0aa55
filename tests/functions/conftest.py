"""Fixtures for handler tests: fake credentials -> mock_aws (DynamoDB) and the simulated queues
(SQS, on the fake clock) -> the functions' runtime (with that clock and a seeded random source)
-> a pipeline driver.

boto3 clients are created only inside the mock, by the same `functions.runtime.Runtime` the
deployed functions use, from the same environment variables. Their SQS requests are answered by
`taskctl.chaos.sqs.SimSqs`: moto's queues count visibility and DelaySeconds in wall time, which a
test that waits minutes of backoff in a few milliseconds cannot use."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aws_faults
import boto3
import botocore.handlers
import pytest
from aws_harness import MAIN_QUEUE_VISIBILITY_S, Pipeline
from botocore.retries.standard import ExponentialBackoff
from moto import mock_aws

from functions import runtime
from functions.policy import TaskPolicy
from functions.runtime import FunctionSettings, Runtime
from functions.settings import REDRIVE_RECEIVE_MARGIN
from taskctl.chaos.clock import SimClock
from taskctl.chaos.dynamodb import create_table as create_task_table
from taskctl.chaos.sqs import SimSqs

DEV_POLICY = TaskPolicy(maxAttempts=2, errorRate=0.3, backoffBaseSeconds=2, maxDelaySeconds=900)
START = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Resources:
    table_name: str
    queue_url: str
    dlq_url: str
    dlq_arn: str
    queues: SimSqs


@pytest.fixture(autouse=True)
def injected_replies_were_lost() -> Iterator[None]:
    """Every reply a test asked `aws_faults.lose_response` to lose was lost: otherwise the test
    ran the path without the fault and proves nothing about it."""
    aws_faults.INJECTED.clear()
    yield
    assert not aws_faults.replies_not_lost(), (
        f"injected faults that never happened: {aws_faults.replies_not_lost()}"
    )


@pytest.fixture(autouse=True)
def no_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retries (as configured for the functions) wait up to seconds of real time
    between tries; the tests keep the retries but not the waiting."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session for the whole run, so service models load once (a fresh one per test costs
    ~0.1 s a client). Its credentials are fake and explicit; clients come only inside the mock."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def resources(aws: None, boto_session: boto3.Session, clock: SimClock) -> Iterator[Resources]:
    """The stack's table and queue pair, as the Pulumi program declares them."""
    create_task_table(boto_session.client("dynamodb"), "fault-tolerant-tasks-dev-tasks")
    queues = SimSqs(clock)
    ids = iter(range(1, 1 << 62))
    new_id = lambda: str(uuid.UUID(int=next(ids), version=4))  # noqa: E731
    dlq, main = (
        queues.create_queue(name, visibility_timeout_s=MAIN_QUEUE_VISIBILITY_S, new_id=new_id)
        for name in ("fault-tolerant-tasks-dev-dlq", "fault-tolerant-tasks-dev-tasks")
    )
    # Every SQS client answered by the simulated queues: the session's, and those of sessions
    # made during the test (an operator command makes its own).
    stop_serving = queues.serve(boto_session.events)
    new_sessions = ("before-send.sqs", queues.before_send, botocore.handlers.REGISTER_FIRST)
    botocore.handlers.BUILTIN_HANDLERS.append(new_sessions)
    try:  # botocore's handlers are the process's: later tests must not meet these queues
        resources = Resources("fault-tolerant-tasks-dev-tasks", main.url, dlq.url, dlq.arn, queues)
        boto_session.client("sqs").set_queue_attributes(
            QueueUrl=main.url, Attributes={"RedrivePolicy": _redrive_policy(dlq.arn, DEV_POLICY)}
        )
        yield resources
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(new_sessions)
        stop_serving()


def _redrive_policy(dlq_arn: str, policy: TaskPolicy) -> str:
    max_receive_count = policy.maxAttempts + REDRIVE_RECEIVE_MARGIN
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, resources: Resources) -> None:
    """The environment the Pulumi program gives every function (dev stack values)."""
    for name, value in DEV_POLICY.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TASKS_TABLE_NAME", resources.table_name)
    monkeypatch.setenv("TASKS_QUEUE_URL", resources.queue_url)
    monkeypatch.setenv("TASKS_DLQ_URL", resources.dlq_url)
    monkeypatch.setenv("TASKS_STACK", "dev")
    monkeypatch.setenv("TASKS_API_AUTH", "jwt")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tasks-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FaultTolerantTasks")


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START)


@pytest.fixture
def make_runtime(
    function_env: None, resources: Resources, clock: SimClock, boto_session: boto3.Session
) -> Iterator[Callable[..., Runtime]]:
    """Install a runtime read from the environment, with the fake clock and a seeded random
    source; `policy=` overrides the environment's policy."""

    def install(policy: TaskPolicy | None = None, seed: int = 20261129) -> Runtime:
        settings = FunctionSettings.from_env(os.environ)
        if policy is not None:
            settings = dataclasses.replace(settings, policy=policy)
            # as the stack derives it: redrive only after every attempt plus the margin
            boto_session.client("sqs").set_queue_attributes(
                QueueUrl=resources.queue_url,
                Attributes={"RedrivePolicy": _redrive_policy(resources.dlq_arn, policy)},
            )
        installed = Runtime(settings, clock=clock, rng=random.Random(seed), session=boto_session)
        runtime.use(installed)
        return installed

    yield install
    runtime.use(None)


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


@pytest.fixture
def pipeline(
    make_runtime: Callable[..., Runtime],
    resources: Resources,
    clock: SimClock,
    boto_session: boto3.Session,
) -> Pipeline:
    """Plays Lambda's SQS event source mappings. It has its own SQS client, so its spies see
    only the worker's ChangeMessageVisibility and SendMessage calls."""
    return Pipeline(boto_session.client("sqs"), resources, clock)
