"""The functions read their environment once, lazily, and build clients only on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.policy import SettingsError, TaskPolicy
from functions.runtime import FunctionSettings, Runtime

REPO = Path(__file__).resolve().parents[2]
COMPLETE_ENV = {
    "TASKS_TABLE_NAME": "tasks",
    "TASKS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks",
    "TASKS_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks-dlq",
    "TASKS_STACK": "prod",
    "TASKS_MAX_ATTEMPTS": "5",
}


def test_function_settings_come_from_the_environment() -> None:
    settings = FunctionSettings.from_env(COMPLETE_ENV)

    assert settings.table_name == "tasks"
    assert settings.stack == "prod"
    assert settings.policy == TaskPolicy(maxAttempts=5)


def test_every_missing_variable_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        FunctionSettings.from_env({"TASKS_TABLE_NAME": "tasks"})

    for name in ("TASKS_QUEUE_URL", "TASKS_DLQ_URL", "TASKS_STACK"):
        assert name in str(caught.value)
    assert "TASKS_TABLE_NAME" not in str(caught.value)


def test_handler_modules_import_without_any_environment_or_client() -> None:
    # A fresh interpreter with no AWS or TASKS_ variables: importing must not touch either.
    environ = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    probe = (
        "import sys, functions.api, functions.worker, functions.dead_letter, functions.runtime;"
        "assert functions.runtime._current is None;"
        "print('ok')"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], env=environ, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_clients_are_built_on_first_use_from_the_standard_aws_environment(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # Lambda sets both
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    runtime = Runtime(FunctionSettings.from_env(COMPLETE_ENV))
    assert "sqs" not in vars(runtime) and "dynamodb" not in vars(runtime)

    # no request is made: building a client only resolves its endpoint
    assert runtime.sqs.meta.endpoint_url == "http://127.0.0.1:4566"
    assert runtime.dynamodb.meta.region_name == "eu-west-1"


def test_every_aws_call_is_bounded_well_inside_the_shortest_function_timeout() -> None:
    """boto3's defaults (60 s reads, legacy retries) could outlive a 15 s function."""
    import boto3

    from functions.policy import SDK_CALL_BUDGET_S
    from functions.settings import StackSettings

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    rt = Runtime(FunctionSettings.from_env(COMPLETE_ENV), session=session)

    for client in (rt.dynamodb, rt.sqs):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (1, 2)
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    worst_case_s = 3 * (1 + 2) + 1 + 2  # three tries, backoff of at most 1 s then 2 s
    assert worst_case_s == SDK_CALL_BUDGET_S
    shortest = StackSettings.model_fields["apiTimeoutSeconds"].default
    assert shortest > SDK_CALL_BUDGET_S
