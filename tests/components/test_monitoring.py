"""Monitoring under Pulumi mocks: every alarm means a system fault and watches the series the
functions really emit; an ordinary FAILED task pages nobody; the dashboard graphs every alarm and
the business failure rate, which alarms only when the stack sets `failedTaskRateAlarmPercent`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stack_runs import ProgramRun, run_stack

from components.monitoring import MonitoringArgs
from functions import metrics
from taskctl.program import CreatedResource, RecordingMocks, project_name, run_program

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
RATE_SETTING = "failedTaskRateAlarmPercent"


def _watched(alarm: CreatedResource) -> tuple[str, str, str]:
    """(namespace, metric, dimensions) of a single-metric alarm."""
    inputs = alarm.inputs
    return (
        inputs["namespace"],
        inputs["metricName"],
        json.dumps(inputs["dimensions"], sort_keys=True),
    )


def _key(namespace: str, metric: str, dimensions: dict[str, Any]) -> tuple[str, str, str]:
    return namespace, metric, json.dumps(dimensions, sort_keys=True)


def _queue_name(run: ProgramRun, logical: str) -> str:
    return run.one("aws:sqs/queue:Queue", logical).outputs["name"]


def _metrics_in(alarm: CreatedResource) -> set[str]:
    """Every metric name an alarm reads, directly or through metric math."""
    names = {alarm.inputs.get("metricName")}
    for query in alarm.inputs.get("metricQueries") or []:
        names.add((query.get("metric") or {}).get("metricName"))
    return names - {None}


def _dashboard(mocks_or_run: RecordingMocks | ProgramRun) -> dict[str, Any]:
    (dashboard,) = mocks_or_run.created(DASHBOARD)
    return json.loads(dashboard.inputs["dashboardBody"])


def _rate_widget(body: dict[str, Any]) -> dict[str, Any]:
    (widget,) = [
        w
        for w in body["widgets"]
        if any("expression" in row[0] for row in w["properties"]["metrics"])
    ]
    return widget["properties"]


@pytest.fixture(scope="module")
def with_rate_alarm() -> RecordingMocks:
    """The dev stack with `failedTaskRateAlarmPercent: 5`."""
    mocks = RecordingMocks()
    run_program("dev", mocks, config_overrides={f"{project_name()}:{RATE_SETTING}": "5"})
    return mocks


# -- the alarms: each one a fault ------------------------------------------------------------


def test_alarms_watch_exactly_the_system_faults(program_run):
    worker = program_run.function("worker").outputs["name"]
    dead_letter = program_run.function("dead-letter").outputs["name"]
    reconciler = program_run.function("reconciler").outputs["name"]
    (api,) = program_run.created("aws:apigatewayv2/api:Api")
    custom = metrics.METRICS_NAMESPACE

    def emitted_by(service: str) -> dict[str, str]:
        return {"service": service, "stack": program_run.stack}

    assert {_watched(alarm) for alarm in program_run.created(ALARM)} == {
        _key(custom, "WorkerRecordExceptions", emitted_by("worker")),
        _key("AWS/Lambda", "Errors", {"FunctionName": worker}),
        _key("AWS/Lambda", "Throttles", {"FunctionName": worker}),
        _key(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            {"QueueName": _queue_name(program_run, "tasks-main")},
        ),
        _key(custom, "PoisonMessages", emitted_by("dead-letter")),
        _key(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            {"QueueName": _queue_name(program_run, "tasks-dlq")},
        ),
        _key("AWS/Lambda", "Errors", {"FunctionName": dead_letter}),
        _key(custom, "RecoveredTasks", emitted_by("reconciler")),
        _key("AWS/Lambda", "Errors", {"FunctionName": reconciler}),
        _key("AWS/Lambda", "Invocations", {"FunctionName": reconciler}),
        _key("AWS/ApiGateway", "5xx", {"ApiId": api.resource_id, "Stage": program_run.stack}),
    }
    assert len(program_run.created(ALARM)) == 11  # one alarm per fault, none twice
    (topic,) = program_run.created("aws:sns/topic:Topic")
    for alarm in program_run.created(ALARM):
        assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]]
        assert alarm.inputs["alarmDescription"]  # on-call reads what it means


def test_an_ordinary_failed_task_raises_no_alarm_by_default(program_run):
    # GIVEN a stack that does not set failedTaskRateAlarmPercent (neither dev nor prod does)
    assert getattr(program_run.settings, RATE_SETTING) is None
    # THEN no alarm reads the business outcomes, and the old per-dead-letter alarm is gone
    for alarm in program_run.created(ALARM):
        assert _metrics_in(alarm).isdisjoint({"FailedTasks", "CompletedTasks"}), alarm.name
        assert "DeadLetteredTasks" not in _metrics_in(alarm)
        # nor the DLQ's depth, which a steady stream of FAILED tasks keeps above zero
        assert "ApproximateNumberOfMessagesVisible" not in _metrics_in(alarm)


@pytest.mark.parametrize(
    ("alarm_key", "service", "metric"),
    [
        ("worker-record-exceptions", "worker", metrics.WORKER_RECORD_EXCEPTIONS_METRIC),
        ("poison-messages", "dead-letter", metrics.POISON_MESSAGES_METRIC),
        ("recovered-tasks", "reconciler", metrics.RECOVERED_TASKS_METRIC),
    ],
)
def test_one_fault_raises_its_alarm_on_the_series_its_function_emits(
    program_run, alarm_key, service, metric
):
    alarm = program_run.one(ALARM, f"tasks-{alarm_key}").inputs
    assert alarm["statistic"] == "Sum"
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["evaluationPeriods"] == 1
    assert alarm["treatMissingData"] == "notBreaching"  # no data: nothing went wrong
    # THEN it watches what the function emits: its metric name, namespace, service and stack
    env = program_run.function(service).inputs["environment"]["variables"]
    assert alarm["metricName"] == metric
    assert alarm["namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["dimensions"] == {
        metrics.SERVICE_DIMENSION: env["POWERTOOLS_SERVICE_NAME"],
        metrics.STACK_DIMENSION: env["TASKS_STACK"],
    }


@pytest.mark.parametrize("service", ["worker", "dead-letter", "reconciler"])
def test_a_function_failing_as_a_whole_raises_its_errors_alarm(program_run, service):
    alarm = program_run.one(ALARM, f"tasks-{service}-errors").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["dimensions"] == {"FunctionName": program_run.function(service).outputs["name"]}
    assert (alarm["statistic"], alarm["threshold"]) == ("Sum", 1)
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_a_reconciler_that_stops_running_raises_the_stalled_alarm(program_run):
    """A heartbeat: fewer than 1 invocation per interval, 3 intervals running, or no data."""
    alarm = program_run.one(ALARM, "tasks-reconciler-stalled").inputs
    interval_s = program_run.settings.reconcileIntervalMinutes * 60
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Lambda", "Invocations")
    assert alarm["dimensions"] == {
        "FunctionName": program_run.function("reconciler").inputs["name"]
    }
    assert (alarm["period"], alarm["evaluationPeriods"]) == (interval_s, 3)
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("LessThanThreshold", 1)
    assert alarm["treatMissingData"] == "breaching"


def test_oldest_message_alarm_allows_a_whole_retry_schedule(program_run):
    settings = program_run.settings
    alarm = program_run.one(ALARM, "tasks-oldest-message-age").inputs
    assert alarm["dimensions"] == {"QueueName": _queue_name(program_run, "tasks-main")}
    schedule_s = sum(
        min(settings.maxDelaySeconds, settings.backoffBaseSeconds * 2 ** (n - 1))
        for n in range(1, settings.maxAttempts)
    )
    assert alarm["threshold"] > schedule_s + settings.maxAttempts * settings.functionTimeoutSeconds


def test_dead_letter_age_alarm_allows_one_failed_try_of_the_dead_letter_function(program_run):
    # A dead letter is handled within seconds; one the function failed comes back after the
    # DLQ's visibility timeout. Older than that (with a margin) means it keeps failing.
    alarm = program_run.one(ALARM, "tasks-dead-letter-age").inputs
    dlq = program_run.one("aws:sqs/queue:Queue", "tasks-dlq")
    assert alarm["dimensions"] == {"QueueName": dlq.outputs["name"]}
    assert (alarm["metricName"], alarm["statistic"]) == ("ApproximateAgeOfOldestMessage", "Maximum")
    visibility_s = dlq.inputs["visibilityTimeoutSeconds"]
    assert visibility_s < alarm["threshold"] <= visibility_s + 600


# -- the business failure rate ---------------------------------------------------------------


def test_dashboard_graphs_every_alarm_and_the_business_failure_rate(program_run):
    body = _dashboard(program_run)
    graphed = []
    for widget in body["widgets"]:
        first_row = widget["properties"]["metrics"][0]
        if "expression" in first_row[0]:
            continue
        namespace, metric, *dimensions = first_row
        pairs = dict(zip(dimensions[::2], dimensions[1::2], strict=True))
        graphed.append(_key(namespace, metric, pairs))
        # each alarmed graph shows its threshold
        (line,) = widget["properties"]["annotations"]["horizontal"]
        assert line["label"] == "alarm"
    # Dimensions included: the functions' Errors share namespace and name.
    assert sorted(graphed) == sorted(_watched(alarm) for alarm in program_run.created(ALARM))

    # AND the failure rate: FailedTasks over finished tasks, as the worker emits them
    rate = _rate_widget(body)
    (expression_row, *inputs) = rate["metrics"]
    assert "100 * failed / (completed + failed)" in expression_row[0]["expression"]
    by_id = {row[-1]["id"]: row[:-1] for row in inputs}
    worker_series = ["service", "worker", "stack", program_run.stack]
    assert by_id == {
        "completed": [metrics.METRICS_NAMESPACE, "CompletedTasks", *worker_series],
        "failed": [metrics.METRICS_NAMESPACE, "FailedTasks", *worker_series],
    }
    assert all(row[-1]["visible"] is False for row in inputs)  # only the rate is drawn
    assert rate["stat"] == "Sum"
    assert "annotations" not in rate  # no threshold: nothing alarms on it


def test_failed_task_rate_alarms_only_when_the_stack_sets_a_threshold(with_rate_alarm):
    # GIVEN failedTaskRateAlarmPercent: 5
    default = {alarm.name for alarm in run_stack("dev").created(ALARM)}
    alarms = {alarm.name: alarm for alarm in with_rate_alarm.created(ALARM)}

    # THEN exactly one more alarm: on the rate, at 5 %, over 3 periods of 5 minutes
    assert set(alarms) - default == {"tasks-failed-task-rate"}
    alarm = alarms["tasks-failed-task-rate"].inputs
    assert alarm["threshold"] == 5
    assert "5 % or more of the finished tasks" in alarm["alarmDescription"]
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["evaluationPeriods"] == 3
    assert alarm["treatMissingData"] == "notBreaching"  # no finished tasks: no failure rate
    assert "metricName" not in alarm
    queries = {query["id"]: query for query in alarm["metricQueries"]}
    returned = [query for query in queries.values() if query.get("returnData")]
    assert [query["expression"] for query in returned] == [
        "IF(completed + failed > 0, 100 * failed / (completed + failed), 0)"
    ]
    for query_id, metric_name in (("completed", "CompletedTasks"), ("failed", "FailedTasks")):
        metric = queries[query_id]["metric"]
        assert (metric["namespace"], metric["metricName"]) == (
            metrics.METRICS_NAMESPACE,
            metric_name,
        )
        assert metric["dimensions"] == {"service": "worker", "stack": "dev"}
        assert (metric["stat"], metric["period"]) == ("Sum", 300)
    # AND the dashboard draws the threshold on the rate graph
    (line,) = _rate_widget(_dashboard(with_rate_alarm))["annotations"]["horizontal"]
    assert line["value"] == 5


@pytest.mark.parametrize("percent", [0.0, -1.0, 100.5])
def test_monitoring_rejects_a_rate_threshold_that_is_not_a_percentage(percent):
    with pytest.raises(ValueError, match=f"failed_task_rate_alarm_percent={percent}"):
        MonitoringArgs(
            stack="dev",
            region="eu-west-1",
            dashboard_name="d",
            alarm_email=None,
            queue_name="q",
            dead_letter_queue_name="dlq",
            worker_function_name="w",
            dead_letter_function_name="dl",
            reconciler_function_name="r",
            reconcile_interval_minutes=1,
            api_id="api",
            api_stage_name="dev",
            healthy_message_age_s=600,
            healthy_dead_letter_age_s=480,
            failed_task_rate_alarm_percent=percent,
        )
