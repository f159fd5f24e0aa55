"""The AWS quotas a stack is checked against, from `bench/quotas.json` (each cites its page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskctl.bench.recorded import at, load_recorded
from taskctl.local.paths import PROJECT_DIR

QUOTAS_FILE = PROJECT_DIR / "bench" / "quotas.json"


def _quota(name: str) -> Any:
    return at("quotas", name, "value")


@dataclass(frozen=True, kw_only=True)
class Quotas:
    sqs_in_flight: int = _quota("sqsInFlightPerStandardQueue")  # per standard queue
    sqs_max_delay_s: int = _quota("sqsMaxDelaySeconds")
    lambda_concurrency: int = _quota("lambdaConcurrentExecutions")  # per account and Region
    esm_max_concurrency: int = _quota("esmMaximumConcurrency")
    esm_initial_batches: int = _quota("esmInitialConcurrentBatches")
    esm_scale_up_per_min: int = _quota("esmScaleUpPerMinute")
    partition_wcu: int = _quota("dynamodbPartitionWriteUnits")  # per partition, tables, GSIs
    partition_rcu: int = _quota("dynamodbPartitionReadUnits")
    table_wru: int = _quota("dynamodbOnDemandTableWriteUnits")  # on demand, per table and per GSI
    table_rru: int = _quota("dynamodbOnDemandTableReadUnits")
    api_account_rps: int = _quota("apiGatewayAccountThrottleRps")
    api_account_burst: int = _quota("apiGatewayAccountBurst")
    recorded: str = at("recorded")

    @classmethod
    def load(cls) -> Quotas:
        return load_recorded(cls, QUOTAS_FILE)
