"""Monitoring: alarms on "tasks are not being processed", the topic they notify, a dashboard.

Each alarm is one `AlarmSpec`; the dashboard graphs exactly the alarmed metrics, with the alarm
threshold drawn on each graph, so what pages someone is what they see first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from functions.lifecycle import longest_retry_wait_s
from functions.metrics import (
    DEAD_LETTERED_METRIC,
    METRICS_NAMESPACE,
    RECOVERED_METRIC,
    SERVICE_DIMENSION,
    STACK_DIMENSION,
)
from functions.settings import TaskPolicy

ALARM_PERIOD_S = 60
# Margin on the oldest-message age before it alarms: a healthy queue may hold a message for its
# whole retry schedule; this leaves time for a cold start and a busy worker on top.
MESSAGE_AGE_MARGIN_S = 300
DASHBOARD_WIDGET_WIDTH = 12  # two graphs per row of CloudWatch's 24-unit grid
DASHBOARD_WIDGET_HEIGHT = 6


def healthy_message_age_s(policy: TaskPolicy, function_timeout_s: int) -> int:
    """The oldest a message gets while its task is still on schedule: every attempt running to
    its timeout plus every backoff delay at its maximum, plus a margin."""
    return (
        longest_retry_wait_s(policy)
        + policy.maxAttempts * function_timeout_s
        + MESSAGE_AGE_MARGIN_S
    )


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """Names of what to watch; `stack` is also the dimension of the functions' custom metric."""

    stack: str
    region: str
    dashboard_name: str
    alarm_email: str | None
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    worker_function_name: pulumi.Input[str]
    reconciler_function_name: pulumi.Input[str]
    reconcile_interval_minutes: int
    api_id: pulumi.Input[str]
    api_stage_name: str
    healthy_message_age_s: int


@dataclass(frozen=True, kw_only=True)
class AlarmSpec:
    """One alarm: `statistic` of `metric` >= `threshold` (or below it, with `below_threshold`)
    for `evaluation_periods` periods of `period_s`."""

    key: str
    title: str
    namespace: str
    metric: str
    dimensions: Mapping[str, pulumi.Input[str]]
    statistic: str
    threshold: float
    evaluation_periods: int
    description: str
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
        specs = alarm_specs(args)
        self.alarms = {spec.key: self._alarm(name, spec) for spec in specs}
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

    def _alarm(self, name: str, spec: AlarmSpec) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.key}",
            alarm_description=spec.description,
            namespace=spec.namespace,
            metric_name=spec.metric,
            dimensions=dict(spec.dimensions),
            statistic=spec.statistic,
            period=spec.period_s,
            evaluation_periods=spec.evaluation_periods,
            threshold=spec.threshold,
            comparison_operator=(
                "LessThanThreshold" if spec.below_threshold else "GreaterThanOrEqualToThreshold"
            ),
            # No data means nothing happened (no errors, no dead letters): not an alarm; for a
            # heartbeat, no data is exactly the alarm.
            treat_missing_data="breaching" if spec.below_threshold else "notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
        )


def alarm_specs(args: MonitoringArgs) -> tuple[AlarmSpec, ...]:
    """The alarms of one stack, in dashboard order."""
    return (
        AlarmSpec(
            key="dead-lettered-tasks",
            title="Dead-lettered tasks",
            namespace=METRICS_NAMESPACE,
            metric=DEAD_LETTERED_METRIC,
            dimensions={SERVICE_DIMENSION: "dead-letter", STACK_DIMENSION: args.stack},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description="A task's message reached the dead-letter queue: the task is FAILED.",
        ),
        AlarmSpec(
            key="dlq-messages",
            title="Messages waiting in the DLQ",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.dead_letter_queue_name},
            statistic="Maximum",
            threshold=1,
            evaluation_periods=5,
            description="Dead letters are not being consumed: the dead-letter function is failing.",
        ),
        AlarmSpec(
            key="oldest-message-age",
            title="Age of the oldest task message (s)",
            namespace="AWS/SQS",
            metric="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": args.queue_name},
            statistic="Maximum",
            threshold=args.healthy_message_age_s,
            evaluation_periods=5,
            description=(
                f"A task message is older than its whole retry schedule "
                f"({args.healthy_message_age_s} s): the worker is stuck or too slow."
            ),
        ),
        AlarmSpec(
            key="worker-errors",
            title="Worker errors",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions={"FunctionName": args.worker_function_name},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description="The worker crashed (a failed attempt is not an error; a crash is).",
        ),
        AlarmSpec(
            key="worker-throttles",
            title="Worker throttles",
            namespace="AWS/Lambda",
            metric="Throttles",
            dimensions={"FunctionName": args.worker_function_name},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description="The worker was throttled: account concurrency is exhausted.",
        ),
        AlarmSpec(
            key="recovered-tasks",
            title="Tasks the reconciler recovered",
            namespace=METRICS_NAMESPACE,
            metric=RECOVERED_METRIC,
            dimensions={SERVICE_DIMENSION: "reconciler", STACK_DIMENSION: args.stack},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description=(
                "An unfinished task made no progress for longer than recoveryGraceSeconds and its "
                "message was re-enqueued: a process died mid-task, a message was lost or deleted, "
                "or AWS was out. See the README's 'When the recovery alarm fires'."
            ),
        ),
        AlarmSpec(
            key="reconciler-errors",
            title="Reconciler errors",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions={"FunctionName": args.reconciler_function_name},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description="The reconciler failed a pass: stuck tasks are not being recovered.",
        ),
        AlarmSpec(
            key="reconciler-stalled",
            title="Reconciler passes",
            namespace="AWS/Lambda",
            metric="Invocations",
            dimensions={"FunctionName": args.reconciler_function_name},
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
        AlarmSpec(
            key="api-5xx",
            title="API 5xx responses",
            namespace="AWS/ApiGateway",
            metric="5xx",
            dimensions={"ApiId": args.api_id, "Stage": args.api_stage_name},
            statistic="Sum",
            threshold=1,
            evaluation_periods=1,
            description="The API answered 5xx: a bug or an outage (bad input gets a 4xx).",
        ),
    )


def _dashboard_body(specs: tuple[AlarmSpec, ...], region: str) -> pulumi.Output[str]:
    widgets = []
    for index, spec in enumerate(specs):
        dimensions: list[pulumi.Input[str]] = []
        for dimension_name, value in spec.dimensions.items():
            dimensions += [dimension_name, value]
        widgets.append(
            {
                "type": "metric",
                "x": (index % 2) * DASHBOARD_WIDGET_WIDTH,
                "y": (index // 2) * DASHBOARD_WIDGET_HEIGHT,
                "width": DASHBOARD_WIDGET_WIDTH,
                "height": DASHBOARD_WIDGET_HEIGHT,
                "properties": {
                    "title": spec.title,
                    "region": region,
                    "view": "timeSeries",
                    "stat": spec.statistic,
                    "period": spec.period_s,
                    "metrics": [[spec.namespace, spec.metric, *dimensions]],
                    "annotations": {"horizontal": [{"label": "alarm", "value": spec.threshold}]},
                },
            }
        )
    return pulumi.Output.json_dumps({"widgets": widgets})
