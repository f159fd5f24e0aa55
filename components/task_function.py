"""One Lambda function of the system (api, worker, dead-letter, reconciler) with all it owns.

Each function gets its own IAM role with an inline least-privilege policy, its own log group with
a retention period, the shared code bundle, and optionally the trigger that runs it: an SQS queue
(`QueueTrigger`) or a schedule (`ScheduleTrigger`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import (
    PolicyStatement,
    lambda_trust_policy_json,
    log_writing,
    policy_json,
)
from components.packaging import Bundle
from functions.metrics import METRICS_NAMESPACE
from functions.policy import TaskPolicy
from functions.settings import (
    ESM_MAX_BATCH_SIZE,
    ESM_MAX_CONCURRENCY,
    ESM_MIN_BATCH_SIZE,
    ESM_MIN_CONCURRENCY,
)

# Lambda's log group name for a function; creating it ourselves sets its retention and lets
# `pulumi destroy` remove it (one Lambda created implicitly would never expire nor be deleted).
LOG_GROUP_PREFIX = "/aws/lambda/"


def function_environment(
    *,
    policy: TaskPolicy,
    table_name: pulumi.Input[str],
    queue_url: pulumi.Input[str],
    dlq_url: pulumi.Input[str],
    stack: str,
) -> dict[str, pulumi.Input[str]]:
    """The environment every function shares: the retry policy and where the resources are.

    The functions parse it back with `TaskPolicy.from_env` and `functions.runtime`.
    """
    return {
        **policy.to_env(),
        "TASKS_TABLE_NAME": table_name,
        "TASKS_QUEUE_URL": queue_url,
        "TASKS_DLQ_URL": dlq_url,
        "TASKS_STACK": stack,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    }


@dataclass(frozen=True, kw_only=True)
class FunctionRuntime:
    """What every function of a stack shares: the code, the Lambda Python version ("3.14", the
    `functionPythonVersion` setting) and the sizing from the stack settings."""

    bundle: Bundle
    python_version: str
    architecture: str
    memory_mb: int
    timeout_s: int
    log_retention_days: int
    environment: Mapping[str, pulumi.Input[str]]

    def __post_init__(self) -> None:
        # A Lambda bundle carries native wheels (and maybe bytecode) for one Python version: on
        # another runtime pydantic-core would not even import. The local target runs on this
        # machine's interpreter, whatever the declared runtime.
        built_for = self.bundle.target.lambda_runtime_id
        if built_for is not None and built_for != self.lambda_runtime_id:
            raise ValueError(
                f"python_version={self.python_version!r} does not match the bundle, built for "
                f"{built_for}"
            )

    @property
    def lambda_runtime_id(self) -> str:
        """Lambda's identifier of the runtime, `python3.14`."""
        return f"python{self.python_version}"


@dataclass(frozen=True, kw_only=True)
class QueueTrigger:
    """An SQS event source: batches of `batch_size`, at most `maximum_concurrency` at once."""

    queue_arn: pulumi.Input[str]
    batch_size: int
    maximum_concurrency: int

    def __post_init__(self) -> None:
        if not ESM_MIN_BATCH_SIZE <= self.batch_size <= ESM_MAX_BATCH_SIZE:
            raise ValueError(
                f"batch_size={self.batch_size} is outside an SQS event source's "
                f"{ESM_MIN_BATCH_SIZE}..{ESM_MAX_BATCH_SIZE} (no batching window)"
            )
        if not ESM_MIN_CONCURRENCY <= self.maximum_concurrency <= ESM_MAX_CONCURRENCY:
            raise ValueError(
                f"maximum_concurrency={self.maximum_concurrency} is outside an SQS event "
                f"source's {ESM_MIN_CONCURRENCY}..{ESM_MAX_CONCURRENCY}"
            )


@dataclass(frozen=True, kw_only=True)
class ScheduleTrigger:
    """An EventBridge schedule that invokes the function every `interval_minutes`."""

    interval_minutes: int

    def __post_init__(self) -> None:
        if not 1 <= self.interval_minutes <= 1440:
            raise ValueError(f"interval_minutes={self.interval_minutes} is outside 1..1440")

    @property
    def expression(self) -> str:
        unit = "minute" if self.interval_minutes == 1 else "minutes"
        return f"rate({self.interval_minutes} {unit})"


@dataclass(frozen=True, kw_only=True)
class TaskFunctionArgs:
    """`service` names the function (`api`, `worker`, ...) in logs and metrics."""

    function_name: str
    service: str
    handler: str
    runtime: FunctionRuntime
    permissions: tuple[PolicyStatement, ...]
    trigger: QueueTrigger | ScheduleTrigger | None = None
    description: str = ""
    # Invocations reserved for this function, which is also the most it runs at once (bounds
    # what a flood of requests can spend); None shares the account's unreserved pool.
    reserved_concurrency: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.function_name) <= 64:
            raise ValueError(f"function_name={self.function_name!r} must be 1..64 characters")
        if self.handler.count(".") < 1:
            raise ValueError(f"handler={self.handler!r} must be 'module.callable'")


class TaskFunction(pulumi.ComponentResource):
    """A Lambda function with its own role, log group and (optionally) SQS trigger."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    trigger: aws.lambda_.EventSourceMapping | aws.cloudwatch.EventRule | None
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: TaskFunctionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_function:TaskFunction", name, None, opts)
        self.log_group = self._log_group(name, args)
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=lambda_trust_policy_json(),
            description=f"Runs the {args.service} function {args.function_name}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        role_policy = self._role_policy(name, args)
        self.function = self._function(name, args, role_policy)
        match args.trigger:
            case QueueTrigger():
                self.trigger = self._queue_trigger(name, args.trigger, role_policy)
            case ScheduleTrigger():
                self.trigger = self._schedule(name, args.trigger)
            case None:
                self.trigger = None
        self.name, self.arn = self.function.name, self.function.arn
        self.register_outputs(
            {
                "functionName": self.name,
                "functionArn": self.arn,
                "logGroupName": self.log_group.name,
            }
        )

    def _log_group(self, name: str, args: TaskFunctionArgs) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"{LOG_GROUP_PREFIX}{args.function_name}",
            retention_in_days=args.runtime.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _role_policy(self, name: str, args: TaskFunctionArgs) -> aws.iam.RolePolicy:
        statements = (*args.permissions, log_writing(self.log_group.arn))
        return aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=policy_json(statements),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _function(
        self, name: str, args: TaskFunctionArgs, role_policy: aws.iam.RolePolicy
    ) -> aws.lambda_.Function:
        runtime = args.runtime
        return aws.lambda_.Function(
            f"{name}-function",
            # An explicit name makes the log group's name known before the function exists.
            name=args.function_name,
            description=args.description or None,
            role=self.role.arn,
            runtime=runtime.lambda_runtime_id,
            handler=args.handler,
            code=pulumi.FileArchive(str(runtime.bundle.path)),
            # The archive is reproducible, so an unchanged hash means unchanged code: no update.
            source_code_hash=runtime.bundle.sha256_b64,
            architectures=[runtime.architecture],
            memory_size=runtime.memory_mb,
            timeout=runtime.timeout_s,
            reserved_concurrent_executions=args.reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={**runtime.environment, "POWERTOOLS_SERVICE_NAME": args.service}
            ),
            # The log group first, so Lambda never creates one without retention; the policy
            # first, so the first invocation can already write its logs and records.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group, role_policy]),
        )

    def _schedule(self, name: str, trigger: ScheduleTrigger) -> aws.cloudwatch.EventRule:
        rule = aws.cloudwatch.EventRule(
            f"{name}-schedule",
            schedule_expression=trigger.expression,
            description=f"Runs {name} {trigger.expression}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        # EventBridge may invoke exactly this function, for exactly this rule.
        permission = aws.lambda_.Permission(
            f"{name}-schedule-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-schedule-target",
            rule=rule.name,
            arn=self.function.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        return rule

    def _queue_trigger(
        self, name: str, trigger: QueueTrigger, role_policy: aws.iam.RolePolicy
    ) -> aws.lambda_.EventSourceMapping:
        return aws.lambda_.EventSourceMapping(
            f"{name}-trigger",
            event_source_arn=trigger.queue_arn,
            function_name=self.function.arn,
            batch_size=trigger.batch_size,
            # The function returns the records that failed; only those return to the queue, so
            # one failed task never makes the rest of its batch run again.
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=trigger.maximum_concurrency
            ),
            # Lambda checks the role can read the queue when the mapping is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )
