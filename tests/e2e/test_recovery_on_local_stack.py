"""Recovery on the local stack: a task whose message is gone is found by the reconciler, which
the emulator's EventBridge scheduler runs on the stack's schedule, and it finishes (DESIGN §3, §8:
"a scheduled reconciler re-enqueues any unfinished task whose progress is overdue")."""

from __future__ import annotations

import time

import httpx
import pytest
from e2e_support import LocalStackUnderTest, scheduled_run_budget_s, wait_until

from taskctl.local.logs import functions_of, log_events

pytestmark = pytest.mark.e2e

# However late in the session this test runs, the worker still needs a moment after the find.
MIN_WAIT_S = 15.0


def test_a_task_stranded_without_a_message_is_recovered_on_schedule_and_completes(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    # GIVEN a SUCCESS task stored as the api stores it, whose message was never sent (an api
    # crash between PutItem and SendMessage), stranded when the session's stack came up
    stranded = local_stack.stranded_task
    assert stranded is not None

    # WHEN the reconciler's scheduled run after the stranding has come (nothing else sends its
    # message: no test touches it, and the api never will)
    interval_s = local_stack.schedule_interval_s("reconciler")
    budget_s = scheduled_run_budget_s(interval_s)
    remaining_s = max(MIN_WAIT_S, budget_s - (time.monotonic() - stranded.stranded_at))

    def finished() -> dict | None:
        record = api.get(f"/tasks/{stranded.task_id}").json()
        return record if record["status"] in ("COMPLETED", "FAILED") else None

    record = wait_until(
        finished,
        timeout_s=remaining_s,
        interval_s=0.5,
        what=f"the reconciler ({interval_s} s schedule) to recover the stranded task",
    )

    # THEN the task ran once and is COMPLETED, and the reconciler queued it, once (its log says
    # so): the worker finished it long before the next run could find it overdue again
    assert (record["status"], record["message"]) == ("COMPLETED", "SUCCESS")
    assert record["attempts"] == 1
    assert [(e["attempt"], e["outcome"]) for e in record["history"]] == [(1, "SUCCEEDED")]
    assert record["completedAt"] >= record["history"][0]["startedAt"] > record["createdAt"]
    requeued = [
        line
        for line in _log_lines(local_stack, "reconciler")
        if "overdue task re-enqueued" in line and stranded.task_id in line
    ]
    assert len(requeued) == 1, requeued
    # ... and the worker's claim started the task's count of recoveries over
    assert "recoveries" not in local_stack.stored_item(stranded.task_id)


def _log_lines(local_stack: LocalStackUnderTest, function: str) -> list[str]:
    """Every line `function` logged (the reconciler's group holds a few lines per run)."""
    group = functions_of(local_stack.deployment())[function]
    return [event["message"] for event in log_events(local_stack.client("logs"), group)]
