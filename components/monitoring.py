"""Monitoring: alarms that each mean a system fault, the topic they notify, and a dashboard.

A task that used up its attempts (FAILED, e.g. its message said ERROR) is a business outcome the
system delivered correctly, so no alarm watches it by default: the dashboard graphs the business
failure rate, `FailedTasks / (CompletedTasks + FailedTasks)`, and a stack may set
`failedTaskRateAlarmPercent` to be paged above a rate. Every other alarm means something is broken:
a worker record raising, a poison message, a task the reconciler had to recover, a function
failing as a whole, a queue that is not drained, a reconciler that stopped running, API 5xx.

Each watched series is one `Watch`; the dashboard graphs every one of them, in this order, with the
alarm threshold drawn on the graph, so what pages someone is what they see first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from functions.lifecycle import longest_retry_wait_s
from functions.metrics import (
    COMPLETED_TASKS_METRIC,
    FAILED_TASKS_METRIC,
    METRICS_NAMESPACE,
    POISON_MESSAGES_METRIC,
    RECOVERED_TASKS_METRIC,
    SERVICE_DIMENSION,
    STACK_DIMENSION,
    WORKER_RECORD_EXCEPTIONS_METRIC,
)
from functions.policy import TaskPolicy

ALARM_PERIOD_S = 60
# Margin on a message's age before it alarms: a healthy queue may hold a message for its whole
# retry schedule; this leaves time for a cold start and a busy worker on top.
MESSAGE_AGE_MARGIN_S = 300
# The business failure rate is judged over 3 periods of 5 minutes: one unlucky minute of a few
# tasks is not a trend.
FAILURE_RATE_PERIOD_S = 300
FAILURE_RATE_EVALUATION_PERIODS = 3
EXPRESSION_ID = "result"  # the id of a metric-math expression among its inputs' ids
DASHBOARD_WIDGET_WIDTH = 12  # two graphs per row of CloudWatch's 24-unit grid
DASHBOARD_WIDGET_HEIGHT = 6


def healthy_message_age_s(policy: TaskPolicy, function_timeout_s: int) -> int:
    """The oldest a main-queue message gets while its task is still on schedule: every attempt
    running to its timeout plus every backoff delay at its maximum, plus a margin."""
    return (
        longest_retry_wait_s(policy)
        + policy.maxAttempts * function_timeout_s
        + MESSAGE_AGE_MARGIN_S
    )


def healthy_dead_letter_age_s(visibility_timeout_s: int) -> int:
    """The oldest a dead letter gets while the dead-letter function works: it handles one within
    seconds, and one it failed (a task that kept changing under it) comes back after the DLQ's
    visibility timeout. Older than that plus a margin, it is failing again and again.

    SQS measures a dead letter's age from when it was moved to the DLQ, not from when it was sent.
    """
    return visibility_timeout_s + MESSAGE_AGE_MARGIN_S


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """Names of what to watch; `stack` is also the dimension of the functions' custom metrics."""

    stack: str
    region: str
    dashboard_name: str
    alarm_email: str | None
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    worker_function_name: pulumi.Input[str]
    dead_letter_function_name: pulumi.Input[str]
    reconciler_function_name: pulumi.Input[str]
    reconcile_interval_minutes: int
    api_id: pulumi.Input[str]
    api_stage_name: str
    healthy_message_age_s: int
    healthy_dead_letter_age_s: int
    # None: the business failure rate is graphed, never alarmed.
    failed_task_rate_alarm_percent: float | None = None

    def __post_init__(self) -> None:
        percent = self.failed_task_rate_alarm_percent
        if percent is not None and not 0 < percent <= 100:
            raise ValueError(
                f"failed_task_rate_alarm_percent={percent} is not a percentage in (0, 100]"
            )


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One CloudWatch metric."""

    namespace: str
    name: str
    dimensions: Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True, kw_only=True)
class Expression:
    """CloudWatch metric math over named metrics; the names are the expression's ids (lowercase
    first letter, as CloudWatch requires)."""

    expression: str
    label: str
    inputs: Mapping[str, Metric]


@dataclass(frozen=True, kw_only=True)
class Watch:
    """One watched series, graphed on the dashboard. With a `threshold` it is also an alarm:
    `statistic` of the series >= `threshold` (or below it, with `below_threshold`) for
    `evaluation_periods` periods of `period_s`."""

    key: str
    title: str
    series: Metric | Expression
    statistic: str
    threshold: float | None
    description: str
    evaluation_periods: int = 1
    period_s: int = ALARM_PERIOD_S
    # Most alarms fire on too much of something, and no data means nothing happened. An alarm on
    # too little (a heartbeat) fires below its threshold, and on no data at all.
    below_threshold: bool = False


class Monitoring(pulumi.ComponentResource):
    """SNS alarm topic (optionally e-mailed), metric alarms and a CloudWatch dashboard."""

    topic: aws.sns.Topic
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    dashboard: aws.cloudwatch.Dashboard
    dashboard_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:monitoring:Monitoring", name, None, opts)
        self.topic = aws.sns.Topic(f"{name}-alarms", opts=pulumi.ResourceOptions(parent=self))
        if args.alarm_email:
            # E-mail subscriptions stay "pending confirmation" until the recipient clicks the
            # link AWS sends; until then alarms reach nobody.
            aws.sns.TopicSubscription(
                f"{name}-alarm-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=pulumi.ResourceOptions(parent=self),
            )
        specs = watches(args)
        self.alarms = {
            spec.key: self._alarm(name, spec) for spec in specs if spec.threshold is not None
        }
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.dashboard_name,
            dashboard_body=_dashboard_body(specs, args.region),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_url = self.dashboard.dashboard_name.apply(
            lambda dashboard_name: (
                f"https://{args.region}.console.aws.amazon.com/cloudwatch/home"
                f"?region={args.region}#dashboards:name={dashboard_name}"
            )
        )
        self.register_outputs({"dashboardUrl": self.dashboard_url, "alarmTopicArn": self.topic.arn})

    def _alarm(self, name: str, spec: Watch) -> aws.cloudwatch.MetricAlarm:
        assert spec.threshold is not None
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.key}",
            alarm_description=spec.description,
            **_alarm_series(spec),
            evaluation_periods=spec.evaluation_periods,
            threshold=spec.threshold,
            comparison_operator=(
                "LessThanThreshold" if spec.below_threshold else "GreaterThanOrEqualToThreshold"
            ),
            # No data means nothing happened (no errors, no poison): not an alarm; for a
            # heartbeat, no data is exactly the alarm.
            treat_missing_data="breaching" if spec.below_threshold else "notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
        )


def _alarm_series(spec: Watch) -> dict[str, object]:
    """A MetricAlarm's inputs naming what it watches: one metric, or metric math."""
    series = spec.series
    if isinstance(series, Metric):
        return {
            "namespace": series.namespace,
            "metric_name": series.name,
            "dimensions": dict(series.dimensions),
            "statistic": spec.statistic,
            "period": spec.period_s,
        }
    queries = [
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=EXPRESSION_ID,
            expression=series.expression,
            label=series.label,
            return_data=True,
        )
    ]
    for query_id, metric in series.inputs.items():
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=query_id,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=metric.namespace,
                    metric_name=metric.name,
                    dimensions=dict(metric.dimensions),
                    stat=spec.statistic,
                    period=spec.period_s,
                ),
                return_data=False,
            )
        )
    return {"metric_queries": queries}


def watches(args: MonitoringArgs) -> tuple[Watch, ...]:
    """What one stack watches, in dashboard order: the faults, then the business outcome."""

    def custom(metric: str, service: str) -> Metric:
        """A metric the functions emit (the service is the emitting function's)."""
        return Metric(
            namespace=METRICS_NAMESPACE,
            name=metric,
            dimensions={SERVICE_DIMENSION: service, STACK_DIMENSION: args.stack},
        )

    def lambda_metric(metric: str, function_name: pulumi.Input[str]) -> Metric:
        return Metric(
            namespace="AWS/Lambda", name=metric, dimensions={"FunctionName": function_name}
        )

    def queue_metric(metric: str, queue_name: pulumi.Input[str]) -> Metric:
        return Metric(namespace="AWS/SQS", name=metric, dimensions={"QueueName": queue_name})

    return (
        # -- the worker ------------------------------------------------------------------------
        Watch(
            key="worker-record-exceptions",
            title="Worker record exceptions",
            series=custom(WORKER_RECORD_EXCEPTIONS_METRIC, "worker"),
            statistic="Sum",
            threshold=1,
            description=(
                "A worker record raised an unexpected exception (an AWS error or throttling, a "
                "task record it cannot parse, a bug). The message comes back after the queue's "
                "visibility timeout, so nothing is lost yet, but Lambda's Errors metric never sees "
                "this. Read the worker's 'delivery failed' log lines for the exception and task."
            ),
        ),
        Watch(
            key="worker-errors",
            title="Worker errors",
            series=lambda_metric("Errors", args.worker_function_name),
            statistic="Sum",
            threshold=1,
            description=(
                "A worker invocation failed as a whole (timeout, out of memory, a broken bundle "
                "or environment): its whole batch comes back later. Check the worker's log."
            ),
        ),
        Watch(
            key="worker-throttles",
            title="Worker throttles",
            series=lambda_metric("Throttles", args.worker_function_name),
            statistic="Sum",
            threshold=1,
            description=(
                "The worker was throttled: the account's Lambda concurrency is exhausted. Raise "
                "the account quota or lower other functions' use."
            ),
        ),
        Watch(
            key="oldest-message-age",
            title="Age of the oldest task message (s)",
            series=queue_metric("ApproximateAgeOfOldestMessage", args.queue_name),
            statistic="Maximum",
            threshold=args.healthy_message_age_s,
            evaluation_periods=5,
            description=(
                f"A task message is older than its whole retry schedule "
                f"({args.healthy_message_age_s} s): the worker is stuck or too slow. Check worker "
                "errors and throttles; raise workerMaxConcurrency if it is only slow."
            ),
        ),
        # -- the dead-letter path --------------------------------------------------------------
        Watch(
            key="poison-messages",
            title="Poison messages",
            series=custom(POISON_MESSAGES_METRIC, "dead-letter"),
            statistic="Sum",
            threshold=1,
            description=(
                "A message no worker could finish: it kept reaching the DLQ without a new attempt "
                "(the dead-letter function made its task FAILED, lastError says why), or it was "
                "not a task message at all. Read the dead-letter function's ERROR lines; fix the "
                "cause, then `taskctl redrive` the task. An ordinary FAILED task never counts here."
            ),
        ),
        Watch(
            key="dead-letter-age",
            title="Age of the oldest dead letter (s)",
            series=queue_metric("ApproximateAgeOfOldestMessage", args.dead_letter_queue_name),
            statistic="Maximum",
            threshold=args.healthy_dead_letter_age_s,
            description=(
                f"A dead letter waited longer than {args.healthy_dead_letter_age_s} s: the "
                "dead-letter function is failing it again and again (its log says why), so its "
                "task may not end. Its record failures are invisible to Lambda's Errors metric."
            ),
        ),
        Watch(
            key="dead-letter-errors",
            title="Dead-letter function errors",
            series=lambda_metric("Errors", args.dead_letter_function_name),
            statistic="Sum",
            threshold=1,
            description=(
                "A dead-letter function invocation failed as a whole (timeout, a broken bundle or "
                "environment): dead letters are not being handled. Check its log."
            ),
        ),
        # -- the backstop ----------------------------------------------------------------------
        Watch(
            key="recovered-tasks",
            title="Tasks the reconciler recovered",
            series=custom(RECOVERED_TASKS_METRIC, "reconciler"),
            statistic="Sum",
            threshold=1,
            description=(
                "An unfinished task made no progress for longer than recoveryGraceSeconds and its "
                "message was re-enqueued: a process died mid-task, a message was lost or deleted, "
                "or AWS was out. See the README's 'When the recovery alarm fires'."
            ),
        ),
        Watch(
            key="reconciler-errors",
            title="Reconciler errors",
            series=lambda_metric("Errors", args.reconciler_function_name),
            statistic="Sum",
            threshold=1,
            description="The reconciler failed a pass: stuck tasks are not being recovered.",
        ),
        Watch(
            key="reconciler-stalled",
            title="Reconciler passes",
            series=lambda_metric("Invocations", args.reconciler_function_name),
            statistic="Sum",
            threshold=1,
            period_s=args.reconcile_interval_minutes * 60,
            evaluation_periods=3,
            below_threshold=True,
            description=(
                "The reconciler has not run for 3 of its intervals (its schedule is disabled or "
                "cannot invoke it): stuck tasks are not being recovered."
            ),
        ),
        # -- the API ---------------------------------------------------------------------------
        Watch(
            key="api-5xx",
            title="API 5xx responses",
            series=Metric(
                namespace="AWS/ApiGateway",
                name="5xx",
                dimensions={"ApiId": args.api_id, "Stage": args.api_stage_name},
            ),
            statistic="Sum",
            threshold=1,
            description="The API answered 5xx: a bug or an outage (bad input gets a 4xx).",
        ),
        # -- the business outcome: graphed; alarmed only if the stack asks -----------------------
        Watch(
            key="failed-task-rate",
            title="Finished tasks that FAILED (%)",
            series=Expression(
                # The worker reports both counts on every invocation (zeros included).
                expression=("IF(completed + failed > 0, 100 * failed / (completed + failed), 0)"),
                label="FAILED (attempts used up) / finished, %",
                inputs={
                    "completed": custom(COMPLETED_TASKS_METRIC, "worker"),
                    "failed": custom(FAILED_TASKS_METRIC, "worker"),
                },
            ),
            statistic="Sum",
            threshold=args.failed_task_rate_alarm_percent,
            period_s=FAILURE_RATE_PERIOD_S,
            evaluation_periods=FAILURE_RATE_EVALUATION_PERIODS,
            description=_failure_rate_description(args.failed_task_rate_alarm_percent),
        ),
    )


def _failure_rate_description(percent: float | None) -> str:
    if percent is None:
        return "Graphed only: the stack sets no failedTaskRateAlarmPercent."
    return (
        f"In each of {FAILURE_RATE_EVALUATION_PERIODS} periods of "
        f"{FAILURE_RATE_PERIOD_S // 60} minutes, {percent:g} % or more of the finished tasks "
        "ended FAILED with their attempts used up (failedTaskRateAlarmPercent). Not a fault of "
        "the system: look at what callers submit (lastError of the FAILED tasks) and at "
        "errorRate / maxAttempts."
    )


def _dashboard_body(specs: tuple[Watch, ...], region: str) -> pulumi.Output[str]:
    widgets = []
    for index, spec in enumerate(specs):
        properties: dict[str, object] = {
            "title": spec.title,
            "region": region,
            "view": "timeSeries",
            "stat": spec.statistic,
            "period": spec.period_s,
            "metrics": _graphed(spec.series),
        }
        if spec.threshold is not None:
            properties["annotations"] = {
                "horizontal": [{"label": "alarm", "value": spec.threshold}]
            }
        widgets.append(
            {
                "type": "metric",
                "x": (index % 2) * DASHBOARD_WIDGET_WIDTH,
                "y": (index // 2) * DASHBOARD_WIDGET_HEIGHT,
                "width": DASHBOARD_WIDGET_WIDTH,
                "height": DASHBOARD_WIDGET_HEIGHT,
                "properties": properties,
            }
        )
    return pulumi.Output.json_dumps({"widgets": widgets})


def _graphed(series: Metric | Expression) -> list[list[object]]:
    """A dashboard widget's `metrics` array: the metric, or the expression (shown) over its
    inputs (hidden)."""
    if isinstance(series, Metric):
        return [_metric_row(series)]
    rows: list[list[object]] = [
        [{"expression": series.expression, "label": series.label, "id": EXPRESSION_ID}]
    ]
    for query_id, metric in series.inputs.items():
        rows.append([*_metric_row(metric), {"id": query_id, "visible": False}])
    return rows


def _metric_row(metric: Metric) -> list[object]:
    row: list[object] = [metric.namespace, metric.name]
    for dimension_name, value in metric.dimensions.items():
        row += [dimension_name, value]
    return row
