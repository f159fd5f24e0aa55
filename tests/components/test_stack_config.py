"""The config schema (Pulumi.yaml), the stack files, and how the program rejects bad values."""

from __future__ import annotations

import contextvars
from pathlib import Path

import pulumi
import pytest
import yaml

from components.stack_settings import read_stack_settings
from functions.settings import StackSettings
from taskctl import program
from taskctl.program import (
    UNDECRYPTED_SECRET_STAND_INS,
    RecordingMocks,
    StackConfigError,
    is_secret,
    load_stack_config,
    load_stack_settings,
    run_program,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
NAMESPACE = PROJECT["name"]
DECLARED = PROJECT["config"]
STACKS = ("dev", "prod")


def _pulumi_type(annotation: object) -> str:
    """The Pulumi config type a model field must be declared with (decimals travel as strings)."""
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    return "string"


def _stack_file(stack: str) -> dict[str, object]:
    return yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]


# -- the schema ------------------------------------------------------------------------------


def test_pulumi_yaml_declares_exactly_the_settings_fields_typed_and_described():
    assert set(DECLARED) == set(StackSettings.model_fields)
    for key, field in StackSettings.model_fields.items():
        declaration = DECLARED[key]
        assert declaration["type"] == _pulumi_type(field.annotation), key
        assert declaration.get("description", "").strip(), key
        assert "default" in declaration, key


def test_pulumi_yaml_defaults_equal_the_model_defaults():
    defaults = {key: declaration["default"] for key, declaration in DECLARED.items()}
    from_schema = read_stack_settings(
        lambda key: None if defaults[key] == "" else str(defaults[key])
    )
    assert from_schema == StackSettings()
    for key in StackSettings.model_fields:  # field by field, so a mismatch names its key
        assert getattr(from_schema, key) == getattr(StackSettings(), key), key


def test_runtime_uses_the_project_virtualenv():
    assert PROJECT["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }


# -- the stack files -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_set_a_region_and_only_declared_keys_of_the_declared_type_off_default(stack):
    config = _stack_file(stack)
    settings = load_stack_settings(stack)
    assert config.get("aws:region")
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        if namespace == "aws":
            continue
        assert namespace == NAMESPACE and name in DECLARED, key
        if is_secret(value):  # `pulumi config set --secret`: typed once decrypted
            continue
        declared_type = DECLARED[name]["type"]
        python_type = {"integer": int, "boolean": bool, "string": str}[declared_type]
        assert type(value) is python_type, (key, value, declared_type)
        # A stack file holds differences: a value equal to the default (as the settings model
        # reads both, so "20" and "20.0" are one value) belongs only in Pulumi.yaml.
        assert getattr(settings, name) != getattr(StackSettings(), name), (
            f"{key}: {value!r} is Pulumi.yaml's default; remove it from Pulumi.{stack}.yaml"
        )


def test_dev_runs_the_original_scenarios_two_attempts_thirty_percent_errors():
    dev = load_stack_settings("dev")
    assert dev.maxAttempts == 2
    assert dev.errorRate == pytest.approx(0.3)


def test_prod_is_stricter_than_dev():
    dev, prod = load_stack_settings("dev"), load_stack_settings("prod")
    assert prod.maxAttempts > dev.maxAttempts
    assert prod.backoffBaseSeconds > dev.backoffBaseSeconds
    assert prod.logRetentionDays > dev.logRetentionDays
    assert prod.pointInTimeRecovery and not dev.pointInTimeRecovery
    assert prod.deletionProtection and not dev.deletionProtection
    assert prod.jitter
    assert (prod.apiThrottleRateLimit, prod.apiThrottleBurstLimit) != (
        dev.apiThrottleRateLimit,
        dev.apiThrottleBurstLimit,
    )


def test_stack_config_is_what_the_cli_hands_the_program():
    # GIVEN the dev stack file WHEN it is loaded THEN keys are namespaced, values are strings,
    # booleans lower-case, and keys the stack leaves out take Pulumi.yaml's defaults
    config = load_stack_config("dev")
    assert all(isinstance(value, str) for value in config.values())
    assert config[f"{NAMESPACE}:maxDelaySeconds"] == str(
        _stack_file("dev")[f"{NAMESPACE}:maxDelaySeconds"]
    )
    assert f"{NAMESPACE}:maxAttempts" not in _stack_file("dev")
    assert config[f"{NAMESPACE}:maxAttempts"] == str(DECLARED["maxAttempts"]["default"])
    assert config[f"{NAMESPACE}:jitter"] in ("true", "false")
    assert config["aws:region"] == _stack_file("dev")["aws:region"]
    assert config[f"{NAMESPACE}:alarmEmail"] == DECLARED["alarmEmail"]["default"]


def test_unknown_stack_names_the_known_ones():
    with pytest.raises(StackConfigError, match="known stacks: dev, prod"):
        load_stack_config("staging")


# -- bad values fail the program with key, value and limit -----------------------------------

BAD_VALUES = [
    # (key, bad value, text naming the limit)
    ("maxDelaySeconds", "1200", "900"),
    ("errorRate", "1.5", "1"),
    ("errorRate", "-0.1", "0"),
    ("maxAttempts", "0", "1"),
    ("backoffBaseSeconds", "901", "900"),
    ("functionTimeoutSeconds", "901", "900"),
    # below one AWS call with its SDK retries (SDK_CALL_BUDGET_S = 12 s)
    ("functionTimeoutSeconds", "5", "12"),
    ("apiTimeoutSeconds", "11", "12"),
    # at API Gateway's 30 s integration timeout ("30 s": the limit, not the echoed value)
    ("apiTimeoutSeconds", "30", "30 s"),
    ("recoveryGraceSeconds", "5", "10"),
    ("recoveryGraceSeconds", "86401", "86400"),
    ("reconcileIntervalMinutes", "0", "1"),
    ("reconcileIntervalMinutes", "1441", "1440"),
    ("workerMaxConcurrency", "1", "2"),
    ("workerBatchSize", "11", "10"),
    ("logRetentionDays", "10", "14"),
    ("functionArchitecture", "sparc", "arm64"),
    ("alarmEmail", "ops-at-example", "e-mail"),
    ("failedTaskRateAlarmPercent", "150", "100"),
    ("failedTaskRateAlarmPercent", "0", "greater than 0"),
    ("jitter", "sometimes", "bool"),
]


@pytest.mark.parametrize(
    ("key", "value", "limit"), BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES]
)
def test_bad_config_value_fails_the_program_naming_key_value_and_limit(key, value, limit):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as failure:
        run_program("dev", mocks, config_overrides={f"{NAMESPACE}:{key}": value})
    message = str(failure.value)
    assert key in message
    assert value in message
    assert limit in message
    assert mocks.resources == []  # nothing is declared from settings that failed validation


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        # the limit is API Gateway's, and the message says what would still be accepted
        ("apiTimeoutSeconds", "30", r"apiTimeoutSeconds=30 .*API Gateway's 30 s .*at most 29"),
        ("functionTimeoutSeconds", "5", r"functionTimeoutSeconds=5 .*\(12 s\)"),
    ],
)
def test_function_timeouts_outside_their_aws_limits_name_key_value_and_limit_together(
    key, value, pattern
):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=pattern):
        run_program("dev", mocks, config_overrides={f"{NAMESPACE}:{key}": value})
    assert mocks.resources == []


def test_function_timeouts_at_their_limits_are_accepted():
    # GIVEN the longest api timeout under API Gateway's and the shortest one AWS call allows
    mocks = RecordingMocks()
    run_program(
        "dev",
        mocks,
        config_overrides={
            f"{NAMESPACE}:apiTimeoutSeconds": "29",
            f"{NAMESPACE}:functionTimeoutSeconds": "12",
        },
    )
    # THEN the program runs and the functions get exactly those timeouts
    timeouts = {
        function.name: function.inputs["timeout"]
        for function in mocks.created("aws:lambda/function:Function")
    }
    assert timeouts == {
        "api-function": 29,
        "worker-function": 12,
        "dead-letter-function": 12,
        "reconciler-function": 12,
    }


def test_backoff_base_above_the_stack_cap_is_rejected_with_both_values():
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=r"backoffBaseSeconds=120 exceeds maxDelaySeconds=60"):
        run_program(
            "dev",
            mocks,
            config_overrides={
                f"{NAMESPACE}:backoffBaseSeconds": "120",
                f"{NAMESPACE}:maxDelaySeconds": "60",
            },
        )


def test_alarm_email_adds_an_email_subscription_to_the_alarm_topic():
    mocks = RecordingMocks()
    run_program("dev", mocks, config_overrides={f"{NAMESPACE}:alarmEmail": "ops@example.com"})
    (subscription,) = mocks.created("aws:sns/topicSubscription:TopicSubscription")
    (topic,) = mocks.created("aws:sns/topic:Topic")
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "ops@example.com"
    assert subscription.inputs["topic"] == topic.outputs["arn"]


# -- secrets -------------------------------------------------------------------------------------

CIPHERTEXT = "v1:3kQ0yXl8hM4=:v1:Zm9vYmFyYmF6cXV4:bm90IHJlYWxseSBlbmNyeXB0ZWQ="


@pytest.fixture
def project_with_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the project's config files in which the dev stack holds `key` as a secret."""

    def make(key: str) -> None:
        (tmp_path / "Pulumi.yaml").write_text((PROJECT_DIR / "Pulumi.yaml").read_text())
        dev = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
        dev["config"][f"{NAMESPACE}:{key}"] = {"secure": CIPHERTEXT}
        (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(dev))
        monkeypatch.setattr(program, "PROJECT_DIR", tmp_path)
        monkeypatch.setattr(program, "PROJECT_FILE", tmp_path / "Pulumi.yaml")
        # The program itself still runs from the project (its path is absolute).
        monkeypatch.syspath_prepend(str(tmp_path))

    return make


def test_under_the_pulumi_cli_a_secret_reaches_the_reader_decrypted():
    # GIVEN alarmEmail set with `pulumi config set --secret`: the CLI hands the program the
    # decrypted value, marked secret
    def read():
        key = f"{NAMESPACE}:alarmEmail"
        pulumi.runtime.set_all_config({key: "ops@example.com"}, [key])
        return read_stack_settings(pulumi.Config(NAMESPACE).get)

    # WHEN the program reads its settings THEN the secret is accepted like any value
    assert contextvars.Context().run(read).alarmEmail == "ops@example.com"


def test_a_secret_alarm_email_is_read_by_taskctl_as_set_but_unknown(project_with_secret):
    # GIVEN a stack file whose alarmEmail is a Pulumi secret, which only the CLI can decrypt
    project_with_secret("alarmEmail")

    # WHEN taskctl reads the stack THEN the address is present, as a stand-in
    settings = load_stack_settings("dev")
    assert settings.alarmEmail == UNDECRYPTED_SECRET_STAND_INS["alarmEmail"]
    # AND the program runs on it, declaring the subscription a real address would get
    mocks = RecordingMocks()
    run_program("dev", mocks)
    (subscription,) = mocks.created("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["endpoint"] == UNDECRYPTED_SECRET_STAND_INS["alarmEmail"]


def test_a_secret_that_taskctl_needs_is_refused_naming_the_key(project_with_secret):
    # GIVEN a stack file whose maxAttempts is a secret: no stand-in could judge or run the stack
    project_with_secret("maxAttempts")

    # WHEN taskctl reads it THEN it says which key, why, and what to do
    with pytest.raises(StackConfigError) as refused:
        load_stack_settings("dev")
    message = str(refused.value)
    assert f"{NAMESPACE}:maxAttempts is a Pulumi secret" in message
    assert "Pulumi.dev.yaml" in message and "--plaintext" in message


def test_a_stack_file_that_is_not_yaml_is_one_line_saying_where(tmp_path, monkeypatch):
    # GIVEN a dev stack file with a key indented under a scalar (a typical hand edit)
    (tmp_path / "Pulumi.yaml").write_text((PROJECT_DIR / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  aws:region: eu-west-1\n    bad: 1\n")
    monkeypatch.setattr(program, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(program, "PROJECT_FILE", tmp_path / "Pulumi.yaml")

    with pytest.raises(StackConfigError) as refused:
        load_stack_settings("dev")

    assert str(refused.value) == (
        "stack dev: Pulumi.dev.yaml is not valid YAML: mapping values are not allowed here "
        "at line 3, column 8"
    )
