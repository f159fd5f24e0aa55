"""What the functions read from their environment at run time: the task policy and its limits.

Plain Python on purpose. The worker, the dead-letter function and the reconciler import this and
not pydantic: importing pydantic's model machinery and building the models costs about a third of
a bare `import boto3` on every cold start, as much again as Powertools (README, "Cold start").
Pydantic validates what comes from outside: the stack config (`functions.settings.StackSettings`,
whose policy fields are generated from `TaskPolicy` below, so each limit is written once) and the
API's requests. The environment the functions parse here is the one the program wrote from
validated settings; `TaskPolicy` checks it against the same limits anyway and names the variable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

MAX_RETRY_DELAY_S = 900  # 15 minutes: the original spec's backoff cap (SQS's DelaySeconds limit)
# A message that reaches the DLQ through the redrive policy while its task still has attempts left
# went there on receives that were not attempts (an outage, throttling, deferrals, duplicates): the
# dead-letter function returns it to the main queue. Only this many trips in a row without a new
# attempt in between mark it poisonous (it crashes the worker before any claim): FAILED.
MAX_DEAD_LETTER_RETURNS = 3
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

ENV_PREFIX = "TASKS_"
# The api function's `apiAuth` (`jwt` or `none`); unset reads as `jwt`, so it fails closed.
API_AUTH_ENV = ENV_PREFIX + "API_AUTH"
# Who may call the API (DESIGN §2): `jwt` puts API Gateway's JWT authorizer on the task routes;
# `none` leaves them open to anyone who has the URL, all callers being one anonymous owner.
ApiAuth = Literal["jwt", "none"]

# How an environment variable spells a boolean (pydantic's lax spellings, so values written by
# hand keep working); `to_env` writes "true"/"false".
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


class SettingsError(ValueError):
    """Stack settings that cannot be deployed; the message names each bad key and its limit."""


def setting(
    default: Any, description: str, *, ge: float | None = None, le: float | None = None
) -> Any:
    """A policy field: its default, what it means, and its bounds (inclusive). `StackSettings`
    turns the same three into pydantic `Field`s, so the config and the functions share them."""
    bounds = {name: bound for name, bound in (("ge", ge), ("le", le)) if bound is not None}
    return field(default=default, metadata={"description": description, **bounds})


@dataclass(frozen=True, kw_only=True)
class TaskPolicy:
    """What the functions need at run time: the retry and simulated-work policy."""

    maxAttempts: int = setting(2, "Attempts per task, first included", ge=1, le=50)
    errorRate: float = setting(0.3, "Probability an ordinary task's attempt fails", ge=0.0, le=1.0)
    backoffBaseSeconds: int = setting(
        2, "Delay after the first failed attempt", ge=0, le=MAX_RETRY_DELAY_S
    )
    maxDelaySeconds: int = setting(
        MAX_RETRY_DELAY_S, "Cap on any retry delay (SQS limit 900 s)", ge=0, le=MAX_RETRY_DELAY_S
    )
    jitter: bool = setting(False, "Full jitter: uniform delay in [0, backoff]")
    taskTtlDays: int = setting(30, "Days a finished task's record is kept", ge=1, le=3650)
    recoveryGraceSeconds: int = setting(
        300,
        "How long an unfinished task may be overdue before it is re-enqueued",
        ge=10,
        le=86_400,
    )

    def __post_init__(self) -> None:
        problems = [
            f"{spec.name}={getattr(self, spec.name)!r}: {problem}"
            for spec in fields(self)
            if (problem := _problem(spec, getattr(self, spec.name)))
        ]
        if not problems and self.backoffBaseSeconds > self.maxDelaySeconds:
            problems.append(
                f"backoffBaseSeconds={self.backoffBaseSeconds} exceeds "
                f"maxDelaySeconds={self.maxDelaySeconds}; the first delay could never be reached"
            )
        if problems:
            raise SettingsError("; ".join(problems))

    # -- environment round trip (the functions' side) -----------------------------------------

    def to_env(self) -> dict[str, str]:
        """The policy as Lambda environment variables (`TASKS_MAX_ATTEMPTS=2`, ...)."""
        return {env_name(spec.name): _env_value(getattr(self, spec.name)) for spec in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TaskPolicy:
        """Parse the policy back from the environment; unset variables take the defaults.
        `SettingsError` names each bad variable, its value and the limit."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in fields(cls):
            name = env_name(spec.name)
            if name not in environ:
                continue
            text = environ[name]
            value = _parse(spec, text)
            problem = "should be " + _KIND[spec.type] if value is None else _problem(spec, value)
            if problem:
                problems.append(f"{name}={text!r}: {problem}")
            values[spec.name] = value
        if problems:
            raise SettingsError("invalid function environment: " + "; ".join(problems))
        try:
            return cls(**values)
        except SettingsError as problem:  # a cross-field check
            raise SettingsError(f"invalid function environment: {problem}") from None


POLICY_FIELDS: tuple[str, ...] = tuple(spec.name for spec in fields(TaskPolicy))

_KIND = {"int": "an integer", "float": "a number", "bool": "a boolean (true or false)"}


def _parse(spec: Field, text: str) -> Any:
    """The variable's value as the field's type, None if it does not read as one."""
    text = text.strip()
    if spec.type == "bool":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    try:
        return int(text) if spec.type == "int" else float(text)
    except ValueError:
        return None


def _problem(spec: Field, value: Any) -> str | None:
    """What is wrong with `value` for the field, or None."""
    if spec.type == "bool":
        return None if isinstance(value, bool) else "should be " + _KIND["bool"]
    numeric = (int,) if spec.type == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric):
        return "should be " + _KIND[spec.type]
    if not math.isfinite(value):
        return "should be a finite number"
    if "ge" in spec.metadata and value < spec.metadata["ge"]:
        return f"should be greater than or equal to {spec.metadata['ge']}"
    if "le" in spec.metadata and value > spec.metadata["le"]:
        return f"should be less than or equal to {spec.metadata['le']}"
    return None


def env_name(key: str) -> str:
    """`maxAttempts` -> `TASKS_MAX_ATTEMPTS`."""
    return ENV_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()


def _env_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
