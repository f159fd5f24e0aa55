"""The deployer's contracts that need no emulator: unknown types and inputs fail loudly,
components pass through, numbers reach AWS as integers, schedules are found in a deployment, and
the launcher's API Gateway event fix."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import MockCallArgs, MockResourceArgs

from taskctl.local import creators
from taskctl.local.creators import Created, EmulatorContext
from taskctl.local.deployer import DeploymentError, EmulatorMocks
from taskctl.local.ministack_launcher import _with_stage_in_path
from taskctl.local.stack import Schedule, schedules_of


@pytest.fixture
def mocks() -> EmulatorMocks:
    context = EmulatorContext(
        endpoint_url="http://127.0.0.1:1", region="eu-west-1", account_id="000000000000",
        port=1,
    )  # fmt: skip
    return EmulatorMocks(context, on_created=lambda _typ, _name: None)


def test_an_unknown_resource_type_fails_loudly_with_its_token(mocks: EmulatorMocks) -> None:
    args = MockResourceArgs(typ="aws:ec2/instance:Instance", name="box", inputs={}, custom=True)

    with pytest.raises(DeploymentError, match="aws:ec2/instance:Instance"):
        mocks.new_resource(args)
    assert mocks.errors and "aws:ec2/instance:Instance" in mocks.errors[0]


def test_an_unanswered_invoke_fails_loudly_with_its_token(mocks: EmulatorMocks) -> None:
    args = MockCallArgs(token="aws:ec2/getAmi:getAmi", args={}, provider="")

    with pytest.raises(DeploymentError, match="aws:ec2/getAmi:getAmi"):
        mocks.call(args)


def test_component_resources_pass_through_without_touching_the_emulator(
    mocks: EmulatorMocks,
) -> None:
    args = MockResourceArgs(
        typ="fault-tolerant-tasks:task_queues:TaskQueues", name="tasks", inputs={}, custom=False
    )

    resource_id, outputs = mocks.new_resource(args)

    assert resource_id and outputs == {}
    assert mocks.resources == []


def test_created_resources_return_the_emulator_outputs_and_record_skipped_settings(
    mocks: EmulatorMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_creator(_ctx: EmulatorContext, logical: str, inputs: dict) -> Created:
        seen.update(inputs)
        return Created(id=f"{logical}-real", outputs={"arn": "arn:real"}, notes=["not here"])

    monkeypatch.setitem(creators.CREATORS, "aws:test/thing:Thing", fake_creator)
    args = MockResourceArgs(
        typ="aws:test/thing:Thing", name="t", inputs={"count": 3.0, "rate": 0.5}, custom=True
    )

    resource_id, outputs = mocks.new_resource(args)

    assert resource_id == "t-real"
    assert outputs["arn"] == "arn:real"
    # Pulumi hands numbers over as floats; whole ones reach AWS as integers
    assert seen == {"count": 3, "rate": 0.5} and isinstance(seen["count"], int)
    assert [(r.name, r.notes) for r in mocks.resources] == [("t", ["not here"])]


@pytest.mark.parametrize(
    ("typ", "inputs", "refused"),
    [
        (
            "aws:cloudwatch/eventRule:EventRule",
            {"scheduleExpression": "rate(1 minute)", "eventPattern": '{"source": ["x"]}'},
            "eventPattern",
        ),
        (
            "aws:cloudwatch/eventTarget:EventTarget",
            {"rule": "r", "arn": "arn:aws:lambda:eu-west-1:0:function:f", "input": "{}"},
            "input",
        ),
        (
            "aws:dynamodb/table:Table",
            {
                "hashKey": "id",
                "attributes": [{"name": "id", "type": "S"}],
                "billingMode": "PAY_PER_REQUEST",
                "globalSecondaryIndexes": [{"name": "ix", "hashKey": "id"}],
            },
            "globalSecondaryIndexes.hashKey",
        ),
    ],
)
def test_a_declared_input_the_local_stack_would_not_apply_fails_loudly(
    mocks: EmulatorMocks, typ: str, inputs: dict, refused: str
) -> None:
    args = MockResourceArgs(typ=typ, name="thing", inputs=inputs, custom=True)

    with pytest.raises(DeploymentError, match=refused):
        mocks.new_resource(args)


def _deployed(typ: str, name: str, inputs: dict, outputs: dict) -> dict:
    return {"type": typ, "name": name, "id": name, "inputs": inputs, "outputs": outputs}


def test_schedules_are_the_rules_whose_targets_are_functions_of_the_deployment() -> None:
    function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:tasks-reconciler"
    deployment = {
        "resources": [
            _deployed(
                "aws:lambda/function:Function",
                "reconciler-function",
                {"environment": {"variables": {"POWERTOOLS_SERVICE_NAME": "reconciler"}}},
                {"name": "tasks-reconciler", "arn": function_arn},
            ),
            _deployed(
                "aws:cloudwatch/eventRule:EventRule",
                "reconciler-schedule",
                {"scheduleExpression": "rate(5 minutes)"},
                {"name": "reconciler-schedule-1a2b3c4", "arn": "arn:aws:events:::rule/x"},
            ),
            _deployed(
                "aws:cloudwatch/eventTarget:EventTarget",
                "reconciler-schedule-target",
                {"rule": "reconciler-schedule-1a2b3c4", "arn": function_arn},
                {"targetId": "t"},
            ),
        ]
    }

    assert schedules_of(deployment) == [
        Schedule(
            function="reconciler", expression="rate(5 minutes)", rule="reconciler-schedule-1a2b3c4"
        )
    ]


def _http_api_event(stage: str, raw_path: str) -> dict:
    return {
        "version": "2.0",
        "rawPath": raw_path,
        "requestContext": {"stage": stage, "http": {"method": "GET", "path": raw_path}},
    }


def test_launcher_puts_a_named_stage_in_the_path_as_aws_does() -> None:
    fixed = _with_stage_in_path(_http_api_event("dev", "/tasks/1"))

    assert fixed["rawPath"] == "/dev/tasks/1"
    assert fixed["requestContext"]["http"]["path"] == "/dev/tasks/1"


@pytest.mark.parametrize(
    "event",
    [
        _http_api_event("$default", "/tasks"),  # the default stage is not in the path on AWS
        _http_api_event("dev", "/dev/tasks"),  # already AWS-shaped: left alone
        {"Records": []},  # not an API Gateway event
    ],
)
def test_launcher_leaves_other_events_unchanged(event: dict) -> None:
    assert _with_stage_in_path(event) == event


def test_the_programs_aws_provider_passes_through_in_the_emulators_region(
    mocks: EmulatorMocks,
) -> None:
    tags = '{"tags": {"project": "p", "stack": "dev", "service": "s"}}'
    args = MockResourceArgs(
        typ="pulumi:providers:aws",
        name="aws",
        inputs={"region": "eu-west-1", "defaultTags": tags},
        custom=True,
    )

    resource_id, outputs = mocks.new_resource(args)

    assert resource_id and outputs["region"] == "eu-west-1"
    assert mocks.resources == [] and mocks.errors == []


@pytest.mark.parametrize(
    ("typ", "inputs", "refused"),
    [
        ("pulumi:providers:aws", {"region": "us-east-1"}, "us-east-1"),
        ("pulumi:providers:random", {}, "pulumi:providers:random"),
    ],
)
def test_a_provider_the_local_stack_cannot_serve_fails_loudly(
    mocks: EmulatorMocks, typ: str, inputs: dict, refused: str
) -> None:
    args = MockResourceArgs(typ=typ, name="other", inputs=inputs, custom=True)

    with pytest.raises(DeploymentError, match=refused):
        mocks.new_resource(args)
