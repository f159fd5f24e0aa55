"""What the handlers need from their environment, read once and lazily.

`current()` builds a `Runtime` from `os.environ` on first use: the settings (policy from
`TaskPolicy.from_env`, table name, queue URLs, stack), boto3 clients (region and endpoint from the
standard AWS environment, nothing hard-coded), the clock and the random source. Nothing is built
at import time. Tests, the benchmark and the fault campaign call `use(runtime)` to inject their
own (with their own clock, random source, session or clients).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from functions.metrics import METRICS_NAMESPACE
from functions.policy import (
    API_AUTH_ENV,
    SDK_CONNECT_TIMEOUT_S,
    SDK_MAX_ATTEMPTS,
    SDK_READ_TIMEOUT_S,
    ApiAuth,
    SettingsError,
    TaskPolicy,
)
from functions.queue import TaskQueue
from functions.store import TaskStore

TABLE_NAME_ENV = "TASKS_TABLE_NAME"
QUEUE_URL_ENV = "TASKS_QUEUE_URL"
DLQ_URL_ENV = "TASKS_DLQ_URL"
STACK_ENV = "TASKS_STACK"
SERVICE_ENV = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"


# boto3's defaults (60 s timeouts, legacy retries) could outlive the function making the call; these
# bound one call, retries included, by `settings.SDK_CALL_BUDGET_S` (the settings model checks
# every function timeout against it). Standard mode retries throttling and 5xx with backoff.
CLIENT_CONFIG = Config(
    connect_timeout=SDK_CONNECT_TIMEOUT_S,
    read_timeout=SDK_READ_TIMEOUT_S,
    retries={"mode": "standard", "total_max_attempts": SDK_MAX_ATTEMPTS},
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FunctionSettings:
    """The environment a function runs with (see the shared contract)."""

    policy: TaskPolicy
    table_name: str
    queue_url: str
    dead_letter_queue_url: str
    stack: str
    service: str = "tasks"
    metrics_namespace: str = METRICS_NAMESPACE
    # Whether API Gateway authenticated the caller (`jwt`) or the API is open (`none`).
    api_auth: ApiAuth = "jwt"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FunctionSettings:
        """Parse the environment; `SettingsError` names every missing variable."""
        required = (TABLE_NAME_ENV, QUEUE_URL_ENV, DLQ_URL_ENV, STACK_ENV)
        missing = [name for name in required if not environ.get(name)]
        if missing:
            raise SettingsError(
                "invalid function environment: "
                + "; ".join(f"environment variable {name} is not set" for name in missing)
            )
        return cls(
            policy=TaskPolicy.from_env(environ),
            table_name=environ[TABLE_NAME_ENV],
            queue_url=environ[QUEUE_URL_ENV],
            dead_letter_queue_url=environ[DLQ_URL_ENV],
            stack=environ[STACK_ENV],
            service=environ.get(SERVICE_ENV) or "tasks",
            metrics_namespace=environ.get(METRICS_NAMESPACE_ENV) or METRICS_NAMESPACE,
            api_auth=_api_auth(environ.get(API_AUTH_ENV) or "jwt"),
        )


def _api_auth(value: str) -> ApiAuth:
    if value not in ("jwt", "none"):
        raise SettingsError(f"invalid function environment: {API_AUTH_ENV}={value!r}: jwt or none")
    return "jwt" if value == "jwt" else "none"


@dataclass
class Runtime:
    """Settings plus the adapters built from them; clients are made on first use."""

    settings: FunctionSettings
    clock: Callable[[], datetime] = utc_now
    # Simulated work and jitter only: not security-sensitive, so the default PRNG is fine.
    rng: random.Random = field(default_factory=random.Random)
    session: Any = None  # a boto3.Session; None means the default session
    # Makes the client for a service name ("dynamodb", "sqs"); None: the session's, configured
    # as deployed. The fault campaign passes its own, whose requests go to its simulated AWS.
    client_factory: Callable[[str], Any] | None = None

    def _client(self, service: str) -> Any:
        if self.client_factory is not None:
            return self.client_factory(service)
        return (self.session or boto3).client(service, config=CLIENT_CONFIG)

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs")

    @cached_property
    def store(self) -> TaskStore:
        return TaskStore(self.dynamodb, self.settings.table_name, self.settings.policy.taskTtlDays)

    @cached_property
    def queue(self) -> TaskQueue:
        return TaskQueue(self.sqs, self.settings.queue_url, self.settings.dead_letter_queue_url)


_current: Runtime | None = None


def current() -> Runtime:
    """The process's runtime, built from the environment on the first call."""
    global _current
    if _current is None:
        _current = Runtime(FunctionSettings.from_env(os.environ))
    return _current


def use(runtime: Runtime | None) -> None:
    """Replace the process's runtime (tests); None makes the next `current()` re-read the
    environment."""
    global _current
    _current = runtime
