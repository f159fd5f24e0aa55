"""Per-stack settings: one pydantic model of the stack config, `StackSettings`.

The Pulumi program validates the stack config with `StackSettings` when it runs. Its retry-policy
fields are generated from `functions.policy.TaskPolicy` (default, bounds, description), which the
deployed functions parse again from their environment variables without importing pydantic (see
`functions.policy`). Field names are the Pulumi config keys (camelCase), so an error names the key
the user typed in `Pulumi.<stack>.yaml`. Defaults here mirror `Pulumi.yaml`'s `config:` block (a
test keeps them equal).

No Pulumi import: this module is shared by the program and the tooling. The functions' bundle
carries it, but no handler imports it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from functions.policy import (
    POLICY_FIELDS,
    SDK_CALL_BUDGET_S,
    ApiAuth,
    SettingsError,
    TaskPolicy,
)

SQS_MAX_VISIBILITY_TIMEOUT_S = 43_200  # 12 hours: SQS's ceiling for a message's visibility
LAMBDA_MAX_TIMEOUT_S = 900
VISIBILITY_TO_TIMEOUT_RATIO = 6  # AWS's guidance for a queue feeding a Lambda function
# Receives of one message that are not attempts: an early duplicate re-hidden until its retry
# time, or a delivery that met another worker's live lease. Each bumps ApproximateReceiveCount
# without consuming an attempt, so redrive must allow for them or it would dead-letter a task
# that still has attempts left.
REDRIVE_RECEIVE_MARGIN = 5
API_GATEWAY_TIMEOUT_S = 30  # an HTTP API gives up on its integration after 30 s
# An SQS event source mapping's limits: 1..10 records per batch without a batching window, and a
# maximum concurrency of 2..1000 invocations. The settings model and `QueueTrigger` check these.
ESM_MIN_BATCH_SIZE = 1
ESM_MAX_BATCH_SIZE = 10
ESM_MIN_CONCURRENCY = 2
ESM_MAX_CONCURRENCY = 1000
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS_ALLOWED = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

# Lambda's Python runtimes (python3.X) the functions may run on: the Amazon Linux 2023 ones, which
# the pinned function dependencies support (cp3X wheels for arm64 and x86_64). The newest is the
# default. Deprecation dates (AWS Lambda developer guide, "Building Lambda functions with Python"):
# 3.14 and 3.13 on 2029-06-30, 3.12 on 2028-10-31. python3.10 (2026-10-31) and python3.11
# (2027-06-30) run on Amazon Linux 2 and are left out.
LambdaPythonVersion = Literal["3.12", "3.13", "3.14"]
# Lambda's reserved concurrency: at most this many api invocations run at once.
LAMBDA_MAX_RESERVED_CONCURRENCY = 1000

M = TypeVar("M", bound=BaseModel)

_POLICY_TYPES = {"int": int, "float": float, "bool": bool}


def _policy_field(spec: dataclasses.Field) -> tuple[type, Any]:
    """A `TaskPolicy` field as a pydantic field: its type, default, description and bounds."""
    return _POLICY_TYPES[spec.type], Field(default=spec.default, **spec.metadata)


# The policy's fields as the stack config validates them: generated from `TaskPolicy`, so a
# bound or a default is written once, where the functions read it.
_PolicySettings = create_model(
    "_PolicySettings",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    **{spec.name: _policy_field(spec) for spec in dataclasses.fields(TaskPolicy)},
)


class StackSettings(_PolicySettings):
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
        try:
            self.policy  # noqa: B018 -- the policy's own cross-field checks
        except SettingsError as problem:
            raise ValueError(str(problem)) from None
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
        return TaskPolicy(**{name: getattr(self, name) for name in POLICY_FIELDS})

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


def _validate(model: type[M], raw: dict, *, source: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, raw, source=source)) from None


def _describe(exc: ValidationError, raw: dict, *, source: str) -> str:
    """One line per problem: the key as the user wrote it, the value, and the limit."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if not key:  # a cross-field check: its message already names keys and values
            lines.append(str(error["msg"]).removeprefix("Value error, "))
        elif error["type"] == "extra_forbidden":
            lines.append(f"{source} {key} is not a setting this stack knows")
        else:
            value = raw.get(key, "<missing>")
            limit = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{key}={value!r}: {limit}")
    return "invalid stack settings: " + "; ".join(lines)
