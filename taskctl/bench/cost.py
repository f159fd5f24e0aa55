"""Cost per million tasks from per-task usage and a prices file: pure arithmetic, no I/O.

`TaskUsage` is what one task costs in billable units for one design; `cost_per_million` prices it
line by line. The measured usage comes from `taskctl.bench.requests`; prices from
`bench/prices.json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from taskctl.bench.recorded import at, load_recorded
from taskctl.local.paths import PROJECT_DIR

PRICES_FILE = PROJECT_DIR / "bench" / "prices.json"
TASKS = 1_000_000  # costs are quoted per million tasks
BYTES_PER_GB = 1024**3  # AWS bills GB as GiB
DAYS_PER_MONTH = 30


@dataclass(frozen=True, kw_only=True)
class Prices:
    http_api_per_million: float = at("apiGateway", "httpApiPerMillionRequests")
    rest_api_per_million: float = at("apiGateway", "restApiPerMillionRequests")
    lambda_per_million_requests: float = at("lambda", "perMillionRequests")
    lambda_per_gb_s: Mapping[str, float] = at("lambda", "perGbSecond")
    sqs_per_million: float = at("sqs", "perMillionRequests")
    dynamodb_per_million_wru: float = at("dynamodb", "perMillionWriteRequestUnits")
    dynamodb_per_million_rru: float = at("dynamodb", "perMillionReadRequestUnits")
    dynamodb_per_gb_month: float = at("dynamodb", "perGbMonthStorage")
    logs_per_gb: float = at("cloudwatchLogs", "perGbIngested")
    recorded: str = at("recorded")
    region: str = at("region")

    @classmethod
    def load(cls) -> Prices:
        return load_recorded(cls, PRICES_FILE)


@dataclass(frozen=True, kw_only=True)
class TaskUsage:
    """Billable units one task consumes in one design (averages, so fractions are fine)."""

    api_kind: Literal["http", "rest"]
    api_requests: float
    lambda_invocations: dict[str, float]  # function -> invocations per task
    lambda_billed_ms: dict[str, float]  # function -> billed milliseconds per task
    memory_mb: int
    architecture: str
    sqs_handler_requests: float  # calls the functions make
    sqs_event_source_requests: float  # the event source mappings' receives and deletes
    dynamodb_wru: float
    dynamodb_rru: float
    log_bytes: float
    stored_bytes: float  # the task's item, kept for `stored_days`
    stored_days: float

    @property
    def gb_seconds(self) -> float:
        return sum(self.lambda_billed_ms.values()) / 1000.0 * self.memory_mb / 1024.0


def cost_per_million(usage: TaskUsage, prices: Prices) -> dict[str, float]:
    """Dollars per million tasks, by line; `total` sums them."""
    api_price = (
        prices.http_api_per_million if usage.api_kind == "http" else prices.rest_api_per_million
    )
    lines = {
        "apiGatewayRequests": usage.api_requests * api_price,
        "lambdaRequests": sum(usage.lambda_invocations.values())
        * prices.lambda_per_million_requests,
        "lambdaDuration": usage.gb_seconds * TASKS * prices.lambda_per_gb_s[usage.architecture],
        "sqsHandlerRequests": usage.sqs_handler_requests * prices.sqs_per_million,
        "sqsEventSourceRequests": usage.sqs_event_source_requests * prices.sqs_per_million,
        "dynamodbWrites": usage.dynamodb_wru * prices.dynamodb_per_million_wru,
        "dynamodbReads": usage.dynamodb_rru * prices.dynamodb_per_million_rru,
        "dynamodbStorage": usage.stored_bytes
        * TASKS
        / BYTES_PER_GB
        * (usage.stored_days / DAYS_PER_MONTH)
        * prices.dynamodb_per_gb_month,
        "logsIngestion": usage.log_bytes * TASKS / BYTES_PER_GB * prices.logs_per_gb,
    }
    lines["total"] = math.fsum(lines.values())
    return lines


def weighted_mix(costs: dict[str, dict[str, float]], weights: dict[str, float]) -> dict[str, float]:
    """Expected cost per million tasks for a mix of scenarios (weights sum to 1)."""
    lines = next(iter(costs.values())).keys()
    return {line: math.fsum(weights[s] * costs[s][line] for s in weights) for line in lines}


def billed_ms(duration_ms: float) -> float:
    """Lambda bills each invocation's duration rounded up to the millisecond."""
    return float(math.ceil(duration_ms))
