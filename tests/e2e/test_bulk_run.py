"""A bulk run of random tasks: the FAILED fraction matches errorRate^maxAttempts, statistically."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from e2e_support import TERMINAL, LocalStackUnderTest, submit, wait_until

from functions.policy import TaskPolicy
from taskctl.load.stats import binomial_acceptance

pytestmark = pytest.mark.e2e

TASK_COUNT = 200
SUBMIT_THREADS = 3  # more only adds cold starts: the machine has 2 cores
# Chance that a correct system fails this test: the acceptance region (the same exact binomial
# test `taskctl load` judges by) leaves out at most half of this on either side.
FALSE_ALARM_PROBABILITY = 1e-4


def test_bulk_random_tasks_fail_at_the_rate_the_policy_implies(
    api: httpx.Client, local_stack: LocalStackUnderTest, deployed_policy: TaskPolicy
) -> None:
    # GIVEN a few hundred tasks with random messages (each attempt fails with errorRate)
    messages = [f"bulk-{uuid.uuid4()}" for _ in range(TASK_COUNT)]
    started = time.monotonic()
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        task_ids = list(pool.map(lambda message: submit(api, message), messages))
    submitted_s = time.monotonic() - started

    # WHEN every one of them has finished (watched in the table: one scan per poll instead of
    # hundreds of API calls competing with the worker for the CPU)
    table = local_stack.outputs["tableName"]
    dynamodb = local_stack.client("dynamodb")
    wanted = set(task_ids)

    def all_finished() -> bool:
        finished: set[str] = set()
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression="taskId, #s",
            # tasks only: the reconciler's cursor item has no status
            FilterExpression="attribute_exists(#s)",
            ExpressionAttributeNames={"#s": "status"},
        ):
            finished |= {
                item["taskId"]["S"] for item in page["Items"] if item["status"]["S"] in TERMINAL
            }
        return wanted <= finished

    retry_budget_s = deployed_policy.maxAttempts * (deployed_policy.maxDelaySeconds + 5)
    wait_until(all_finished, timeout_s=30 + retry_budget_s, interval_s=0.5, what="the bulk run")
    elapsed_s = time.monotonic() - started
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        records = {
            task_id: reply.json()
            for task_id, reply in zip(
                task_ids, pool.map(lambda t: api.get(f"/tasks/{t}"), task_ids), strict=True
            )
        }
    assert {r["status"] for r in records.values()} <= TERMINAL

    # THEN the FAILED count lies in the binomial acceptance region of errorRate^maxAttempts
    failed = sum(1 for r in records.values() if r["status"] == "FAILED")
    p_failed = deployed_policy.errorRate**deployed_policy.maxAttempts
    low, high = binomial_acceptance(TASK_COUNT, p_failed, 1 - FALSE_ALARM_PROBABILITY)
    print(
        f"\nbulk run: {TASK_COUNT} tasks submitted in {submitted_s:.1f} s, all finished in "
        f"{elapsed_s:.1f} s ({TASK_COUNT / elapsed_s:.1f} tasks/s end to end); FAILED "
        f"{failed} (expected {TASK_COUNT * p_failed:.1f}, accepted {low}..{high})"
    )
    assert low <= failed <= high
    # and every task's attempts agree with its outcome
    for record in records.values():
        if record["status"] == "FAILED":
            assert record["attempts"] == deployed_policy.maxAttempts
        else:
            assert 1 <= record["attempts"] <= deployed_policy.maxAttempts
        assert len(record["history"]) == record["attempts"]
