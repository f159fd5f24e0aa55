"""The settings model shared by the Pulumi program and the functions (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.policy import MAX_RETRY_DELAY_S, POLICY_FIELDS, SettingsError, TaskPolicy, env_name
from functions.settings import REDRIVE_RECEIVE_MARGIN, StackSettings


@st.composite
def valid_policies(draw: st.DrawFn) -> TaskPolicy:
    max_delay_s = draw(st.integers(min_value=0, max_value=MAX_RETRY_DELAY_S))
    return TaskPolicy(
        maxAttempts=draw(st.integers(min_value=1, max_value=50)),
        errorRate=draw(st.floats(min_value=0, max_value=1, allow_nan=False)),
        backoffBaseSeconds=draw(st.integers(min_value=0, max_value=max_delay_s)),
        maxDelaySeconds=max_delay_s,
        jitter=draw(st.booleans()),
        taskTtlDays=draw(st.integers(min_value=1, max_value=3650)),
    )


@given(policy=valid_policies())
def test_the_policy_survives_the_round_trip_through_the_environment(policy: TaskPolicy) -> None:
    assert TaskPolicy.from_env(policy.to_env()) == policy


def test_environment_variable_names_are_prefixed_upper_snake_case() -> None:
    env = TaskPolicy(jitter=True).to_env()

    assert env["TASKS_MAX_ATTEMPTS"] == "2"
    assert env["TASKS_BACKOFF_BASE_SECONDS"] == "2"
    assert env["TASKS_JITTER"] == "true"
    assert set(env) == {
        "TASKS_MAX_ATTEMPTS",
        "TASKS_ERROR_RATE",
        "TASKS_BACKOFF_BASE_SECONDS",
        "TASKS_MAX_DELAY_SECONDS",
        "TASKS_JITTER",
        "TASKS_TASK_TTL_DAYS",
        "TASKS_RECOVERY_GRACE_SECONDS",
    }


def test_unset_variables_take_the_defaults_and_others_are_ignored() -> None:
    assert TaskPolicy.from_env({"PATH": "/bin", "TASKS_MAX_ATTEMPTS": "4"}) == TaskPolicy(
        maxAttempts=4
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"TASKS_MAX_ATTEMPTS": "0"}, ["TASKS_MAX_ATTEMPTS='0'", "greater than or equal to 1"]),
        ({"TASKS_ERROR_RATE": "1.5"}, ["TASKS_ERROR_RATE='1.5'", "less than or equal to 1"]),
        ({"TASKS_MAX_DELAY_SECONDS": "1200"}, ["TASKS_MAX_DELAY_SECONDS='1200'", "900"]),
        ({"TASKS_JITTER": "maybe"}, ["TASKS_JITTER='maybe'", "boolean"]),
        ({"TASKS_MAX_ATTEMPTS": "two"}, ["TASKS_MAX_ATTEMPTS='two'", "integer"]),
    ],
)
def test_a_bad_environment_variable_is_named_with_its_value_and_limit(
    environ: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(SettingsError) as caught:
        TaskPolicy.from_env(environ)

    for text in named:
        assert text in str(caught.value)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"maxDelaySeconds": 1200}, ["maxDelaySeconds=1200", "900"]),
        ({"backoffBaseSeconds": 60, "maxDelaySeconds": 30}, ["backoffBaseSeconds=60", "30"]),
        ({"logRetentionDays": 10}, ["logRetentionDays=10", "14"]),
        ({"functionTimeoutSeconds": 7201}, ["functionTimeoutSeconds", "900"]),
        ({"workerMaxConcurrency": 1}, ["workerMaxConcurrency=1", "2"]),
        ({"alarmEmail": "ops"}, ["alarmEmail='ops'", "e-mail"]),
        ({"maxAtempts": 3}, ["maxAtempts", "not a setting"]),
    ],
)
def test_a_bad_stack_config_key_is_named_with_its_value_and_limit(
    config: dict[str, object], named: list[str]
) -> None:
    with pytest.raises(SettingsError) as caught:
        StackSettings.from_config(config)

    for text in named:
        assert text in str(caught.value)


def test_derived_queue_values_follow_the_function_timeout_and_attempts() -> None:
    settings = StackSettings.from_config({"functionTimeoutSeconds": "45", "maxAttempts": "3"})

    assert settings.visibility_timeout_s == 6 * 45
    assert settings.max_receive_count == 3 + REDRIVE_RECEIVE_MARGIN
    assert settings.policy == TaskPolicy(maxAttempts=3)


def test_the_api_function_must_end_before_api_gateway_gives_up() -> None:
    with pytest.raises(SettingsError, match=r"apiTimeoutSeconds=30 reaches API Gateway's 30 s"):
        StackSettings.from_config({"apiTimeoutSeconds": 30})


def test_no_function_may_time_out_inside_one_aws_call_and_its_retries() -> None:
    with pytest.raises(SettingsError, match=r"functionTimeoutSeconds=5 is shorter than one AWS"):
        StackSettings.from_config({"functionTimeoutSeconds": 5})


# -- callers (issue 9) -------------------------------------------------------------------------


def test_callers_authenticate_by_default() -> None:
    assert StackSettings().apiAuth == "jwt"


def test_a_protected_stack_refuses_an_open_api() -> None:
    with pytest.raises(SettingsError, match=r"apiAuth='none' with deletionProtection=true"):
        StackSettings.from_config({"apiAuth": "none", "deletionProtection": "true"})


def test_an_unprotected_stack_may_be_open() -> None:
    assert StackSettings.from_config({"apiAuth": "none"}).apiAuth == "none"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"apiAuth": "basic"}, "apiAuth='basic'"),
        ({"apiJwtIssuer": "https://id.example.com"}, "go together"),
        ({"apiJwtAudience": "tasks"}, "go together"),
        (
            {"apiAuth": "none", "apiJwtIssuer": "https://id.example.com", "apiJwtAudience": "a"},
            "checks no token",
        ),
        ({"apiJwtIssuer": "http://id.example.com", "apiJwtAudience": "a"}, "not an https URL"),
        ({"apiReservedConcurrency": 0}, "apiReservedConcurrency=0"),
    ],
)
def test_bad_caller_settings_are_named(config: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(named)):
        StackSettings.from_config(config)


def test_an_external_issuer_lists_its_audiences() -> None:
    settings = StackSettings.from_config(
        {"apiJwtIssuer": "https://id.example.com/", "apiJwtAudience": "tasks-api, ops"}
    )

    assert settings.jwt_audiences == ("tasks-api", "ops")


# -- one declaration of the policy's bounds (functions.policy) -------------------------------

_BOUNDED = [
    (name, bound, limit)
    for name in POLICY_FIELDS
    for bound, limit in TaskPolicy.__dataclass_fields__[name].metadata.items()
    if bound in ("ge", "le")
]


@pytest.mark.parametrize(("name", "bound", "limit"), _BOUNDED)
def test_the_config_and_the_environment_refuse_the_same_value_beyond_a_bound(
    name: str, bound: str, limit: float
) -> None:
    # GIVEN a value just beyond one of the policy's bounds (and the base kept within the cap)
    step = 1 if isinstance(getattr(TaskPolicy(), name), int) else 0.5
    value = limit - step if bound == "ge" else limit + step
    # WHEN the stack config or a function's environment carries it THEN both refuse it by name
    with pytest.raises(SettingsError, match=rf"{name}={value!r}"):
        StackSettings.from_config({name: value})
    with pytest.raises(SettingsError, match=rf"{env_name(name)}='{value}'"):
        TaskPolicy.from_env({env_name(name): str(value)})
    # AND the limit itself is accepted by both
    assert getattr(StackSettings.from_config({"backoffBaseSeconds": 0, name: limit}), name) == limit
    within_cap = {env_name("backoffBaseSeconds"): "0", env_name(name): str(limit)}
    assert getattr(TaskPolicy.from_env(within_cap), name) == limit


def test_every_bounded_policy_field_is_covered_above() -> None:
    assert {name for name, _, _ in _BOUNDED} >= {"maxAttempts", "errorRate", "maxDelaySeconds"}
