"""The capacity model: what a steady submit rate needs from AWS, on paper. Pure arithmetic.

For `rate` tasks per second whose attempts fail with probability `p`, a stack's settings give
each task's expected life (`TaskFlow`): attempts `A = sum(p^k, k = 0..maxAttempts-1)`, retries
`A - 1`, FAILED share `p^maxAttempts`, and the seconds it waits for retries, each wait at its
backoff ceiling (`lifecycle.backoff_ceiling_s`; with jitter a wait is at most that): `W = sum(p^n *
ceiling(n), n = 1..maxAttempts-1)`. By Little's law every steady quantity is a rate times a time:

- Lambda concurrency: api `rate x api time`; worker `rate x A x record time` (a batch of B
  records takes B record times and comes A/B times per task, so B cancels); dead letter
  `rate x p^M x its record time`; the reconciler runs one at a time.
- SQS, as the worker does it: a retry wait is a delayed re-send, not in flight. In flight are
  the records being processed, each held for its whole batch (`min(rate x A, the workers' pace) x
  B x record time`, at most workerMaxConcurrency x workerBatchSize), plus short deferrals (a share
  of deliveries hidden for a lease, the function timeout, plus 1 s). Delayed: `rate x W`. Before
  issue 13 the waits were kept in flight (ChangeMessageVisibility): `rate x W` more in flight.
- DynamoDB per table and index, in units per second, and the busiest partition key's part.
- The reconciler: each pass reads the tasks that came due since the last (`rate x interval`);
  it must get through them within its timeout.
- Cost per million tasks: the per-task usage priced with `taskctl.bench.cost` and
  `bench/prices.json`; per hour: that x rate x 3600 / 1e6.

What is not modelled: status reads by clients (GET /tasks/{id}; clients decide how often), the
reconciler's rescheduling writes for tasks still running at their first check, duplicates beyond
the deferral share, and AWS latency beyond the stated assumptions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pydantic.alias_generators import to_camel

from functions.lifecycle import LEASE_MARGIN_S, backoff_ceiling_s
from functions.policy import TaskPolicy
from functions.reconciler import STOP_MARGIN_MS
from functions.settings import StackSettings
from functions.store import CHECK_INDEX, CHECK_SHARDS, STATUS_INDEX
from taskctl.bench.cost import TASKS, Prices, TaskUsage, billed_ms, cost_per_million
from taskctl.bench.harness import PLATFORM_LOG_BYTES_PER_INVOCATION, RRU_BYTES, WRU_BYTES
from taskctl.bench.requests import (
    CHECK_INDEX_WRU,
    CHECK_QUERY_RRU,
    CHECK_READ_RRU,
    CURSOR_WRU,
    RECONCILER_BILLED_MS,
)
from taskctl.capacity.assumptions import Assumptions
from taskctl.capacity.quotas import Quotas

STATUS_SHARDS = CHECK_SHARDS  # the status index uses the check index's shard function
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class TaskFlow:
    """One task's expected life under a policy, when each attempt fails with `failure_p`."""

    attempts: float
    retries: float
    failed_share: float
    retry_wait_s: float  # expected seconds spent waiting for retries, each wait at its ceiling


def task_flow(policy: TaskPolicy, failure_p: float) -> TaskFlow:
    if not 0.0 <= failure_p <= 1.0:
        raise ValueError(f"failure probability {failure_p} is not in [0, 1]")
    attempts = math.fsum(failure_p**k for k in range(policy.maxAttempts))
    wait = math.fsum(
        failure_p**n * backoff_ceiling_s(n, policy) for n in range(1, policy.maxAttempts)
    )
    return TaskFlow(
        attempts=attempts,
        retries=attempts - 1.0,
        failed_share=failure_p**policy.maxAttempts,
        retry_wait_s=wait,
    )


@dataclass(frozen=True, kw_only=True)
class Finding:
    """A quota the rate crosses, and what to change."""

    quota: str
    needed: float
    limit: float
    setting: str
    advice: str


@dataclass(frozen=True, kw_only=True)
class KeySpace:
    """A DynamoDB table or index: units per second, and its busiest partition key."""

    name: str
    partition_key: str
    write_units_s: float
    read_units_s: float
    busiest_key: str
    busiest_key_write_units_s: float
    busiest_key_read_units_s: float
    busiest_key_write_share: float  # of this table's or index's writes
    shards: str  # what spreads the writes, and where it is set


@dataclass(frozen=True, kw_only=True)
class CapacityReport:
    stack: str
    rate_per_s: float
    failure_p: float
    backlog_tasks: int
    flow: TaskFlow
    assumptions: Assumptions
    quotas: Quotas
    # Lambda (concurrent executions needed, by Little's law)
    api_concurrency: float
    worker_concurrency: float
    dead_letter_concurrency: float
    reconciler_concurrency: float
    worker_max_concurrency: int
    esm_batches_needed: int
    esm_ramp_s: float  # from idle to the batches needed, at the mappings' scale-up pace
    # SQS main queue
    in_flight_processing: float
    in_flight_deferred: float
    in_flight_bound: float  # workerMaxConcurrency x workerBatchSize + deferrals
    delayed: float
    in_flight_if_waits_in_flight: float  # the design before issue 13
    # DynamoDB
    key_spaces: list[KeySpace]
    # API
    api_stage_rate: float
    api_stage_burst: int
    api_headroom_s: float
    # Reconciler
    reconciler_tasks_per_pass: float
    reconciler_pass_capacity: float
    # Backlog
    worker_records_s_max: float
    drain_s: float | None  # None: the workers never catch up at this rate
    # Cost
    cost_per_million: dict[str, float]
    cost_per_hour: float

    @property
    def in_flight(self) -> float:
        return self.in_flight_processing + self.in_flight_deferred

    @property
    def total_concurrency(self) -> float:
        return (
            self.api_concurrency
            + self.worker_concurrency
            + self.dead_letter_concurrency
            + self.reconciler_concurrency
        )

    @property
    def findings(self) -> list[Finding]:
        """Each quota the rate crosses, with the setting to change."""
        quotas = self.quotas
        findings: list[Finding] = []

        def crossed(quota: str, needed: float, limit: float, setting: str, advice: str) -> None:
            if needed > limit:
                findings.append(
                    Finding(quota=quota, needed=needed, limit=limit, setting=setting, advice=advice)
                )

        rate = self.rate_per_s
        crossed(
            "API stage throttle (requests/s)",
            rate,
            self.api_stage_rate,
            "apiThrottleRateLimit",
            f"the stage answers 429 past {self.api_stage_rate:g}/s; raise it to at least "
            f"{math.ceil(rate)}",
        )
        crossed(
            "API Gateway account throttle (requests/s)",
            rate,
            quotas.api_account_rps,
            "AWS quota (API Gateway throttle per account and Region)",
            "ask AWS for a higher account throttle",
        )
        needed_workers = math.ceil(self.worker_concurrency)
        crossed(
            "worker concurrency (workerMaxConcurrency)",
            self.worker_concurrency,
            self.worker_max_concurrency,
            "workerMaxConcurrency",
            f"the worker falls behind and the backlog grows; raise it to at least {needed_workers}"
            + (
                f" (an event source mapping allows at most {quotas.esm_max_concurrency}: shorten "
                "attempts or split the work over more queues)"
                if needed_workers > quotas.esm_max_concurrency
                else ""
            ),
        )
        crossed(
            "dead-letter concurrency (workerMaxConcurrency)",
            self.dead_letter_concurrency,
            self.worker_max_concurrency,
            "workerMaxConcurrency",
            f"raise it to at least {math.ceil(self.dead_letter_concurrency)}",
        )
        crossed(
            "Lambda concurrent executions (account)",
            self.total_concurrency,
            quotas.lambda_concurrency,
            "AWS quota (Lambda concurrent executions), or workerMaxConcurrency",
            "ask AWS for more concurrency; capping workerMaxConcurrency lower only moves the wait "
            "into the queue",
        )
        crossed(
            "SQS in-flight messages (main queue)",
            self.in_flight,
            quotas.sqs_in_flight,
            "workerMaxConcurrency x workerBatchSize",
            "ReceiveMessage fails with OverLimit and the whole queue stalls; lower the mapping's "
            "concurrency or batch size",
        )
        for space in self.key_spaces:
            for units, needed, limit in (
                ("write", space.write_units_s, quotas.table_wru),
                ("read", space.read_units_s, quotas.table_rru),
            ):
                crossed(
                    f"DynamoDB {space.name}: {units} units/s (on-demand)",
                    needed,
                    limit,
                    "AWS quota (DynamoDB on-demand throughput per table)",
                    "ask AWS for a higher table throughput quota",
                )
            for units, needed, limit, requests in (
                ("write", space.busiest_key_write_units_s, quotas.partition_wcu, "writes to"),
                ("read", space.busiest_key_read_units_s, quotas.partition_rcu, "reads of"),
            ):
                crossed(
                    f"DynamoDB {space.name}: busiest key ({space.busiest_key}) {units} units/s",
                    needed,
                    limit,
                    space.shards,
                    f"{requests} one partition key throttle; spread them over more shards",
                )
        crossed(
            "reconciler pass (tasks per run within its timeout)",
            self.reconciler_tasks_per_pass,
            self.reconciler_pass_capacity,
            "reconcileIntervalMinutes (or functionTimeoutSeconds)",
            "each run stops early and the overdue checks pile up; run it more often",
        )
        return findings

    @property
    def crossed(self) -> bool:
        return bool(self.findings)

    def to_json(self) -> dict:
        return {
            "stack": self.stack,
            "ratePerSecond": self.rate_per_s,
            "attemptFailureProbability": self.failure_p,
            "perTask": _camel(asdict(self.flow)),
            "assumptions": _camel(asdict(self.assumptions)),
            "quotas": _camel(asdict(self.quotas)),
            "lambdaConcurrency": {
                "api": self.api_concurrency,
                "worker": self.worker_concurrency,
                "deadLetter": self.dead_letter_concurrency,
                "reconciler": self.reconciler_concurrency,
                "total": self.total_concurrency,
                "workerMaxConcurrency": self.worker_max_concurrency,
                "accountQuota": self.quotas.lambda_concurrency,
            },
            "eventSourceMappings": {
                "workerBatchesNeeded": self.esm_batches_needed,
                "rampFromIdleSeconds": self.esm_ramp_s,
            },
            "mainQueue": {
                "inFlight": self.in_flight,
                "inFlightProcessing": self.in_flight_processing,
                "inFlightDeferred": self.in_flight_deferred,
                "inFlightBound": self.in_flight_bound,
                "delayed": self.delayed,
                "inFlightIfWaitsWereInFlight": self.in_flight_if_waits_in_flight,
                "inFlightQuota": self.quotas.sqs_in_flight,
            },
            "dynamodb": [_camel(asdict(space)) for space in self.key_spaces],
            "api": {
                "stageRateLimit": self.api_stage_rate,
                "stageBurstLimit": self.api_stage_burst,
                "headroomPerSecond": self.api_headroom_s,
            },
            "reconciler": {
                "tasksPerPass": self.reconciler_tasks_per_pass,
                "passCapacity": self.reconciler_pass_capacity,
            },
            "backlog": {
                "tasks": self.backlog_tasks,
                "workerRecordsPerSecondMax": self.worker_records_s_max,
                "drainSeconds": self.drain_s,
            },
            "costPerMillionTasks": self.cost_per_million,
            "costPerHour": self.cost_per_hour,
            "findings": [_camel(asdict(finding)) for finding in self.findings],
            "crossed": self.crossed,
        }


def _camel(fields: dict) -> dict:
    """JSON keys as the rest of taskctl's JSON writes them: `failed_share` -> `failedShare`."""
    return {to_camel(key): value for key, value in fields.items()}


def plan(
    settings: StackSettings,
    rate_per_s: float,
    *,
    stack: str,
    quotas: Quotas,
    prices: Prices,
    failure_p: float | None = None,
    backlog_tasks: int = 100_000,
    assumptions: Assumptions | None = None,
) -> CapacityReport:
    """What `rate_per_s` steady submits need from AWS under `settings`; see the module doc.
    `failure_p` defaults to the stack's errorRate (1.0: every task's message is ERROR)."""
    if rate_per_s <= 0:
        raise ValueError(f"rate={rate_per_s}: a rate is a positive number of submits per second")
    p = settings.errorRate if failure_p is None else failure_p
    flow = task_flow(settings.policy, p)
    a = assumptions or Assumptions()
    batch = settings.workerBatchSize
    record_s = a.worker_record_ms / 1000.0
    max_concurrency = settings.workerMaxConcurrency

    attempts_s = rate_per_s * flow.attempts
    api_concurrency = rate_per_s * a.api_ms / 1000.0
    worker_concurrency = attempts_s * record_s
    dead_letter_concurrency = rate_per_s * flow.failed_share * a.dead_letter_record_ms / 1000.0
    batches_needed = math.ceil(worker_concurrency)
    ramp_s = max(0, batches_needed - quotas.esm_initial_batches) / quotas.esm_scale_up_per_min * 60

    # In flight: every record of a batch from its receive to the batch's end.
    worker_pace_s = max_concurrency / record_s  # records per second at workerMaxConcurrency
    processing = min(attempts_s, worker_pace_s) * batch * record_s
    deferred = attempts_s * a.deferred_share * (settings.functionTimeoutSeconds + LEASE_MARGIN_S)
    delayed = rate_per_s * flow.retry_wait_s

    key_spaces = _key_spaces(rate_per_s, flow, a)

    # The reconciler reads each task once, when its first check comes due.
    tasks_per_pass = rate_per_s * settings.reconcileIntervalMinutes * 60
    pass_capacity = (settings.functionTimeoutSeconds * 1000 - STOP_MARGIN_MS) / RECONCILER_BILLED_MS

    # A backlog: the workers' pace, within what the account leaves them, minus the steady load.
    account_left = quotas.lambda_concurrency - api_concurrency - dead_letter_concurrency - 1
    worker_records_s_max = max(0.0, min(max_concurrency, account_left)) / record_s
    spare_s = worker_records_s_max - attempts_s
    drain_s = backlog_tasks * flow.attempts / spare_s if spare_s > 0 else None

    costs = cost_per_million(_usage(settings, flow, a, key_spaces, rate_per_s), prices)

    return CapacityReport(
        stack=stack,
        rate_per_s=rate_per_s,
        failure_p=p,
        backlog_tasks=backlog_tasks,
        flow=flow,
        assumptions=a,
        quotas=quotas,
        api_concurrency=api_concurrency,
        worker_concurrency=worker_concurrency,
        dead_letter_concurrency=dead_letter_concurrency,
        reconciler_concurrency=1.0,  # it runs one at a time
        worker_max_concurrency=max_concurrency,
        esm_batches_needed=batches_needed,
        esm_ramp_s=ramp_s,
        in_flight_processing=processing,
        in_flight_deferred=deferred,
        in_flight_bound=max_concurrency * batch + deferred,
        delayed=delayed,
        in_flight_if_waits_in_flight=processing + deferred + delayed,
        key_spaces=key_spaces,
        api_stage_rate=settings.apiThrottleRateLimit,
        api_stage_burst=settings.apiThrottleBurstLimit,
        api_headroom_s=settings.apiThrottleRateLimit - rate_per_s,
        reconciler_tasks_per_pass=tasks_per_pass,
        reconciler_pass_capacity=pass_capacity,
        worker_records_s_max=worker_records_s_max,
        drain_s=drain_s,
        cost_per_million=costs,
        cost_per_hour=costs["total"] * rate_per_s * SECONDS_PER_HOUR / TASKS,
    )


def _key_spaces(rate_per_s: float, flow: TaskFlow, a: Assumptions) -> list[KeySpace]:
    write_units = math.ceil(a.item_bytes / WRU_BYTES)  # per table write of a task
    read_units = math.ceil(a.item_bytes / RRU_BYTES)  # per strongly consistent read
    # The table: the api's PutItem, then a claim and an outcome per attempt; the worker reads
    # the task once per delivery, the dead-letter function once per FAILED task, the
    # reconciler once per task (BatchGetItem, eventually consistent) and writes its cursor.
    task_writes = 1 + 2 * flow.attempts
    table_writes = rate_per_s * (task_writes * write_units + CURSOR_WRU)
    table_reads = rate_per_s * (
        (flow.attempts + flow.failed_share) * read_units + CHECK_READ_RRU * read_units
    )
    # Its busiest key: one task's claim and outcome land within the same second; the
    # reconciler's cursor item is written once per 100 tasks.
    one_task = 2.0 * write_units
    cursor = rate_per_s * CURSOR_WRU
    table_busiest, table_busiest_key = max((one_task, "one task"), (cursor, "reconciler cursor"))
    table = KeySpace(
        name="table",
        partition_key="taskId",
        write_units_s=table_writes,
        read_units_s=table_reads,
        busiest_key=table_busiest_key,
        busiest_key_write_units_s=table_busiest,
        busiest_key_read_units_s=float(read_units),
        busiest_key_write_share=table_busiest / table_writes,
        shards="one key per task",
    )
    # The check index: one KEYS_ONLY entry per task, in one of CHECK_SHARDS shards (crc32 of the
    # task id: uniform), read back once by the reconciler's query.
    check_writes = rate_per_s * CHECK_INDEX_WRU
    check_reads = rate_per_s * CHECK_QUERY_RRU
    check = KeySpace(
        name=CHECK_INDEX,
        partition_key="checkShard",
        write_units_s=check_writes,
        read_units_s=check_reads,
        busiest_key="any shard",
        busiest_key_write_units_s=check_writes / CHECK_SHARDS,
        busiest_key_read_units_s=check_reads / CHECK_SHARDS,
        busiest_key_write_share=1 / CHECK_SHARDS,
        shards=f"{CHECK_SHARDS} shards (functions/store.py CHECK_SHARDS)",
    )
    # The status index: one OPEN entry per task from its creation (a put) to its end (a delete;
    # the worker's claims and retries leave its keys alone), and a FAILED put for the FAILED share.
    open_ops = 2.0
    status_ops = open_ops + flow.failed_share
    status_writes = rate_per_s * status_ops
    status = KeySpace(
        name=STATUS_INDEX,
        partition_key="statusShard",
        write_units_s=status_writes,
        read_units_s=0.0,  # operators' listings only
        busiest_key="OPEN#<shard>",
        busiest_key_write_units_s=rate_per_s * open_ops / STATUS_SHARDS,
        busiest_key_read_units_s=0.0,
        busiest_key_write_share=open_ops / status_ops / STATUS_SHARDS,
        shards=f"{STATUS_SHARDS} shards per group (OPEN, FAILED; the check index's shard function)",
    )
    return [table, check, status]


def _usage(
    settings: StackSettings,
    flow: TaskFlow,
    a: Assumptions,
    key_spaces: list[KeySpace],
    rate_per_s: float,
) -> TaskUsage:
    """One task's billable units under this model, for `taskctl.bench.cost`."""
    batch = settings.workerBatchSize
    invocations = {
        "api": 1.0,
        "worker": flow.attempts / batch,
        "dead-letter": flow.failed_share / batch,
    }
    return TaskUsage(
        api_kind="http",
        api_requests=1.0,
        lambda_invocations=invocations,
        lambda_billed_ms={
            "api": billed_ms(a.api_ms),
            # A batch of B records is billed B record times, A/B batches per task.
            "worker": flow.attempts * a.worker_record_ms,
            "dead-letter": flow.failed_share * a.dead_letter_record_ms,
            "reconciler": RECONCILER_BILLED_MS,
        },
        memory_mb=settings.functionMemoryMb,
        architecture=settings.functionArchitecture,
        # The submit, one delayed re-send per retry, a DLQ send per FAILED task.
        sqs_handler_requests=1.0 + flow.retries + flow.failed_share,
        # Each mapping receives and deletes once per batch: every worker delivery is acknowledged
        # (a retry was re-sent), and the dead-letter function acknowledges what it gets.
        sqs_event_source_requests=2.0 * (flow.attempts + flow.failed_share) / batch,
        dynamodb_wru=sum(space.write_units_s for space in key_spaces) / rate_per_s,
        dynamodb_rru=sum(space.read_units_s for space in key_spaces) / rate_per_s,
        log_bytes=a.api_log_bytes
        + flow.attempts * a.worker_log_bytes_per_record
        + flow.failed_share * a.dead_letter_log_bytes_per_record
        + PLATFORM_LOG_BYTES_PER_INVOCATION * sum(invocations.values()),
        stored_bytes=float(a.item_bytes),
        stored_days=float(settings.taskTtlDays),
    )
