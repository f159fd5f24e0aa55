"""Parity: what runs in the emulator is what the program declares for the same stack.

The program is run again under plain recording mocks (no emulator, bundle targeted at the Lambda
runtime as under `pulumi up`); every declared AWS resource must exist in the local deployment,
and the settings that decide behaviour, read back from the emulator's own APIs, must equal the
declared ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import STACK, LocalStackUnderTest

from functions.policy import TaskPolicy
from functions.store import CHECK_INDEX
from taskctl.program import RecordingMocks, run_program

pytestmark = pytest.mark.e2e

# Environment variables naming other resources: their values are ARNs/URLs, which differ
# between AWS-shaped fakes and the emulator, so they are checked by what they point at.
RESOURCE_REFERENCE_VARIABLES = {"TASKS_TABLE_NAME", "TASKS_QUEUE_URL", "TASKS_DLQ_URL"}


@pytest.fixture(scope="module")
def declared() -> Iterator[RecordingMocks]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TASKS_BUNDLE_TARGET", raising=False)
        mocks = RecordingMocks()
        run_program(STACK, mocks)
        yield mocks


def _aws_resources(mocks: RecordingMocks) -> list[Any]:
    return [r for r in mocks.resources if r.type_token.startswith("aws:")]


def _deployed_by_name(local_stack: LocalStackUnderTest, type_token: str) -> dict[str, dict]:
    return {r["name"]: r for r in local_stack.deployed(type_token)}


def test_every_declared_resource_is_deployed_and_nothing_else(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    declared_set = {(r.type_token, r.name) for r in _aws_resources(declared)}
    deployed_set = {(r["type"], r["name"]) for r in local_stack.deployment()["resources"]}

    assert declared_set == deployed_set
    assert len(declared_set) >= 20  # the whole program, not an empty run


def test_queues_have_the_declared_timeouts_retention_and_redrive(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    sqs = local_stack.client("sqs")
    deployed = _deployed_by_name(local_stack, "aws:sqs/queue:Queue")
    arn_to_logical = {d["outputs"]["arn"]: name for name, d in deployed.items()}
    declared_queues = declared.created("aws:sqs/queue:Queue")
    declared_arn_to_logical = {queue.outputs["arn"]: queue.name for queue in declared_queues}
    for queue in declared_queues:
        attributes = sqs.get_queue_attributes(
            QueueUrl=deployed[queue.name]["id"], AttributeNames=["All"]
        )["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == queue.inputs.get(
            "visibilityTimeoutSeconds", 30
        ), queue.name
        assert int(attributes["MessageRetentionPeriod"]) == queue.inputs["messageRetentionSeconds"]
        if queue.inputs.get("redrivePolicy"):
            want = json.loads(queue.inputs["redrivePolicy"])
            got = json.loads(attributes["RedrivePolicy"])
            assert int(got["maxReceiveCount"]) == int(want["maxReceiveCount"])
            # the redrive target is the same queue of the program
            assert (
                arn_to_logical[got["deadLetterTargetArn"]]
                == declared_arn_to_logical[want["deadLetterTargetArn"]]
            )
        else:
            assert "RedrivePolicy" not in attributes


def test_functions_run_the_declared_handler_limits_and_environment(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    lam = local_stack.client("lambda")
    deployed = _deployed_by_name(local_stack, "aws:lambda/function:Function")
    for function in declared.created("aws:lambda/function:Function"):
        config = lam.get_function_configuration(FunctionName=deployed[function.name]["id"])
        inputs = function.inputs
        assert config["FunctionName"] == inputs["name"]
        assert config["Handler"] == inputs["handler"]
        assert config["Runtime"] == inputs["runtime"]
        assert config["Timeout"] == inputs["timeout"]
        assert config["MemorySize"] == inputs["memorySize"]
        assert config["Architectures"] == list(inputs["architectures"])
        want_env = inputs["environment"]["variables"]
        got_env = config["Environment"]["Variables"]
        assert set(got_env) == set(want_env)
        assert TaskPolicy.from_env(got_env) == TaskPolicy.from_env(want_env)
        for key in set(want_env) - RESOURCE_REFERENCE_VARIABLES:
            assert got_env[key] == want_env[key], key
        assert got_env["TASKS_TABLE_NAME"] == local_stack.outputs["tableName"]
        assert got_env["TASKS_QUEUE_URL"] == local_stack.outputs["queueUrl"]
        assert got_env["TASKS_DLQ_URL"] == local_stack.outputs["dlqUrl"]


def test_queue_triggers_have_the_declared_batching_and_concurrency(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    lam = local_stack.client("lambda")
    deployed = _deployed_by_name(local_stack, "aws:lambda/eventSourceMapping:EventSourceMapping")
    declared_mappings = declared.created("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert set(deployed) == {m.name for m in declared_mappings}
    for mapping in declared_mappings:
        got = lam.get_event_source_mapping(UUID=deployed[mapping.name]["id"])
        assert got["BatchSize"] == mapping.inputs["batchSize"]
        assert got["FunctionResponseTypes"] == list(mapping.inputs["functionResponseTypes"])
        assert (
            got["ScalingConfig"]["MaximumConcurrency"]
            == (mapping.inputs["scalingConfig"]["maximumConcurrency"])
        )
        assert got["State"] in ("Enabled", "Creating", "Enabling")


def test_table_has_the_declared_key_billing_and_ttl(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    dynamodb = local_stack.client("dynamodb")
    (table,) = declared.created("aws:dynamodb/table:Table")
    name = local_stack.outputs["tableName"]

    description = dynamodb.describe_table(TableName=name)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]

    assert description["KeySchema"] == [
        {"AttributeName": table.inputs["hashKey"], "KeyType": "HASH"}
    ]
    assert _attribute_types(description["AttributeDefinitions"]) == {
        a["name"]: a["type"] for a in table.inputs["attributes"]
    }
    assert description["BillingModeSummary"]["BillingMode"] == table.inputs["billingMode"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == table.inputs["ttl"]["attributeName"]


def _attribute_types(definitions: list[dict]) -> dict[str, str]:
    return {d["AttributeName"]: d["AttributeType"] for d in definitions}


def test_table_has_the_declared_secondary_indexes_and_they_answer_queries(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    dynamodb = local_stack.client("dynamodb")
    (table,) = declared.created("aws:dynamodb/table:Table")
    name = local_stack.outputs["tableName"]
    declared_indexes = {i["name"]: i for i in table.inputs["globalSecondaryIndexes"]}
    assert declared_indexes  # the reconciler's check index and the operator's status index

    description = dynamodb.describe_table(TableName=name)["Table"]
    deployed_indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}

    assert set(deployed_indexes) == set(declared_indexes)
    for index_name, index in declared_indexes.items():
        got = deployed_indexes[index_name]
        assert got["KeySchema"] == [
            {"AttributeName": key["attributeName"], "KeyType": key["keyType"]}
            for key in index["keySchemas"]
        ]
        assert got["Projection"]["ProjectionType"] == index["projectionType"]
        assert got["IndexStatus"] == "ACTIVE"

    # and the index really holds the tasks, with what it projects: the stranded task (stored as
    # the api stores one) is found by a query on its shard, the reconciler's query
    check_index = declared_indexes[CHECK_INDEX]
    shard, check_after = (key["attributeName"] for key in check_index["keySchemas"])
    stranded = local_stack.stranded_task
    assert stranded is not None
    keys = dynamodb.get_item(
        TableName=name,
        Key={table.inputs["hashKey"]: {"S": stranded.task_id}},
        ProjectionExpression="#shard",
        ExpressionAttributeNames={"#shard": shard},
    )["Item"]
    found = dynamodb.query(
        TableName=name,
        IndexName=check_index["name"],
        KeyConditionExpression="#shard = :shard AND #check >= :zero",
        ExpressionAttributeNames={
            "#shard": shard,
            "#check": check_after,
        },
        ExpressionAttributeValues={":shard": keys[shard], ":zero": {"N": "0"}},
    )["Items"]
    (entry,) = [i for i in found if i[table.inputs["hashKey"]]["S"] == stranded.task_id]
    if check_index["projectionType"] == "KEYS_ONLY":
        assert set(entry) == {
            table.inputs["hashKey"],
            shard,
            check_after,
        }


def test_schedules_invoke_the_declared_function_at_the_declared_rate(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    events = local_stack.client("events")
    lam = local_stack.client("lambda")
    declared_rules = declared.created("aws:cloudwatch/eventRule:EventRule")
    deployed_rules = _deployed_by_name(local_stack, "aws:cloudwatch/eventRule:EventRule")
    deployed_targets = _deployed_by_name(local_stack, "aws:cloudwatch/eventTarget:EventTarget")
    deployed_permissions = _deployed_by_name(local_stack, "aws:lambda/permission:Permission")
    assert declared_rules  # the reconciler's schedule
    assert set(deployed_rules) == {r.name for r in declared_rules}

    for rule in declared_rules:
        deployed_rule = deployed_rules[rule.name]
        got_rule = events.describe_rule(Name=deployed_rule["id"])
        assert got_rule["ScheduleExpression"] == rule.inputs["scheduleExpression"]
        assert got_rule["State"] == "ENABLED"
        # The target and the permission are declared next to their rule (same component);
        # their references to it are unknown to the recording mocks, so they are checked here
        # by what the emulator holds.
        (target,) = _siblings(declared, rule, "aws:cloudwatch/eventTarget:EventTarget")
        (permission,) = _siblings(declared, rule, "aws:lambda/permission:Permission")
        (got_target,) = events.list_targets_by_rule(Rule=deployed_rule["id"])["Targets"]
        assert got_target["Id"] == deployed_targets[target.name]["outputs"]["targetId"]
        function_name = target.inputs["arn"].rsplit(":", 1)[-1]
        function = lam.get_function_configuration(FunctionName=function_name)
        assert got_target["Arn"] == function["FunctionArn"]

        assert permission.inputs["function"] == function_name
        policy = json.loads(lam.get_policy(FunctionName=function_name)["Policy"])
        (statement,) = [
            s
            for s in policy["Statement"]
            if s["Sid"] == deployed_permissions[permission.name]["id"]
        ]
        assert statement["Principal"] == {"Service": permission.inputs["principal"]}
        assert statement["Action"] == permission.inputs["action"]
        assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == got_rule["Arn"]


def _siblings(mocks: RecordingMocks, resource: Any, type_token: str) -> list[Any]:
    return [r for r in mocks.created(type_token) if r.parent_urn == resource.parent_urn]


def test_api_has_the_declared_routes_stage_and_integration(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    apigw = local_stack.client("apigatewayv2")
    (api,) = _deployed_by_name(local_stack, "aws:apigatewayv2/api:Api").values()
    api_id = api["id"]

    routes = {r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]}
    stages = {s["StageName"] for s in apigw.get_stages(ApiId=api_id)["Items"]}
    integrations = apigw.get_integrations(ApiId=api_id)["Items"]

    assert routes == {
        r.inputs["routeKey"] for r in declared.created("aws:apigatewayv2/route:Route")
    }
    assert stages == {s.inputs["name"] for s in declared.created("aws:apigatewayv2/stage:Stage")}
    (declared_integration,) = declared.created("aws:apigatewayv2/integration:Integration")
    assert [(i["IntegrationType"], i["PayloadFormatVersion"]) for i in integrations] == [
        (
            declared_integration.inputs["integrationType"],
            declared_integration.inputs["payloadFormatVersion"],
        )
    ]


def test_log_groups_and_alarms_are_the_declared_ones(
    declared: RecordingMocks, local_stack: LocalStackUnderTest
) -> None:
    logs = local_stack.client("logs")
    cloudwatch = local_stack.client("cloudwatch")
    for group in declared.created("aws:cloudwatch/logGroup:LogGroup"):
        found = logs.describe_log_groups(logGroupNamePrefix=group.inputs["name"])["logGroups"]
        matching = [g for g in found if g["logGroupName"] == group.inputs["name"]]
        assert len(matching) == 1, group.inputs["name"]
        assert matching[0].get("retentionInDays") == group.inputs["retentionInDays"]
    deployed_alarms = _deployed_by_name(local_stack, "aws:cloudwatch/metricAlarm:MetricAlarm")
    for alarm in declared.created("aws:cloudwatch/metricAlarm:MetricAlarm"):
        (got,) = cloudwatch.describe_alarms(AlarmNames=[deployed_alarms[alarm.name]["id"]])[
            "MetricAlarms"
        ]
        assert got["MetricName"] == alarm.inputs["metricName"]
        assert got["Namespace"] == alarm.inputs["namespace"]
        assert got["Threshold"] == alarm.inputs["threshold"]
        assert got["EvaluationPeriods"] == alarm.inputs["evaluationPeriods"]
