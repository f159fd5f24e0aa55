"""The resource graph `__main__.py` declares, for dev and for prod, checked on resolved inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from pathlib import Path

import pulumi
from stack_runs import ProgramRun, run_stack

from functions.policy import POLICY_FIELDS, SDK_CALL_BUDGET_S, TaskPolicy
from functions.settings import REDRIVE_RECEIVE_MARGIN
from functions.store import (
    CHECK_AFTER_ATTRIBUTE,
    CHECK_INDEX,
    CHECK_SHARD_ATTRIBUTE,
    STATUS_INDEX,
    STATUS_SHARD_ATTRIBUTE,
    STATUS_SORT_ATTRIBUTE,
)
from taskctl.program import RecordingMocks, run_program

PROJECT_DIR = Path(__file__).resolve().parents[2]
SERVICES = ("api", "worker", "dead-letter", "reconciler")
QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
PERMISSION = "aws:lambda/permission:Permission"
SQS_MAX_RETENTION_S = 14 * 24 * 3600  # 1,209,600 s: the longest SQS keeps a message
API_GATEWAY_INTEGRATION_TIMEOUT_S = 30  # an HTTP API answers 503 once its integration takes this


def _main_queue(run: ProgramRun):
    return run.one(QUEUE, "tasks-main")


def _dlq(run: ProgramRun):
    return run.one(QUEUE, "tasks-dlq")


def _table(run: ProgramRun):
    return run.one("aws:dynamodb/table:Table", "tasks-table")


def _check_index_arn(run: ProgramRun) -> str:
    return f"{_table(run).outputs['arn']}/index/by-check-time"


def _grants(run: ProgramRun, service: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair the function's policy allows, except writing its own logs."""
    return {
        (action, resource)
        for statement in run.policy_of(service)["Statement"]
        for action in statement["Action"]
        for resource in statement["Resource"]
        if not action.startswith("logs:")
    }


# -- queues ----------------------------------------------------------------------------------


def test_main_queue_redrives_into_the_dlq_after_more_receives_than_attempts(program_run):
    # GIVEN the stack's settings WHEN the program runs THEN the main queue's redrive targets the DLQ
    main, dlq = _main_queue(program_run), _dlq(program_run)
    assert len(program_run.created(QUEUE)) == 2
    redrive = json.loads(main.inputs["redrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq.outputs["arn"]
    # AND a message may be received more often than the task has attempts before it is redriven
    assert redrive["maxReceiveCount"] == program_run.settings.maxAttempts + REDRIVE_RECEIVE_MARGIN
    assert redrive["maxReceiveCount"] > program_run.settings.maxAttempts


def test_main_queue_hides_a_batch_for_at_least_six_worker_timeouts(program_run):
    worker_timeout_s = program_run.function("worker").inputs["timeout"]
    assert worker_timeout_s == program_run.settings.functionTimeoutSeconds
    assert _main_queue(program_run).inputs["visibilityTimeoutSeconds"] >= 6 * worker_timeout_s


def test_every_queue_a_function_consumes_hides_a_batch_for_six_of_its_timeouts(program_run):
    # Lambda rejects a mapping whose queue visibility is below the function's timeout.
    queues = {queue.outputs["arn"]: queue for queue in program_run.created(QUEUE)}
    functions = {f.outputs["arn"]: f for f in program_run.created(FUNCTION)}
    for mapping in program_run.created(MAPPING):
        queue = queues[mapping.inputs["eventSourceArn"]]
        function = functions[mapping.inputs["functionName"]]
        assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * function.inputs["timeout"]


def test_both_queues_are_encrypted_and_keep_messages_for_sqs_maximum_of_14_days(program_run):
    main, dlq = _main_queue(program_run), _dlq(program_run)
    assert main.inputs["sqsManagedSseEnabled"] is True
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    # THEN no message of an unfinished task expires before the reconciler can act (DESIGN §3:
    # main queue retention 14 days), which is as long as SQS keeps anything
    assert main.inputs["messageRetentionSeconds"] >= 14 * 24 * 3600
    assert main.inputs["messageRetentionSeconds"] == SQS_MAX_RETENTION_S
    # AND a dead letter keeps its first enqueue time, so the DLQ keeps messages at least as long
    assert dlq.inputs["messageRetentionSeconds"] == SQS_MAX_RETENTION_S
    assert dlq.inputs["messageRetentionSeconds"] >= main.inputs["messageRetentionSeconds"]


def test_dlq_accepts_redrive_only_from_the_main_queue(program_run):
    (allow,) = program_run.created("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.inputs["queueUrl"] == _dlq(program_run).outputs["url"]
    policy = json.loads(allow.inputs["redriveAllowPolicy"])
    assert policy == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [_main_queue(program_run).outputs["arn"]],
    }


# -- event source mappings -------------------------------------------------------------------


def test_worker_consumes_the_main_queue_reporting_batch_item_failures(program_run):
    worker = program_run.function("worker")
    (mapping,) = [
        m for m in program_run.created(MAPPING) if m.inputs["functionName"] == worker.outputs["arn"]
    ]
    assert mapping.inputs["eventSourceArn"] == _main_queue(program_run).outputs["arn"]
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["batchSize"] == program_run.settings.workerBatchSize
    assert (
        mapping.inputs["scalingConfig"]["maximumConcurrency"]
        == program_run.settings.workerMaxConcurrency
    )


def test_dead_letter_function_consumes_the_dlq_and_api_and_reconciler_consume_nothing(
    program_run,
):
    mappings = program_run.created(MAPPING)
    by_function = {m.inputs["functionName"]: m for m in mappings}
    assert len(mappings) == len(by_function) == 2
    dead_letter = by_function[program_run.function("dead-letter").outputs["arn"]]
    assert dead_letter.inputs["eventSourceArn"] == _dlq(program_run).outputs["arn"]
    assert dead_letter.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert program_run.function("api").outputs["arn"] not in by_function
    assert program_run.function("reconciler").outputs["arn"] not in by_function


# -- the reconciler's schedule -----------------------------------------------------------------


def _rate(minutes: int) -> str:
    """EventBridge's rate grammar: the unit is singular for 1 and plural otherwise."""
    return f"rate({minutes} minute)" if minutes == 1 else f"rate({minutes} minutes)"


def test_reconciler_runs_on_a_schedule_at_the_stack_interval(program_run):
    # GIVEN the stack's reconcileIntervalMinutes WHEN the program runs THEN one schedule exists
    (rule,) = program_run.created(RULE)
    # AND it fires at that interval, in a rate expression EventBridge accepts
    assert rule.inputs["scheduleExpression"] == _rate(program_run.settings.reconcileIntervalMinutes)
    assert "eventPattern" not in rule.inputs
    assert rule.inputs.get("state", "ENABLED") == "ENABLED"
    assert rule.inputs.get("isEnabled", True) is True


def test_dev_reconciles_every_minute_and_prod_every_five_minutes():
    # The two stacks also exercise both forms of the unit EventBridge accepts.
    (dev_rule,) = run_stack("dev").created(RULE)
    (prod_rule,) = run_stack("prod").created(RULE)
    assert dev_rule.inputs["scheduleExpression"] == "rate(1 minute)"
    assert prod_rule.inputs["scheduleExpression"] == "rate(5 minutes)"


def test_reconciler_schedule_target_and_invoke_permission_are_wired_to_each_other(program_run):
    (rule,) = program_run.created(RULE)
    reconciler_function = program_run.function("reconciler")
    # THEN the schedule's only target is the reconciler function
    (target,) = program_run.created(TARGET)
    assert target.inputs["rule"] == rule.outputs["name"]
    assert target.inputs["arn"] == reconciler_function.outputs["arn"]
    assert "roleArn" not in target.inputs  # Lambda targets use a resource policy, not a role
    # AND EventBridge may invoke the reconciler for exactly this rule, and nothing else
    (permission,) = [
        p
        for p in program_run.created(PERMISSION)
        if p.inputs["principal"] == "events.amazonaws.com"
    ]
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["function"] == reconciler_function.outputs["name"]
    assert permission.inputs["sourceArn"] == rule.outputs["arn"]
    assert "qualifier" not in permission.inputs


# -- table -----------------------------------------------------------------------------------


def test_table_is_on_demand_keyed_by_task_id_with_ttl(program_run):
    table = _table(program_run).inputs
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["hashKey"] == "taskId"
    assert "rangeKey" not in table
    assert table["ttl"] == {"attributeName": "expiresAt", "enabled": True}
    # THEN it defines exactly the key attributes of the table and its indexes (DynamoDB rejects
    # an attribute definition that no key uses); the TTL attribute is no key
    assert sorted(table["attributes"], key=lambda attribute: attribute["name"]) == [
        {"name": "checkAfter", "type": "N"},
        {"name": "checkShard", "type": "S"},
        {"name": "listedAt", "type": "S"},
        {"name": "statusShard", "type": "S"},
        {"name": "taskId", "type": "S"},
    ]


def test_table_declares_the_keys_only_check_and_status_indexes(program_run):
    table = _table(program_run).inputs
    # THEN there are two global indexes, projecting only the keys: the reconciler's, by shard
    # and check time, and the operator's, by status shard and last update
    check, status = table["globalSecondaryIndexes"]
    assert check == {
        "name": "by-check-time",
        "keySchemas": [
            {"attributeName": "checkShard", "keyType": "HASH"},
            {"attributeName": "checkAfter", "keyType": "RANGE"},
        ],
        "projectionType": "KEYS_ONLY",
    }
    assert status == {
        "name": "by-status",
        "keySchemas": [
            {"attributeName": "statusShard", "keyType": "HASH"},
            {"attributeName": "listedAt", "keyType": "RANGE"},
        ],
        "projectionType": "KEYS_ONLY",
    }
    assert "localSecondaryIndexes" not in table
    # AND the names are the ones the functions write and query
    assert (check["name"], *(k["attributeName"] for k in check["keySchemas"])) == (
        CHECK_INDEX,
        CHECK_SHARD_ATTRIBUTE,
        CHECK_AFTER_ATTRIBUTE,
    )
    assert (status["name"], *(k["attributeName"] for k in status["keySchemas"])) == (
        STATUS_INDEX,
        STATUS_SHARD_ATTRIBUTE,
        STATUS_SORT_ATTRIBUTE,
    )


def test_table_protection_follows_the_stack_settings(program_run):
    table = _table(program_run).inputs
    settings = program_run.settings
    assert table["pointInTimeRecovery"]["enabled"] is settings.pointInTimeRecovery
    assert table["deletionProtectionEnabled"] is settings.deletionProtection


def test_prod_table_has_point_in_time_recovery_and_deletion_protection():
    table = _table(run_stack("prod")).inputs
    assert table["pointInTimeRecovery"]["enabled"] is True
    assert table["deletionProtectionEnabled"] is True


# -- IAM -------------------------------------------------------------------------------------


def test_every_statement_names_exact_actions_and_resources(program_run):
    exact_arns = {
        _table(program_run).outputs["arn"],
        _check_index_arn(program_run),
        _main_queue(program_run).outputs["arn"],
        _dlq(program_run).outputs["arn"],
    }
    for service in SERVICES:
        policy = program_run.policy_of(service)
        log_group_arn = program_run.one(LOG_GROUP, f"{service}-logs").outputs["arn"]
        assert policy["Statement"], service
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions, resources = statement["Action"], statement["Resource"]
            assert all("*" not in action for action in actions), (service, statement)
            assert all(resource.strip() != "*" for resource in resources), (service, statement)
            services = {action.split(":")[0] for action in actions}
            if services & {"sqs", "dynamodb"}:
                assert set(resources) <= exact_arns, (service, statement)
            if services == {"logs"}:
                assert resources == [f"{log_group_arn}:*"], (service, statement)


def test_each_function_may_do_exactly_its_own_job(program_run):
    table = _table(program_run).outputs["arn"]
    main = _main_queue(program_run).outputs["arn"]
    dlq = _dlq(program_run).outputs["arn"]

    def on_table(*operations: str) -> set[tuple[str, str]]:
        return {(f"dynamodb:{operation}", table) for operation in operations}

    def consume(queue: str) -> set[tuple[str, str]]:
        # what Lambda's poller needs for an SQS event source (GetQueueAttributes included)
        actions = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
        return {(f"sqs:{action}", queue) for action in actions}

    expected = {
        # create and read tasks, enqueue them; nothing to delete: the reconciler covers a lost send
        "api": on_table("GetItem", "PutItem") | {("sqs:SendMessage", main)},
        # claim and finish attempts; re-send a message delayed until its retry (the backoff
        # delay), or re-hide it (a live lease; a failed re-send); the last failed attempt goes to
        # the DLQ
        "worker": on_table("GetItem", "UpdateItem")
        | consume(main)
        | {
            ("sqs:SendMessage", main),
            ("sqs:ChangeMessageVisibility", main),
            ("sqs:SendMessage", dlq),
        },
        # fail poisonous tasks; return the dead letters of unfinished tasks to the main queue
        "dead-letter": on_table("GetItem", "UpdateItem")
        | consume(dlq)
        | {("sqs:SendMessage", main)},
        # its cursor (GetItem/PutItem), the due tasks (BatchGetItem), their checks (UpdateItem)
        "reconciler": on_table("GetItem", "PutItem", "BatchGetItem", "UpdateItem")
        | {("dynamodb:Query", _check_index_arn(program_run)), ("sqs:SendMessage", main)},
    }
    for service in SERVICES:
        assert _grants(program_run, service) == expected[service], service


def test_only_the_reconciler_may_query_and_only_the_check_index(program_run):
    index_arn = _check_index_arn(program_run)
    for service in SERVICES:
        queried = {
            resource
            for action, resource in _grants(program_run, service)
            if action == "dynamodb:Query"
        }
        assert queried == ({index_arn} if service == "reconciler" else set()), service
    (statement,) = [
        s
        for s in program_run.policy_of("reconciler")["Statement"]
        if "dynamodb:Query" in s["Action"]
    ]
    assert statement["Action"] == ["dynamodb:Query"]
    assert statement["Resource"] == [index_arn]
    # AND no function may scan the table or delete a task: only TTL removes (finished) records
    for service in SERVICES:
        actions = {action for action, _ in _grants(program_run, service)}
        assert not actions & {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def test_each_function_has_its_own_role_assumable_only_by_lambda(program_run):
    roles = program_run.created("aws:iam/role:Role")
    assert len(roles) == len(SERVICES)
    role_arns = [program_run.function(service).inputs["role"] for service in SERVICES]
    assert sorted(role_arns) == sorted(role.outputs["arn"] for role in roles)
    for role in roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"


# -- functions -------------------------------------------------------------------------------


def test_every_function_has_a_log_group_with_the_stack_retention(program_run):
    for service in SERVICES:
        function = program_run.function(service)
        log_group = program_run.one(LOG_GROUP, f"{service}-logs")
        assert log_group.inputs["name"] == f"/aws/lambda/{function.inputs['name']}"
        assert log_group.inputs["retentionInDays"] == program_run.settings.logRetentionDays


def test_functions_run_their_handler_on_the_stack_python_sized_from_the_settings(program_run):
    settings = program_run.settings
    for service in SERVICES:
        function = program_run.function(service).inputs
        module, _, attribute = function["handler"].rpartition(".")
        assert attribute == "handler"
        assert (PROJECT_DIR / (module.replace(".", "/") + ".py")).is_file(), function["handler"]
        assert function["runtime"] == f"python{settings.functionPythonVersion}"
        assert function["architectures"] == [settings.functionArchitecture]
        assert function["memorySize"] == settings.functionMemoryMb
        expected_timeout_s = (
            settings.apiTimeoutSeconds if service == "api" else settings.functionTimeoutSeconds
        )
        assert function["timeout"] == expected_timeout_s, service
        # AND every function outlives one AWS call with its SDK retries
        assert function["timeout"] >= SDK_CALL_BUDGET_S, service


def test_api_function_times_out_on_its_own_setting_before_api_gateway_gives_up(program_run):
    timeout_s = program_run.function("api").inputs["timeout"]
    assert timeout_s == program_run.settings.apiTimeoutSeconds
    assert timeout_s < API_GATEWAY_INTEGRATION_TIMEOUT_S
    # AND the other functions keep the shared timeout the queues' visibility is derived from
    for service in ("worker", "dead-letter", "reconciler"):
        timeout_s = program_run.function(service).inputs["timeout"]
        assert timeout_s == program_run.settings.functionTimeoutSeconds, service


def test_function_code_is_the_bundle_whose_hash_it_declares(program_run):
    for service in SERVICES:
        function = program_run.function(service).inputs
        archive = Path(function["code"].path)
        digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
        assert function["sourceCodeHash"] == digest


def test_function_environment_carries_the_policy_and_the_resources(program_run):
    for service in SERVICES:
        env = program_run.function(service).inputs["environment"]["variables"]
        assert TaskPolicy.from_env(env) == program_run.settings.policy
        assert env["TASKS_TABLE_NAME"] == _table(program_run).outputs["name"]
        assert env["TASKS_QUEUE_URL"] == _main_queue(program_run).outputs["url"]
        assert env["TASKS_DLQ_URL"] == _dlq(program_run).outputs["url"]
        assert env["TASKS_STACK"] == program_run.stack
        assert env["TASKS_RECOVERY_GRACE_SECONDS"] == str(program_run.settings.recoveryGraceSeconds)
        assert env["POWERTOOLS_SERVICE_NAME"] == service
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "FaultTolerantTasks"


# -- API -------------------------------------------------------------------------------------


def test_api_routes_both_task_routes_and_the_fallback_to_the_api_function(program_run):
    (api,) = program_run.created("aws:apigatewayv2/api:Api")
    assert api.inputs["protocolType"] == "HTTP"
    (integration,) = program_run.created("aws:apigatewayv2/integration:Integration")
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert integration.inputs["integrationUri"] == program_run.function("api").outputs["arn"]
    routes = program_run.created("aws:apigatewayv2/route:Route")
    assert sorted(route.inputs["routeKey"] for route in routes) == [
        "$default",
        "GET /tasks/{taskId}",
        "POST /tasks",
    ]
    for route in routes:
        assert route.inputs["apiId"] == api.resource_id
        assert route.inputs["target"] == f"integrations/{integration.resource_id}"


def test_stage_is_named_after_the_stack_throttled_and_access_logged(program_run):
    (stage,) = program_run.created("aws:apigatewayv2/stage:Stage")
    settings = program_run.settings
    assert stage.inputs["name"] == program_run.stack
    assert stage.inputs["autoDeploy"] is True
    throttling = stage.inputs["defaultRouteSettings"]
    assert throttling["throttlingRateLimit"] == settings.apiThrottleRateLimit
    assert throttling["throttlingBurstLimit"] == settings.apiThrottleBurstLimit
    access_logs = program_run.one(LOG_GROUP, "tasks-access-logs")
    assert stage.inputs["accessLogSettings"]["destinationArn"] == access_logs.outputs["arn"]
    assert json.loads(stage.inputs["accessLogSettings"]["format"])["requestId"]
    assert access_logs.inputs["retentionInDays"] == settings.logRetentionDays


def test_only_this_api_stage_may_invoke_the_api_function(program_run):
    api_function_name = program_run.function("api").outputs["name"]
    (permission,) = [
        p for p in program_run.created(PERMISSION) if p.inputs["function"] == api_function_name
    ]
    (api,) = program_run.created("aws:apigatewayv2/api:Api")
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["function"] == program_run.function("api").outputs["name"]
    assert permission.inputs["sourceArn"].startswith(
        f"{api.outputs['executionArn']}/{program_run.stack}/"
    )


def test_only_the_api_and_the_reconciler_may_be_invoked_by_another_service(program_run):
    invocable = {
        (p.inputs["function"], p.inputs["principal"]) for p in program_run.created(PERMISSION)
    }
    assert len(invocable) == len(program_run.created(PERMISSION))
    assert invocable == {
        (program_run.function("api").outputs["name"], "apigateway.amazonaws.com"),
        (program_run.function("reconciler").outputs["name"], "events.amazonaws.com"),
    }


# -- exports ---------------------------------------------------------------------------------


def test_exports_are_what_pulumi_stack_output_shows(program_run):
    outputs = program_run.outputs
    assert set(outputs) == {
        "apiUrl",
        "tasksEndpoint",
        "queueUrl",
        "dlqUrl",
        "tableName",
        "dashboardUrl",
        # Both stacks authenticate callers with their own user pool (tests/components/
        # test_api_auth.py covers the other settings).
        "apiAuth",
        "authIssuer",
        "userPoolId",
        "appClientId",
        "authTokenUrl",
    }
    (api,) = program_run.created("aws:apigatewayv2/api:Api")
    assert outputs["apiUrl"] == f"{api.outputs['apiEndpoint']}/{program_run.stack}"
    assert outputs["tasksEndpoint"] == outputs["apiUrl"] + "/tasks"
    assert outputs["queueUrl"] == _main_queue(program_run).outputs["url"]
    assert outputs["dlqUrl"] == _dlq(program_run).outputs["url"]
    assert outputs["tableName"] == _table(program_run).outputs["name"]
    (dashboard,) = program_run.created("aws:cloudwatch/dashboard:Dashboard")
    assert outputs["dashboardUrl"].endswith(f"#dashboards:name={dashboard.inputs['dashboardName']}")


def test_components_use_project_type_tokens_and_parent_children_named_after_them(program_run):
    resources = program_run.mocks.resources
    components = [r for r in resources if r.type_token.startswith("fault-tolerant-tasks:")]
    modules = {r.type_token.split(":")[1] for r in components}
    assert modules == {
        "task_queues",
        "task_table",
        "task_function",
        "task_api",
        "task_auth",
        "monitoring",
    }
    for module in modules:
        assert (PROJECT_DIR / "components" / f"{module}.py").is_file()
    for component in components:
        assert component.parent_urn.split("::")[-2] == "pulumi:pulumi:Stack"
    # THEN every AWS resource is a child of a component and named after it (the one AWS provider
    # belongs to the whole stack)
    for resource in resources:
        if resource in components or resource.type_token.startswith("pulumi:providers:"):
            continue
        parent_type, parent_name = resource.parent_urn.split("::")[-2:]
        assert parent_type.split("$")[-1].startswith("fault-tolerant-tasks:"), resource.name
        assert resource.name.startswith(f"{parent_name}-"), (resource.name, parent_name)


# -- dev versus prod -------------------------------------------------------------------------


def test_dev_and_prod_differences_reach_the_functions_environment():
    dev, prod = run_stack("dev"), run_stack("prod")
    dev_env = dev.function("worker").inputs["environment"]["variables"]
    prod_env = prod.function("worker").inputs["environment"]["variables"]
    differing_policy = {
        name
        for name in POLICY_FIELDS
        if getattr(dev.settings, name) != getattr(prod.settings, name)
    }
    assert differing_policy, "the stack files should differ in their retry policy"
    assert TaskPolicy.from_env(dev_env) == dev.settings.policy
    assert TaskPolicy.from_env(prod_env) == prod.settings.policy
    changed_vars = {name for name in dev_env if dev_env[name] != prod_env.get(name)}
    expected = {
        f"TASKS_{''.join('_' + c if c.isupper() else c for c in n).upper()}"
        for n in differing_policy
    }
    assert expected <= changed_vars


class _EchoMocks(pulumi.runtime.Mocks):
    """The plainest mocks (Pulumi's unit-test example): state = inputs, no computed outputs."""

    def __init__(self) -> None:
        self.declared: list[tuple[str, str]] = []

    def new_resource(self, args):
        self.declared.append((args.typ, args.name))
        return f"{args.name}_id", dict(args.inputs)

    def call(self, args):
        return {}


def test_the_same_graph_is_declared_under_mocks_that_compute_no_outputs(program_run):
    # GIVEN mocks that return no ARN, URL or name WHEN the program runs under them
    echo = _EchoMocks()
    run_program(program_run.stack, echo)
    # THEN it still completes and declares exactly the resources it declares with rich outputs
    recorded = sorted((r.type_token, r.name) for r in program_run.mocks.resources)
    assert sorted(echo.declared) == recorded


def test_the_program_declares_no_input_pulumi_aws_deprecates(program_run) -> None:
    # A deprecated input is a warning on every `pulumi up` of every stack, and an input that a
    # later major version of the provider removes. The provider warns each time it reads one.
    # (`program_run` has run the program once already, so pulumi_aws's modules are imported and
    # their own import-time warnings are not counted here.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_program(program_run.stack, RecordingMocks())

    deprecated = {
        str(w.message)
        for w in caught
        if issubclass(w.category, DeprecationWarning) and "pulumi_aws" in w.filename
    }
    assert deprecated == set()
