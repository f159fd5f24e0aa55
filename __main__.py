"""The fault-tolerant task pipeline: one Pulumi stack per environment (`dev`, `prod`).

    client ──HTTP──► TaskApi (stage = stack) ──► api function ──► TaskTable ◄── reconciler
                                                   │                  ▲         (schedule) │
                                                   └──► main queue ──► worker function      │
                                                     ▲    │ redrive       │ last failed     │
                                                     │    ▼               ▼ attempt         │
                                                     │   DLQ ──► dead-letter function       │
                                                     └── overdue tasks, returned messages ──┘

This file only wires: it reads the stack's settings once, builds the components in the order of
the picture, and exports what `pulumi stack output` shows. Every difference between stacks lives
in Pulumi.<stack>.yaml.
"""

import dataclasses
import os

import pulumi
import pulumi_aws as aws

from components.iam import (
    index_query,
    message_hiding,
    queue_consume,
    queue_send,
    table_access,
)
from components.monitoring import (
    Monitoring,
    MonitoringArgs,
    healthy_dead_letter_age_s,
    healthy_message_age_s,
)
from components.packaging import BundleTarget, build_bundle
from components.stack_settings import read_stack_settings
from components.tagging import DefaultTags, tagged_provider
from components.task_api import TaskApi, TaskApiArgs
from components.task_auth import JwtIssuer, TaskAuth, TaskAuthArgs
from components.task_function import (
    FunctionRuntime,
    QueueTrigger,
    ScheduleTrigger,
    TaskFunction,
    TaskFunctionArgs,
    function_environment,
)
from components.task_queues import TaskQueues, TaskQueuesArgs
from components.task_table import TaskTable, TaskTableArgs
from functions.policy import API_AUTH_ENV, SettingsError

# -- the stack's settings, validated once --------------------------------------------------------
try:
    settings = read_stack_settings(pulumi.Config().get)
except SettingsError as error:
    raise pulumi.RunError(str(error)) from None
stack = pulumi.get_stack()
region = aws.config.region
if not region:
    raise pulumi.RunError("no AWS region: run `pulumi config set aws:region <region>`")
name_prefix = f"{pulumi.get_project()}-{stack}"
# What the resources are for, in cost reports that group several projects by service.
SERVICE = "task-processing"

# -- one AWS provider for everything, tagging every resource it manages ---------------------------
aws_provider = tagged_provider(
    "aws",
    region=region,
    tags=DefaultTags(project=pulumi.get_project(), stack=stack, service=SERVICE),
)
# Every component gets the provider; their children inherit it through `parent=self`.
uses_aws_provider = pulumi.ResourceOptions(providers=[aws_provider])

# -- storage and queues --------------------------------------------------------------------------
table = TaskTable(
    "tasks",
    TaskTableArgs(
        point_in_time_recovery=settings.pointInTimeRecovery,
        deletion_protection=settings.deletionProtection,
    ),
    opts=uses_aws_provider,
)
queues = TaskQueues(
    "tasks",
    TaskQueuesArgs(
        visibility_timeout_s=settings.visibility_timeout_s,
        max_receive_count=settings.max_receive_count,
    ),
    opts=uses_aws_provider,
)

# -- functions: one bundle, four handlers --------------------------------------------------------
# The bundle targets the stack's Lambda runtime (Python version and architecture); the local-stack
# tooling sets TASKS_BUNDLE_TARGET=local to build it for this machine's interpreter instead.
bundle = build_bundle(
    BundleTarget.from_environment(
        os.environ, settings.functionArchitecture, settings.functionPythonVersion
    ),
    # Shipping source only (no Python of that version here) slows every cold start: say so.
    warn=pulumi.log.warn,
)
function_runtime = FunctionRuntime(
    bundle=bundle,
    python_version=settings.functionPythonVersion,
    architecture=settings.functionArchitecture,
    memory_mb=settings.functionMemoryMb,
    timeout_s=settings.functionTimeoutSeconds,
    log_retention_days=settings.logRetentionDays,
    environment=function_environment(
        policy=settings.policy,
        table_name=table.name,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        stack=stack,
    ),
)
api_function = TaskFunction(
    "api",
    TaskFunctionArgs(
        function_name=f"{name_prefix}-api",
        service="api",
        handler="functions.api.handler",
        description="Accepts tasks and answers their status",
        # Its own timeout: API Gateway gives up after 30 s (the settings model checks it). It
        # knows whether callers are authenticated, so it refuses a task route without claims.
        runtime=dataclasses.replace(
            function_runtime,
            timeout_s=settings.apiTimeoutSeconds,
            environment={**function_runtime.environment, API_AUTH_ENV: settings.apiAuth},
        ),
        reserved_concurrency=settings.apiReservedConcurrency,
        permissions=(
            table_access(table.arn, "GetItem", "PutItem"),
            queue_send(queues.arn, sid="EnqueueTasks"),
        ),
    ),
    opts=uses_aws_provider,
)
worker_function = TaskFunction(
    "worker",
    TaskFunctionArgs(
        function_name=f"{name_prefix}-worker",
        service="worker",
        handler="functions.worker.handler",
        description="Runs task attempts, retries with backoff, dead-letters the last failure",
        runtime=function_runtime,
        permissions=(
            table_access(table.arn, "GetItem", "UpdateItem"),
            queue_consume(queues.arn, sid="ConsumeTasks"),
            queue_send(queues.arn, sid="ResendDelayedRetries"),
            message_hiding(queues.arn),
            queue_send(queues.dlq_arn, sid="DeadLetterFailedTasks"),
        ),
        trigger=QueueTrigger(
            queue_arn=queues.arn,
            batch_size=settings.workerBatchSize,
            maximum_concurrency=settings.workerMaxConcurrency,
        ),
    ),
    opts=uses_aws_provider,
)
dead_letter_function = TaskFunction(
    "dead-letter",
    TaskFunctionArgs(
        function_name=f"{name_prefix}-dead-letter",
        service="dead-letter",
        handler="functions.dead_letter.handler",
        description="Returns dead letters of unfinished tasks to the queue; fails poisonous ones",
        runtime=function_runtime,
        permissions=(
            table_access(table.arn, "GetItem", "UpdateItem"),
            queue_consume(queues.dlq_arn, sid="ConsumeDeadLetters"),
            queue_send(queues.arn, sid="ReturnToMainQueue"),
        ),
        trigger=QueueTrigger(
            queue_arn=queues.dlq_arn,
            batch_size=settings.workerBatchSize,
            maximum_concurrency=settings.workerMaxConcurrency,
        ),
    ),
    opts=uses_aws_provider,
)

reconciler_function = TaskFunction(
    "reconciler",
    TaskFunctionArgs(
        function_name=f"{name_prefix}-reconciler",
        service="reconciler",
        handler="functions.reconciler.handler",
        description="Re-enqueues every unfinished task whose progress is overdue",
        runtime=function_runtime,
        permissions=(
            # GetItem/PutItem: its cursor; BatchGetItem: the due tasks; UpdateItem: their checks.
            table_access(table.arn, "GetItem", "PutItem", "BatchGetItem", "UpdateItem"),
            index_query(table.check_index_arn),
            queue_send(queues.arn, sid="RequeueOverdueTasks"),
        ),
        trigger=ScheduleTrigger(interval_minutes=settings.reconcileIntervalMinutes),
    ),
    opts=uses_aws_provider,
)

# -- the HTTP API and who may call it -------------------------------------------------------------
# apiAuth jwt: tokens from an external OIDC issuer named in the config, or else from the stack's
# own Cognito user pool; none: the task routes are open.
auth = None
jwt_issuer = None
if settings.apiAuth == "jwt" and settings.apiJwtIssuer:
    jwt_issuer = JwtIssuer(issuer=settings.apiJwtIssuer, audiences=list(settings.jwt_audiences))
elif settings.apiAuth == "jwt":
    auth = TaskAuth(
        "callers", TaskAuthArgs(name_prefix=name_prefix, region=region), opts=uses_aws_provider
    )
    jwt_issuer = auth.jwt_issuer
api = TaskApi(
    "tasks",
    TaskApiArgs(
        stage_name=stack,
        function_name=api_function.name,
        function_arn=api_function.arn,
        throttle_rate_limit=settings.apiThrottleRateLimit,
        throttle_burst_limit=settings.apiThrottleBurstLimit,
        access_log_group_name=f"/aws/apigateway/{name_prefix}-access",
        log_retention_days=settings.logRetentionDays,
        auth=jwt_issuer,
    ),
    opts=uses_aws_provider,
)

# -- alarms and dashboard ------------------------------------------------------------------------
monitoring = Monitoring(
    "tasks",
    MonitoringArgs(
        stack=stack,
        region=region,
        dashboard_name=name_prefix,
        alarm_email=settings.alarmEmail,
        queue_name=queues.name,
        dead_letter_queue_name=queues.dlq_name,
        worker_function_name=worker_function.name,
        dead_letter_function_name=dead_letter_function.name,
        reconciler_function_name=reconciler_function.name,
        reconcile_interval_minutes=settings.reconcileIntervalMinutes,
        api_id=api.api_id,
        api_stage_name=stack,
        healthy_message_age_s=healthy_message_age_s(
            settings.policy, settings.functionTimeoutSeconds
        ),
        healthy_dead_letter_age_s=healthy_dead_letter_age_s(settings.visibility_timeout_s),
        failed_task_rate_alarm_percent=settings.failedTaskRateAlarmPercent,
    ),
    opts=uses_aws_provider,
)

# -- what `pulumi stack output` shows ------------------------------------------------------------
pulumi.export("apiUrl", api.url)
pulumi.export("tasksEndpoint", pulumi.Output.format("{0}/tasks", api.url))
pulumi.export("queueUrl", queues.url)
pulumi.export("dlqUrl", queues.dlq_url)
pulumi.export("tableName", table.name)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
pulumi.export("apiAuth", settings.apiAuth)
if jwt_issuer is not None:
    pulumi.export("authIssuer", jwt_issuer.issuer)
if auth is not None:
    # Where `python -m taskctl token` gets a token; the client's secret is not exported.
    pulumi.export("userPoolId", auth.user_pool_id)
    pulumi.export("appClientId", auth.client_id)
    pulumi.export("authTokenUrl", auth.token_url)
