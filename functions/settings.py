"""Per-stack settings: one pydantic model, validated in two places.

The Pulumi program validates the stack config with `StackSettings` when it runs; the deployed
functions parse the subset they need (`TaskPolicy`, its base class) again from their environment
variables. Field names are the Pulumi config keys (camelCase), so an error names the key the user
typed in `Pulumi.<stack>.yaml`. Defaults here mirror `Pulumi.yaml`'s `config:` block (a test keeps
them equal).

No Pulumi import: this module ships inside every function bundle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SQS_MAX_VISIBILITY_TIMEOUT_S = 43_200  # 12 hours: SQS's ceiling for a message's visibility
MAX_RETRY_DELAY_S = 900  # 15 minutes: the original spec's backoff cap
LAMBDA_MAX_TIMEOUT_S = 900
VISIBILITY_TO_TIMEOUT_RATIO = 6  # AWS's guidance for a queue feeding a Lambda function
# Receives of one message that are not attempts: an early duplicate re-hidden until its retry
# time, or a delivery that met another worker's live lease. Each bumps ApproximateReceiveCount
# without consuming an attempt, so redrive must allow for them or it would dead-letter a task
# that still has attempts left.
REDRIVE_RECEIVE_MARGIN = 5
# A message that reaches the DLQ through the redrive policy while its task still has attempts left
# went there on receives that were not attempts (an outage, throttling, deferrals, duplicates): the
# dead-letter function returns it to the main queue. Only this many trips in a row without a new
# attempt in between mark it poisonous (it crashes the worker before any claim): FAILED.
MAX_DEAD_LETTER_RETURNS = 3
API_GATEWAY_TIMEOUT_S = 30  # an HTTP API gives up on its integration after 30 s
# An SQS event source mapping's limits: 1..10 records per batch without a batching window, and a
# maximum concurrency of 2..1000 invocations. The settings model and `QueueTrigger` check these.
ESM_MIN_BATCH_SIZE = 1
ESM_MAX_BATCH_SIZE = 10
ESM_MIN_CONCURRENCY = 2
ESM_MAX_CONCURRENCY = 1000
# Every AWS call the functions make: connect and read timeouts and the SDK's retry budget (standard
# mode: up to 3 tries, a random backoff of at most 1 s then 2 s between them). One call, retries
# included, ends within SDK_CALL_BUDGET_S, so it never outlives the function that makes it.
SDK_CONNECT_TIMEOUT_S = 1
SDK_READ_TIMEOUT_S = 2
SDK_MAX_ATTEMPTS = 3
SDK_MAX_BACKOFF_TOTAL_S = 3
SDK_CALL_BUDGET_S = (
    SDK_MAX_ATTEMPTS * (SDK_CONNECT_TIMEOUT_S + SDK_READ_TIMEOUT_S) + SDK_MAX_BACKOFF_TOTAL_S
)
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS_ALLOWED = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

ENV_PREFIX = "TASKS_"
# The api function's `apiAuth` (`jwt` or `none`); unset reads as `jwt`, so it fails closed.
API_AUTH_ENV = ENV_PREFIX + "API_AUTH"
# Lambda's Python runtimes (python3.X) the functions may run on: the Amazon Linux 2023 ones, which
# the pinned function dependencies support (cp3X wheels for arm64 and x86_64). The newest is the
# default. Deprecation dates (AWS Lambda developer guide, "Building Lambda functions with Python"):
# 3.14 and 3.13 on 2029-06-30, 3.12 on 2028-10-31. python3.10 (2026-10-31) and python3.11
# (2027-06-30) run on Amazon Linux 2 and are left out.
LambdaPythonVersion = Literal["3.12", "3.13", "3.14"]
# Who may call the API (DESIGN §2): `jwt` puts API Gateway's JWT authorizer on the task routes;
# `none` leaves them open to anyone who has the URL, all callers being one anonymous owner.
ApiAuth = Literal["jwt", "none"]
# Lambda's reserved concurrency: at most this many api invocations run at once.
LAMBDA_MAX_RESERVED_CONCURRENCY = 1000

M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """Stack settings that cannot be deployed; the message names each bad key and its limit."""


class TaskPolicy(BaseModel):
    """What the functions need at run time: the retry and simulated-work policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    maxAttempts: Annotated[
        int, Field(ge=1, le=50, description="Attempts per task, first included")
    ] = 2
    errorRate: Annotated[
        float, Field(ge=0.0, le=1.0, description="Probability an ordinary task's attempt fails")
    ] = 0.3
    backoffBaseSeconds: Annotated[
        int, Field(ge=0, le=MAX_RETRY_DELAY_S, description="Delay after the first failed attempt")
    ] = 2
    maxDelaySeconds: Annotated[
        int,
        Field(ge=0, le=MAX_RETRY_DELAY_S, description="Cap on any retry delay (SQS limit 900 s)"),
    ] = MAX_RETRY_DELAY_S
    jitter: Annotated[bool, Field(description="Full jitter: uniform delay in [0, backoff]")] = False
    taskTtlDays: Annotated[
        int, Field(ge=1, le=3650, description="Days a finished task's record is kept")
    ] = 30
    recoveryGraceSeconds: Annotated[
        int,
        Field(
            ge=10,
            le=86_400,
            description="How long an unfinished task may be overdue before it is re-enqueued",
        ),
    ] = 300

    @model_validator(mode="after")
    def _base_within_cap(self) -> Self:
        if self.backoffBaseSeconds > self.maxDelaySeconds:
            raise ValueError(
                f"backoffBaseSeconds={self.backoffBaseSeconds} exceeds "
                f"maxDelaySeconds={self.maxDelaySeconds}; the first delay could never be reached"
            )
        return self

    # -- environment round trip (the functions' side) -----------------------------------------

    def to_env(self) -> dict[str, str]:
        """The policy as Lambda environment variables (`TASKS_MAX_ATTEMPTS=2`, ...)."""
        return {
            _env_name(name): _env_value(getattr(self, name)) for name in TaskPolicy.model_fields
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TaskPolicy:
        """Parse the policy back from the environment; unset variables take the defaults."""
        raw = {
            name: environ[_env_name(name)]
            for name in TaskPolicy.model_fields
            if _env_name(name) in environ
        }
        return _validate(TaskPolicy, raw, source="environment variable", env=True)


class StackSettings(TaskPolicy):
    """Everything that differs between stacks; the Pulumi program's view of the config."""

    workerBatchSize: Annotated[
        int,
        Field(
            ge=ESM_MIN_BATCH_SIZE, le=ESM_MAX_BATCH_SIZE, description="SQS records per worker call"
        ),
    ] = 5
    workerMaxConcurrency: Annotated[
        int,
        Field(
            ge=ESM_MIN_CONCURRENCY,
            le=ESM_MAX_CONCURRENCY,
            description="ESM maximum concurrency (AWS minimum is 2)",
        ),
    ] = 5
    functionMemoryMb: Annotated[int, Field(ge=128, le=10_240)] = 256
    functionTimeoutSeconds: Annotated[int, Field(ge=1, le=LAMBDA_MAX_TIMEOUT_S)] = 30
    apiTimeoutSeconds: Annotated[int, Field(ge=1, le=LAMBDA_MAX_TIMEOUT_S)] = 15
    reconcileIntervalMinutes: Annotated[
        int, Field(ge=1, le=1440, description="How often the reconciler looks for stuck tasks")
    ] = 5
    functionArchitecture: Literal["arm64", "x86_64"] = "arm64"
    functionPythonVersion: LambdaPythonVersion = "3.14"
    logRetentionDays: int = 14
    apiThrottleRateLimit: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    apiThrottleBurstLimit: Annotated[int, Field(ge=1, le=5_000)] = 40
    alarmEmail: str | None = None
    # A FAILED task (attempts used up) is a business outcome, so by default nothing pages on it;
    # the dashboard graphs the rate either way. Set, it alarms at this share of finished tasks.
    failedTaskRateAlarmPercent: Annotated[
        float | None,
        Field(gt=0, le=100, description="Alarm when this % of finished tasks or more end FAILED"),
    ] = None
    deletionProtection: bool = False
    pointInTimeRecovery: bool = False
    # -- callers: authentication and the bounds on what one caller can spend (issue 9) --------
    apiAuth: Annotated[
        ApiAuth, Field(description="jwt: callers need a bearer token; none: open (dev only)")
    ] = "jwt"
    apiJwtIssuer: Annotated[
        str | None,
        Field(description="An external OIDC issuer (https URL); unset: the stack's own pool"),
    ] = None
    apiJwtAudience: Annotated[
        str | None,
        Field(description="The external issuer's audience(s), comma-separated"),
    ] = None
    apiReservedConcurrency: Annotated[
        int,
        Field(
            ge=1,
            le=LAMBDA_MAX_RESERVED_CONCURRENCY,
            description="Concurrent api invocations reserved, and allowed at most",
        ),
    ] = 10

    @model_validator(mode="after")
    def _aws_limits(self) -> Self:
        if self.logRetentionDays not in LOG_RETENTION_DAYS_ALLOWED:
            raise ValueError(
                f"logRetentionDays={self.logRetentionDays} is not a CloudWatch Logs retention "
                f"period; choose one of {', '.join(map(str, LOG_RETENTION_DAYS_ALLOWED))}"
            )
        if self.visibility_timeout_s > SQS_MAX_VISIBILITY_TIMEOUT_S:
            raise ValueError(
                f"functionTimeoutSeconds={self.functionTimeoutSeconds} needs a queue visibility "
                f"timeout of {self.visibility_timeout_s} s, above SQS's "
                f"{SQS_MAX_VISIBILITY_TIMEOUT_S} s limit"
            )
        for key in ("functionTimeoutSeconds", "apiTimeoutSeconds"):
            if getattr(self, key) < SDK_CALL_BUDGET_S:
                raise ValueError(
                    f"{key}={getattr(self, key)} is shorter than one AWS call with its retries "
                    f"({SDK_CALL_BUDGET_S} s); a function must outlive the calls it makes"
                )
        if self.apiTimeoutSeconds >= API_GATEWAY_TIMEOUT_S:
            raise ValueError(
                f"apiTimeoutSeconds={self.apiTimeoutSeconds} reaches API Gateway's "
                f"{API_GATEWAY_TIMEOUT_S} s integration timeout; the client would get a 503 while "
                f"the function still runs (use at most {API_GATEWAY_TIMEOUT_S - 1})"
            )
        if self.alarmEmail is not None and not re.fullmatch(
            r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarmEmail
        ):
            raise ValueError(f"alarmEmail={self.alarmEmail!r} is not an e-mail address")
        self._callers_are_authenticated_where_it_matters()
        return self

    def _callers_are_authenticated_where_it_matters(self) -> None:
        """A protected stack holds data someone cares about, so it is a production stack, and
        a production stack authenticates its callers: `apiAuth: none` with
        `deletionProtection: true` is refused. An external issuer comes with its audience, and
        only where tokens are checked at all."""
        if self.apiAuth == "none" and self.deletionProtection:
            raise ValueError(
                "apiAuth='none' with deletionProtection=true: a protected (production) stack "
                "must authenticate its callers; set apiAuth: jwt"
            )
        external = (self.apiJwtIssuer, self.apiJwtAudience)
        if any(external) and self.apiAuth != "jwt":
            raise ValueError(
                "apiJwtIssuer/apiJwtAudience are set but apiAuth is 'none', which checks no "
                "token; set apiAuth: jwt or remove them"
            )
        if any(external) and not all(external):
            raise ValueError(
                "apiJwtIssuer and apiJwtAudience go together: an external issuer's tokens are "
                "accepted only for a named audience"
            )
        if self.apiJwtIssuer is not None and not re.fullmatch(
            r"https://[^\s/]+(/\S*)?", self.apiJwtIssuer
        ):
            raise ValueError(
                f"apiJwtIssuer={self.apiJwtIssuer!r} is not an https URL (API Gateway fetches "
                "its keys from <issuer>/.well-known/openid-configuration)"
            )

    # -- derived values: computed here, never configured twice ---------------------------------

    @property
    def policy(self) -> TaskPolicy:
        """The subset the functions receive."""
        return TaskPolicy.model_validate(self.model_dump(include=set(TaskPolicy.model_fields)))

    @property
    def jwt_audiences(self) -> tuple[str, ...]:
        """The external issuer's audiences (empty with the stack's own pool)."""
        return tuple(a.strip() for a in (self.apiJwtAudience or "").split(",") if a.strip())

    @property
    def visibility_timeout_s(self) -> int:
        """Main queue visibility: 6 x the worker timeout, so a running batch is never re-served."""
        return VISIBILITY_TO_TIMEOUT_RATIO * self.functionTimeoutSeconds

    @property
    def max_receive_count(self) -> int:
        """Redrive threshold: every attempt plus the receives that are not attempts."""
        return self.maxAttempts + REDRIVE_RECEIVE_MARGIN

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> StackSettings:
        """Validate raw stack config (strings from Pulumi, or typed values from YAML)."""
        return _validate(cls, dict(values), source="config key")


def _env_name(field: str) -> str:
    return ENV_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", field).upper()


def _env_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _validate(model: type[M], raw: dict, *, source: str, env: bool = False) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, raw, source=source, env=env)) from None


def _describe(exc: ValidationError, raw: dict, *, source: str, env: bool) -> str:
    """One line per problem: the key as the user wrote it, the value, and the limit."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        shown = _env_name(key) if env and key else key
        if not key:  # a cross-field check: its message already names keys and values
            lines.append(str(error["msg"]).removeprefix("Value error, "))
        elif error["type"] == "extra_forbidden":
            lines.append(f"{source} {shown} is not a setting this stack knows")
        else:
            value = raw.get(key, "<missing>")
            limit = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{shown}={value!r}: {limit}")
    return "invalid stack settings: " + "; ".join(lines)
