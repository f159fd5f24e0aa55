"""The schedule trigger's rate expression and its limits, and the runtime's Python version (the
graph tests cover their wiring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.packaging import Bundle, BundleTarget
from components.task_function import FunctionRuntime, QueueTrigger, ScheduleTrigger
from functions.policy import SettingsError
from functions.settings import StackSettings


@pytest.mark.parametrize(
    ("minutes", "expression"),
    [(1, "rate(1 minute)"), (5, "rate(5 minutes)"), (1440, "rate(1440 minutes)")],
)
def test_schedule_expression_uses_eventbridge_rate_grammar(minutes, expression):
    # EventBridge refuses "rate(1 minutes)" and "rate(5 minute)": the unit agrees with the count.
    assert ScheduleTrigger(interval_minutes=minutes).expression == expression


@pytest.mark.parametrize("minutes", [0, -1, 1441])
def test_schedule_interval_outside_a_minute_to_a_day_is_refused_naming_it(minutes):
    with pytest.raises(ValueError, match=rf"interval_minutes={minutes} is outside 1\.\.1440"):
        ScheduleTrigger(interval_minutes=minutes)


def _runtime(bundle_target: BundleTarget, python_version: str) -> FunctionRuntime:
    bundle = Bundle(
        path=Path("bundle.zip"),
        sha256_b64="",
        size_bytes=0,
        target=bundle_target,
        compiled_with=None,
    )
    return FunctionRuntime(
        bundle=bundle,
        python_version=python_version,
        architecture="arm64",
        memory_mb=256,
        timeout_s=30,
        log_retention_days=7,
        environment={},
    )


def test_the_runtime_is_the_python_version_the_lambda_bundle_was_built_for():
    assert _runtime(BundleTarget.lambda_runtime("arm64", "3.13"), "3.13").lambda_runtime_id == (
        "python3.13"
    )
    # A bundle of cp313 wheels on python3.14 would fail at its first import: refused by name.
    with pytest.raises(ValueError, match=r"python_version='3\.14' does not match .* python3\.13"):
        _runtime(BundleTarget.lambda_runtime("arm64", "3.13"), "3.14")


def test_the_local_bundle_runs_under_any_declared_runtime():
    # The emulator runs every function on this machine's interpreter.
    assert _runtime(BundleTarget.local(), "3.14").lambda_runtime_id == "python3.14"


@pytest.mark.parametrize(
    ("batch_size", "maximum_concurrency", "allowed"),
    [
        (1, 2, True),
        (10, 1000, True),
        (0, 5, False),
        (11, 5, False),
        (5, 1, False),
        (5, 1001, False),
    ],
)
def test_the_queue_trigger_and_the_settings_model_share_the_event_source_limits(
    batch_size, maximum_concurrency, allowed
):
    settings = {"workerBatchSize": batch_size, "workerMaxConcurrency": maximum_concurrency}
    if allowed:
        QueueTrigger(
            queue_arn="arn", batch_size=batch_size, maximum_concurrency=maximum_concurrency
        )
        StackSettings.from_config(settings)
        return
    with pytest.raises(ValueError, match="outside an SQS event source's"):
        QueueTrigger(
            queue_arn="arn", batch_size=batch_size, maximum_concurrency=maximum_concurrency
        )
    with pytest.raises(SettingsError):
        StackSettings.from_config(settings)
