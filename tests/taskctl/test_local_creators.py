"""The local deployer supports exactly what the program declares: every resource type and input
of every stack variant has a creator that applies it, and no creator applies anything the program
never declares (speculative support is untested code)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pulumi.runtime import MockResourceArgs

from taskctl.local.creators import CREATORS, SUPPORTED_INPUTS, EmulatorContext, unsupported_inputs
from taskctl.local.deployer import EmulatorMocks
from taskctl.program import CreatedResource, RecordingMocks, project_name, run_program

# Every stack, and the branches a stack file can switch on (an alarm e-mail adds its subscription,
# a failure-rate threshold its metric-math alarm).
VARIANTS = {
    "dev": {},
    "prod": {},
    "dev with alarmEmail": {"alarmEmail": "ops@example.com"},
    "dev with failedTaskRateAlarmPercent": {"failedTaskRateAlarmPercent": "5"},
}


@pytest.fixture(scope="module")
def declared() -> list[CreatedResource]:
    resources = []
    for variant, overrides in VARIANTS.items():
        mocks = RecordingMocks()
        namespaced = {f"{project_name()}:{key}": value for key, value in overrides.items()}
        run_program(variant.split()[0], mocks, config_overrides=namespaced)
        resources += [r for r in mocks.resources if r.type_token.startswith("aws:")]
    return resources


def _has(inputs: Mapping[str, Any], path: str) -> bool:
    """Whether `inputs` holds the dotted `path` (in any item of a list on the way)."""
    head, _, rest = path.partition(".")
    if head not in inputs:
        return False
    if not rest:
        return True
    value = inputs[head]
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, Mapping) and _has(item, rest) for item in items)


def test_every_declared_type_has_a_creator_and_every_creator_a_declared_type(declared) -> None:
    assert {r.type_token for r in declared} == set(CREATORS)


def test_every_declared_input_is_applied_by_its_creator(declared) -> None:
    unapplied = {
        (r.type_token, r.name): missing
        for r in declared
        if (missing := unsupported_inputs(r.type_token, r.inputs))
    }
    assert unapplied == {}


def test_no_creator_applies_an_input_the_program_never_declares(declared) -> None:
    never_declared = {
        (type_token, path)
        for type_token, paths in SUPPORTED_INPUTS.items()
        for path in paths
        if not any(r.type_token == type_token and _has(r.inputs, path) for r in declared)
    }
    assert never_declared == set()


def test_an_input_outside_the_creators_list_is_named_with_its_path() -> None:
    inputs = {
        "hashKey": "id",
        "attributes": [{"name": "id", "type": "S"}],
        "billingMode": "PAY_PER_REQUEST",
        "globalSecondaryIndexes": [{"name": "ix", "hashKey": "id", "rangeKey": "at"}],
        "streamEnabled": True,
    }

    assert unsupported_inputs("aws:dynamodb/table:Table", inputs) == [
        "globalSecondaryIndexes.hashKey",
        "globalSecondaryIndexes.rangeKey",
        "streamEnabled",
    ]


def test_a_metric_math_alarm_reaches_cloudwatch_as_metric_queries(
    declared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the failure-rate alarm as the program declares it (a stack sets the threshold)
    (rate_alarm,) = [
        r
        for r in declared
        if r.type_token == "aws:cloudwatch/metricAlarm:MetricAlarm" and "metricQueries" in r.inputs
    ]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        context = EmulatorContext(
            endpoint_url="http://127.0.0.1:1", region="eu-west-1", account_id="123456789012",
            port=1, _clients={"cloudwatch": cloudwatch},
        )  # fmt: skip

        # WHEN the local deployer creates it
        alarm_name, _ = EmulatorMocks(context, on_created=lambda _typ, _name: None).new_resource(
            MockResourceArgs(
                typ=rate_alarm.type_token,
                name=rate_alarm.name,
                inputs=rate_alarm.inputs,
                custom=True,
            )
        )

        # THEN CloudWatch holds the expression and its two inputs, and no single metric
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    assert "MetricName" not in alarm
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    assert queries["result"]["ReturnData"] is True
    assert "failed" in queries["result"]["Expression"]
    stat = queries["failed"]["MetricStat"]
    assert stat["Metric"]["MetricName"] == "FailedTasks"
    assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {
        "service": "worker",
        "stack": "dev",
    }
    assert (stat["Period"], stat["Stat"]) == (300, "Sum")
    assert alarm["Threshold"] == 5
