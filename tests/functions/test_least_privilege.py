"""Least privilege, exactly: each function's role allows what the function needs and nothing more.

What a function needs is recorded, not listed by hand: every branch of every handler that reaches
AWS runs here on moto, and a botocore hook on the function's own clients notes each call as an
(IAM action, resource) pair. Lambda itself also acts under the role, and that is added explicitly:
- a function's logs are written to its log group (logs:CreateLogStream, logs:PutLogEvents);
- an SQS event source mapping polls its queue with the consumer's role: sqs:ReceiveMessage,
  sqs:DeleteMessage and sqs:GetQueueAttributes (the AWS Lambda developer guide, "Using Lambda with
  Amazon SQS", lists exactly these three; failed records of a partial batch response are simply
  not deleted, so the poller changes no visibility).
EventBridge and API Gateway invoke functions through resource policies, not the roles.

What a role allows is read from the program itself (`__main__.py` under the recording mocks, for
every stack), and the two are compared both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from aws_faults import fail_calls
from aws_harness import (
    FakeLambdaContext,
    Pipeline,
    http_event,
    json_body,
    record_of,
    submit,
    submit_event,
)

from functions import api, reconciler
from functions.queue import task_message_body
from functions.runtime import Runtime
from functions.store import CHECK_INDEX
from taskctl.chaos.clock import SimClock
from taskctl.program import RecordingMocks, run_program

STACKS = ("dev", "prod")
FUNCTIONS = ("api", "worker", "dead-letter", "reconciler")
# The resources the policies name, by what they are to the system.
TABLE, INDEX, MAIN_QUEUE, DLQ, OWN_LOGS = (
    "task table",
    "check index",
    "main queue",
    "dead-letter queue",
    "own log group",
)
EVENT_SOURCE_MAPPING_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
LOG_WRITING_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
# Grants the program declares beyond what is needed, each with why it is still there. The test
# fails when one disappears without its entry, so this list only ever shrinks.
KNOWN_EXCESS: dict[str, set[tuple[str, str]]] = {}

Grant = tuple[str, str]  # (IAM action, resource)


# -- what the code does ------------------------------------------------------------------------


class CallRecorder:
    """The (IAM action, resource) of every call the functions' own clients make, by the handler
    running at the time. Calls the test makes to set a scene go through the same clients but are
    made outside `running(...)`, and are not recorded."""

    def __init__(self, rt: Runtime, resources: Any) -> None:  # conftest's Resources
        self.calls: dict[str, set[Grant]] = {name: set() for name in FUNCTIONS}
        self._handler: str | None = None
        self._names = {
            resources.table_name: TABLE,
            resources.queue_url: MAIN_QUEUE,
            resources.dlq_url: DLQ,
        }
        for client in (rt.dynamodb, rt.sqs):
            client.meta.events.register("before-parameter-build", self._record)

    @contextmanager
    def running(self, handler: str) -> Iterator[None]:
        self._handler = handler
        try:
            yield
        finally:
            self._handler = None

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self._handler is None:
            return
        action = f"{model.service_model.signing_name}:{model.name}"
        for resource in self._resources(params):
            self.calls[self._handler].add((action, resource))

    def _resources(self, params: dict[str, Any]) -> Iterator[str]:
        if "QueueUrl" in params:
            yield self._names[params["QueueUrl"]]
        elif "RequestItems" in params:  # BatchGetItem
            yield from (self._names[table] for table in params["RequestItems"])
        elif params.get("IndexName") == CHECK_INDEX:
            yield INDEX
        else:
            yield self._names[params["TableName"]]


def discard_messages(pipeline: Pipeline, url: str) -> None:
    """Delete what a queue holds (as the event source mapping would), between scenarios."""
    while messages := pipeline.receive(url):
        for message in messages:
            pipeline.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def run_api_branches(calls: CallRecorder) -> None:
    """Submit (store and enqueue), a replayed submit (the Idempotency-Key's task read back), and
    a read."""
    context = FakeLambdaContext()
    with calls.running("api"):
        keyed = submit_event("SUCCESS", headers={"Idempotency-Key": "least-privilege"})
        created = api.handler(keyed, context)
        replayed = api.handler(keyed, context)
        read = api.handler(http_event("GET", f"/tasks/{json_body(created)['taskId']}"), context)
    assert [r["statusCode"] for r in (created, replayed, read)] == [202, 202, 200]
    assert replayed["headers"][api.REPLAYED_HEADER] == "true"


def run_worker_branches(calls: CallRecorder, rt: Runtime, pipeline: Pipeline) -> None:
    """Success, a retry (re-sent delayed), an early duplicate deferred (re-sent delayed), a
    duplicate meeting a live lease (hidden), a retry whose re-send fails (hidden), the last
    failure (dead-lettered), a lost last attempt, an unreadable message, and a message of a task
    that does not exist."""
    succeeds, fails = submit("SUCCESS"), submit("ERROR")
    with calls.running("worker"):
        pipeline.deliver(pipeline.receive())
    assert record_of(rt, succeeds).status == "COMPLETED"
    assert record_of(rt, fails).status == "RETRYING"

    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=task_message_body(fails))
    with calls.running("worker"):
        early = pipeline.deliver(pipeline.receive())
    assert early.failed_ids == set()  # deferred: re-sent delayed until the retry is due

    leased = submit("SUCCESS")
    rt.store.claim(record_of(rt, leased), 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    with calls.running("worker"):
        waiting = pipeline.deliver(pipeline.receive())
    assert waiting.failed_ids == set(waiting.message_ids)  # a live lease: hidden until it ends

    fails_again = submit("ERROR")
    outage = fail_calls(rt.sqs, "SendMessage")
    with calls.running("worker"):
        fallback = pipeline.deliver(pipeline.receive())
    outage.stop()
    assert fallback.failed_ids == set(fallback.message_ids)  # the re-send failed: hidden
    assert record_of(rt, fails_again).status == "RETRYING"

    with calls.running("worker"):
        pipeline.run_until_idle()
    assert record_of(rt, fails).status == record_of(rt, fails_again).status == "FAILED"
    assert record_of(rt, leased).status == "COMPLETED"

    lost = submit("SUCCESS")
    for attempt in (1, 2):  # both attempts claimed by workers that died
        rt.store.claim(
            record_of(rt, lost), attempt, rt.clock(), rt.clock() + timedelta(seconds=30),
            attempt - 1 or None,
        )  # fmt: skip
        pipeline.clock.advance(180)
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="not json at all")
    pipeline.sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=task_message_body("3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"),
    )
    with calls.running("worker"):
        pipeline.run_until_idle()
    assert record_of(rt, lost).status == "FAILED"


def run_dead_letter_branches(calls: CallRecorder, rt: Runtime, pipeline: Pipeline) -> None:
    """A dead letter the worker sent for a FAILED task (acknowledged), one the redrive policy
    moved for an unfinished task (returned to the main queue), and one the worker sent for a task
    that is not FAILED (the task is made FAILED)."""
    for message in pipeline.receive(pipeline.dlq_url):  # what the worker scenarios left there
        pipeline.sqs.delete_message(
            QueueUrl=pipeline.dlq_url, ReceiptHandle=message["ReceiptHandle"]
        )
    failed, retrying, pending = submit("ERROR"), submit("ERROR"), submit("SUCCESS")
    pipeline.sqs.purge_queue(QueueUrl=pipeline.queue_url)
    rt.store.claim(record_of(rt, failed), 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    rt.store.fail(failed, 1, rt.clock(), "failed")
    rt.queue.dead_letter(task_message_body(failed), "FAILED after 1 attempt")
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=task_message_body(retrying))
    rt.queue.dead_letter(task_message_body(pending), "sent by a worker")

    with calls.running("dead-letter"):
        handled = pipeline.drain_dead_letters()

    assert len(handled) == 3
    assert record_of(rt, failed).status == "FAILED"
    assert [json.loads(m["Body"])["taskId"] for m in pipeline.receive()] == [retrying]
    assert record_of(rt, pending).status == "FAILED"


def run_reconciler_branches(
    calls: CallRecorder, rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    """One pass that recovers a task whose message is gone and rechecks one that is on schedule
    (a live lease), reading and saving its cursor. (Tasks the scenarios before left unfinished
    without a message are recovered too.)"""
    grace_s = rt.settings.policy.recoveryGraceSeconds
    stranded, running = submit("SUCCESS"), submit("SUCCESS")
    discard_messages(pipeline, pipeline.queue_url)
    rt.store.claim(
        record_of(rt, running), 1, rt.clock(), rt.clock() + timedelta(seconds=10 * grace_s)
    )
    clock.advance(grace_s + 1)

    with calls.running("reconciler"):
        sweep = reconciler.handler({"source": "aws.events"}, FakeLambdaContext())

    requeued = {json.loads(m["Body"])["taskId"] for m in pipeline.receive()}
    assert stranded in requeued and running not in requeued
    assert sweep["rescheduled"] >= 1


@pytest.fixture
def recorded(rt: Runtime, resources: Any, pipeline: Pipeline, clock: SimClock) -> dict:
    calls = CallRecorder(rt, resources)
    run_api_branches(calls)
    discard_messages(pipeline, pipeline.queue_url)
    run_worker_branches(calls, rt, pipeline)
    run_dead_letter_branches(calls, rt, pipeline)
    run_reconciler_branches(calls, rt, pipeline, clock)
    return calls.calls


# -- what the program grants ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def programs() -> dict[str, RecordingMocks]:
    runs = {}
    for stack in STACKS:
        runs[stack] = RecordingMocks()
        run_program(stack, runs[stack])
    return runs


def _resource_names(program: RecordingMocks, function: str) -> dict[str, str]:
    table_arn = program.one("aws:dynamodb/table:Table", "tasks-table").outputs["arn"]
    log_group = program.one("aws:cloudwatch/logGroup:LogGroup", f"{function}-logs")
    return {
        table_arn: TABLE,
        f"{table_arn}/index/{CHECK_INDEX}": INDEX,
        program.one("aws:sqs/queue:Queue", "tasks-main").outputs["arn"]: MAIN_QUEUE,
        program.one("aws:sqs/queue:Queue", "tasks-dlq").outputs["arn"]: DLQ,
        f"{log_group.outputs['arn']}:*": OWN_LOGS,
    }


def granted(program: RecordingMocks, function: str) -> set[Grant]:
    """(action, resource) for every action the function's role policy allows on every resource
    it names (an ARN the test does not know stays an ARN, and shows in the difference)."""
    names = _resource_names(program, function)
    policy = json.loads(
        program.one("aws:iam/rolePolicy:RolePolicy", f"{function}-policy").inputs["policy"]
    )
    grants = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) == {
            "Sid", "Effect", "Action", "Resource"
        }, statement  # fmt: skip
        for action in statement["Action"]:
            grants |= {(action, names.get(arn, arn)) for arn in statement["Resource"]}
    return grants


def needed_by_lambda(program: RecordingMocks, function: str) -> set[Grant]:
    """What Lambda does under the function's role: write its logs, poll its event sources."""
    names = _resource_names(program, function)
    needs = {(action, OWN_LOGS) for action in LOG_WRITING_ACTIONS}
    function_arn = program.one("aws:lambda/function:Function", f"{function}-function").outputs[
        "arn"
    ]
    for mapping in program.created("aws:lambda/eventSourceMapping:EventSourceMapping"):
        if mapping.inputs["functionName"] == function_arn:
            queue = names[mapping.inputs["eventSourceArn"]]
            needs |= {(action, queue) for action in EVENT_SOURCE_MAPPING_ACTIONS}
    return needs


# -- the comparison ------------------------------------------------------------------------------


def test_each_role_allows_exactly_the_calls_of_its_function_and_of_lambda_for_it(
    recorded: dict[str, set[Grant]], programs: dict[str, RecordingMocks]
) -> None:
    # GIVEN the calls each function's code made on every branch, and what Lambda does for it
    missing, excess = {}, {}
    for stack, program in programs.items():
        for function in FUNCTIONS:
            assert recorded[function], f"no branch of {function} reached AWS: a scenario broke"
            needed = recorded[function] | needed_by_lambda(program, function)
            # WHEN they are set against the role the program declares for that stack
            allowed = granted(program, function)
            missing[stack, function] = needed - allowed
            excess[stack, function] = allowed - needed

    # THEN nothing needed is missing, and nothing is allowed that is not needed
    assert {key: grants for key, grants in missing.items() if grants} == {}
    assert {key: grants for key, grants in excess.items() if grants} == {
        (stack, function): grants for stack in STACKS for function, grants in KNOWN_EXCESS.items()
    }


def test_the_recorded_calls_are_the_ones_each_handler_is_known_to_make(recorded) -> None:
    # A change of what a handler calls shows here by name, before it shows as a policy mismatch.
    assert recorded == {
        "api": {
            ("dynamodb:PutItem", TABLE),
            ("dynamodb:GetItem", TABLE),
            ("sqs:SendMessage", MAIN_QUEUE),
        },
        "worker": {
            ("dynamodb:GetItem", TABLE),
            ("dynamodb:UpdateItem", TABLE),
            ("sqs:SendMessage", MAIN_QUEUE),
            ("sqs:ChangeMessageVisibility", MAIN_QUEUE),
            ("sqs:SendMessage", DLQ),
        },
        "dead-letter": {
            ("dynamodb:GetItem", TABLE),
            ("dynamodb:UpdateItem", TABLE),
            ("sqs:SendMessage", MAIN_QUEUE),
        },
        "reconciler": {
            ("dynamodb:GetItem", TABLE),
            ("dynamodb:PutItem", TABLE),
            ("dynamodb:Query", INDEX),
            ("dynamodb:BatchGetItem", TABLE),
            ("dynamodb:UpdateItem", TABLE),
            ("sqs:SendMessage", MAIN_QUEUE),
        },
    }
