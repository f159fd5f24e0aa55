"""AWS requests per task, measured on the real handlers under moto, and the cost model on them.

Three scenarios on the stack's policy: a task that succeeds first time, one that succeeds on its
second attempt, one that fails every attempt (FAILED, dead-lettered). Each runs `repetitions`
times after a warm-up task (so durations are warm invocations, as most are in production);
request counts must agree between repetitions, durations are medians. Each design (`Design`) is
priced on the same measured request counts and handler durations; the model's assumptions are
the notes `taskctl bench` writes with its figures (`taskctl.bench.cli.NOTES`).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from functions.metrics import METRICS_NAMESPACE
from taskctl.bench import harness
from taskctl.bench.cost import Prices, TaskUsage, billed_ms, cost_per_million, weighted_mix
from taskctl.chaos.wire import offline_aws_environment
from taskctl.load.stats import expected_failed_fraction

ORIGINAL_WRITES_PER_ATTEMPT = 2  # PROCESSING, then the outcome; items under 1 KB: 1 WRU each
FUNCTIONS = ("api", "worker", "dead-letter")

# The reconciler's backstop (functions/reconciler.py), per task. Its costs are per pass and per
# entry; at scale (1,000 submits/s, a pass every few minutes) the per-pass part vanishes, so a
# task costs what its own index entry costs. Derived from the design, not measured under moto
# (a pass over the benchmark's handful of tasks would be all per-pass overhead):
# - the index entry written with the task: KEYS_ONLY, under 1 KB, 1 WRU (the worker never touches
#   its keys, and TTL's delete of a finished record and its entry is free);
CHECK_INDEX_WRU = 1.0
# - reading it back from the index: ~80 bytes of a query page, eventually consistent (4 KB/0.5 RRU);
CHECK_QUERY_RRU = 80 / 4096 * 0.5
# - reading the task's status: BatchGetItem, eventually consistent, an item under 4 KB;
CHECK_READ_RRU = 0.5
# - the cursor, saved once per batch of 100 entries;
CURSOR_WRU = 1 / 100
# - the reconciler's own compute: about one BatchGetItem of 100 items (~20 ms) per 100 tasks.
RECONCILER_BILLED_MS = 20 / 100


# The operator's status index (functions/store.py STATUS_INDEX), per task. DynamoDB writes a GSI
# entry whenever a table write adds, changes or removes its keys (a changed key is a delete and a
# put). The keys are the group (`OPEN` or `FAILED`) and `listedAt`, which only the create, a
# failure and a redrive set and completion removes: the worker's claims and retries leave them
# alone. KEYS_ONLY keeps each entry (~100 bytes) at 1 WRU. Derived from the writes the lifecycle
# makes (not measured under moto, which meters no index writes).
STATUS_INDEX_WRU_PER_WRITE = 1.0
# An entry's storage: its keys (~95 bytes) plus DynamoDB's 100 bytes of index overhead. Only a
# FAILED task keeps one (until TTL deletes the task, entry included, for free); the others'
# entries live seconds.
STATUS_INDEX_ENTRY_BYTES = 195


def status_index_writes(final_status: str) -> int:
    """Index writes of a task's life, however many attempts it makes: the create's put (OPEN);
    then completing removes the entry (a delete) or failing moves it to FAILED (delete + put)."""
    return 1 + (1 if final_status == "COMPLETED" else 2)


def scenarios(max_attempts: int) -> list[harness.Scenario]:
    """The three task lives priced; a draw of 0.0 fails an attempt, 0.99 passes it."""
    if max_attempts < 2:
        raise ValueError(
            f"the benchmark prices a task that succeeds on a retry, so it needs maxAttempts >= 2 "
            f"(the stack has {max_attempts})"
        )
    lives = (
        ("succeedsFirstTime", "succeeds first time", (0.99,), ("COMPLETED", 1)),
        ("succeedsOnRetry", "fails once, succeeds on retry", (0.0, 0.99), ("COMPLETED", 2)),
        (
            "fails",
            f"fails all {max_attempts} attempts",
            (0.0,) * max_attempts,
            ("FAILED", max_attempts),
        ),
    )
    return [
        harness.Scenario(
            name=name, description=description, message="bench task", draws=draws, ends=ends
        )
        for name, description, draws, ends in lives
    ]


@dataclass(frozen=True, kw_only=True)
class ScenarioMeasurement:
    """One scenario's metered task, durations as medians over the repetitions."""

    name: str
    description: str
    final_status: str
    attempts: int
    calls: dict[str, dict[str, dict[str, int]]]  # function -> service -> operation -> requests
    wru: dict[str, float]
    rru: dict[str, float]
    invocations: dict[str, int]  # function -> invocations (one record each)
    duration_ms: dict[str, float]  # function -> median total handler wall time per task
    log_bytes: dict[str, int]  # function -> bytes the function logged for this task
    worker_acknowledged: int
    item_bytes: int

    def requests_by_service(self) -> dict[str, dict[str, int]]:
        merged: dict[str, Counter] = {}
        for services in self.calls.values():
            for service, operations in services.items():
                merged.setdefault(service, Counter()).update(operations)
        return {service: dict(ops) for service, ops in merged.items()}


def _nested_calls(calls: Counter) -> dict[str, dict[str, dict[str, int]]]:
    nested: dict[str, dict[str, dict[str, int]]] = {}
    for (function, service, operation), count in sorted(calls.items()):
        nested.setdefault(function, {}).setdefault(service, {})[operation] = count
    return nested


def measure(
    policy: Any,
    memory_mb: int,
    *,
    repetitions: int = 5,
    progress: Callable[[str], None] = lambda _step: None,
) -> list[ScenarioMeasurement]:
    """Run each scenario `repetitions` times in a fresh moto account; see the module doc."""
    from moto import mock_aws

    measurements = []
    # The pipeline imports the functions, which read these at import time; the process's
    # environment is restored afterwards.
    with (
        offline_aws_environment(
            POWERTOOLS_SERVICE_NAME=harness.STACK, POWERTOOLS_METRICS_NAMESPACE=METRICS_NAMESPACE
        ),
        mock_aws(),
    ):
        pipeline = harness.Pipeline(policy, memory_mb)
        pipeline.run_task(harness.Scenario(name="warm-up", description="", message="SUCCESS"))
        for scenario in scenarios(policy.maxAttempts):
            runs = []
            for repetition in range(repetitions):
                progress(f"{scenario.description} ({repetition + 1}/{repetitions})")
                runs.append(pipeline.run_task(scenario))
            measurements.append(_summarise(scenario, runs))
    from functions import runtime

    runtime.use(None)  # the next user reads its own environment
    return measurements


def _summarise(scenario: harness.Scenario, runs: list[harness.ScenarioRun]) -> ScenarioMeasurement:
    first = runs[0]
    for run in runs[1:]:
        if run.calls != first.calls or run.final_status != first.final_status:
            raise RuntimeError(f"scenario {scenario.name}: request counts differ between runs")
    # A scenario that did not play as scripted would price another life under its name.
    if scenario.ends is not None and (first.final_status, first.attempts) != scenario.ends:
        raise RuntimeError(
            f"scenario {scenario.name} ended {first.final_status} after {first.attempts} "
            f"attempt(s), not {scenario.ends[0]} after {scenario.ends[1]}"
        )
    return ScenarioMeasurement(
        name=scenario.name,
        description=scenario.description,
        final_status=first.final_status,
        attempts=first.attempts,
        calls=_nested_calls(first.calls),
        wru=dict(first.wru),
        rru=dict(first.rru),
        invocations={function: first.invocations[function] for function in FUNCTIONS},
        duration_ms={
            function: statistics.median(run.duration_ms[function] for run in runs)
            for function in FUNCTIONS
        },
        log_bytes={function: first.log_bytes[function] for function in FUNCTIONS},
        worker_acknowledged=first.worker_acknowledged,
        item_bytes=first.item_bytes,
    )


# -- measured counts -> billable units -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Design:
    """The parameters two designs differ in."""

    name: str
    api_kind: Literal["http", "rest"]
    batch_size: int
    memory_mb: int
    architecture: str
    original_writes: bool  # True: two 1-WRU status writes per attempt instead of the measured
    reconciler: bool = False  # the scheduled backstop and its check index
    status_index: bool = False  # the operator's sparse status index (`taskctl tasks list`)


def usage(m: ScenarioMeasurement, design: Design, *, ttl_days: float) -> TaskUsage:
    """Per-task billable units for measurement `m` under `design`."""
    batch = design.batch_size
    invocations = {"api": float(m.invocations["api"])}
    billed_ms_per_task = {"api": billed_ms(m.duration_ms["api"])}
    # Measured with one record per invocation, a queue function's invocations are its deliveries.
    for function in ("worker", "dead-letter"):
        delivered = m.invocations[function]
        invocations[function] = delivered / batch
        # A batch of B records is modelled as B times one record's time (an upper bound: the
        # per-invocation overhead is shared in reality), billed per invocation, rounded up.
        per_delivery_ms = m.duration_ms[function] / delivered if delivered else 0.0
        billed_ms_per_task[function] = delivered / batch * billed_ms(per_delivery_ms * batch)
    sqs_handler = sum(m.requests_by_service().get("sqs", {}).values())
    # The event source mappings: one ReceiveMessage per batch, one DeleteMessageBatch per batch
    # with acknowledged records (a retry's original delivery is acknowledged once its delayed
    # copy is sent, so each attempt's delivery is deleted). Empty polls of an idle queue are a
    # fixed monthly cost, excluded.
    event_source = (m.invocations["worker"] + m.worker_acknowledged) / batch + (
        2 * m.invocations["dead-letter"] / batch
    )
    wru = sum(m.wru.values())
    if design.original_writes:  # the worker's measured writes become two 1-WRU writes an attempt
        wru += ORIGINAL_WRITES_PER_ATTEMPT * m.attempts - m.wru.get("worker", 0)
    rru = float(sum(m.rru.values()))
    if design.reconciler:
        wru += CHECK_INDEX_WRU + CURSOR_WRU
        rru += CHECK_QUERY_RRU + CHECK_READ_RRU
        billed_ms_per_task["reconciler"] = RECONCILER_BILLED_MS
    stored_bytes = float(m.item_bytes)
    if design.status_index:
        wru += STATUS_INDEX_WRU_PER_WRITE * status_index_writes(m.final_status)
        stored_bytes += STATUS_INDEX_ENTRY_BYTES if m.final_status == "FAILED" else 0
    invoked = sum(invocations.values())
    log_bytes = sum(m.log_bytes.values()) + harness.PLATFORM_LOG_BYTES_PER_INVOCATION * invoked
    return TaskUsage(
        api_kind=design.api_kind,
        api_requests=1.0,
        lambda_invocations=invocations,
        lambda_billed_ms=billed_ms_per_task,
        memory_mb=design.memory_mb,
        architecture=design.architecture,
        sqs_handler_requests=float(sqs_handler),
        sqs_event_source_requests=event_source,
        dynamodb_wru=float(wru),
        dynamodb_rru=rru,
        log_bytes=float(log_bytes),
        stored_bytes=stored_bytes,
        stored_days=float(ttl_days),
    )


def scenario_weights(error_rate: float, max_attempts: int) -> dict[str, float]:
    """Share of ordinary tasks in each scenario under the policy. Successes after more than one
    retry (possible when maxAttempts > 2) are priced as the one-retry scenario."""
    fails = expected_failed_fraction(error_rate, max_attempts)
    first = 1.0 - error_rate
    return {"succeedsFirstTime": first, "succeedsOnRetry": 1.0 - first - fails, "fails": fails}


def cost_table(
    measurements: list[ScenarioMeasurement],
    designs: list[Design],
    prices: Prices,
    *,
    ttl_days: float,
    error_rate: float,
    max_attempts: int,
) -> dict[str, Any]:
    """Per design: per-scenario usage and cost per million tasks, and the policy's mix."""
    weights = scenario_weights(error_rate, max_attempts)
    result: dict[str, Any] = {}
    for design in designs:
        per_scenario = {}
        for m in measurements:
            task_usage = usage(m, design, ttl_days=ttl_days)
            per_scenario[m.name] = {
                "usagePerTask": {
                    "apiRequests": task_usage.api_requests,
                    "lambdaInvocations": task_usage.lambda_invocations,
                    "lambdaBilledMs": task_usage.lambda_billed_ms,
                    "lambdaGbSeconds": task_usage.gb_seconds,
                    "sqsHandlerRequests": task_usage.sqs_handler_requests,
                    "sqsEventSourceRequestsEstimated": task_usage.sqs_event_source_requests,
                    "dynamodbWriteUnits": task_usage.dynamodb_wru,
                    "dynamodbReadUnits": task_usage.dynamodb_rru,
                    "logBytes": task_usage.log_bytes,
                    "storedItemBytes": task_usage.stored_bytes,
                },
                "costPerMillionTasks": cost_per_million(task_usage, prices),
            }
        costs = {name: scenario["costPerMillionTasks"] for name, scenario in per_scenario.items()}
        result[design.name] = {
            "design": {
                "api": "HTTP API" if design.api_kind == "http" else "REST API",
                "batchSize": design.batch_size,
                "memoryMb": design.memory_mb,
                "architecture": design.architecture,
                "statusWrites": "two 1-WRU writes per attempt"
                if design.original_writes
                else "measured",
            },
            "scenarios": per_scenario,
            "mix": {"weights": weights, "costPerMillionTasks": weighted_mix(costs, weights)},
        }
    return result


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
