"""The AWS quotas a stack is checked against, from `bench/quotas.json` (each cites its page)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from taskctl.local.paths import PROJECT_DIR

QUOTAS_FILE = PROJECT_DIR / "bench" / "quotas.json"


@dataclass(frozen=True, kw_only=True)
class Quotas:
    sqs_in_flight: int  # per standard queue
    sqs_max_delay_s: int
    lambda_concurrency: int  # per account and Region
    esm_max_concurrency: int
    esm_initial_batches: int
    esm_scale_up_per_min: int
    partition_wcu: int  # per partition, tables and GSIs alike
    partition_rcu: int
    table_wru: int  # on demand, per table and per GSI
    table_rru: int
    api_account_rps: int
    api_account_burst: int
    recorded: str

    @classmethod
    def load(cls) -> Quotas:
        raw = json.loads(QUOTAS_FILE.read_text())
        quota = {name: entry["value"] for name, entry in raw["quotas"].items()}
        return cls(
            sqs_in_flight=quota["sqsInFlightPerStandardQueue"],
            sqs_max_delay_s=quota["sqsMaxDelaySeconds"],
            lambda_concurrency=quota["lambdaConcurrentExecutions"],
            esm_max_concurrency=quota["esmMaximumConcurrency"],
            esm_initial_batches=quota["esmInitialConcurrentBatches"],
            esm_scale_up_per_min=quota["esmScaleUpPerMinute"],
            partition_wcu=quota["dynamodbPartitionWriteUnits"],
            partition_rcu=quota["dynamodbPartitionReadUnits"],
            table_wru=quota["dynamodbOnDemandTableWriteUnits"],
            table_rru=quota["dynamodbOnDemandTableReadUnits"],
            api_account_rps=quota["apiGatewayAccountThrottleRps"],
            api_account_burst=quota["apiGatewayAccountBurst"],
            recorded=raw["recorded"],
        )
