"""The seed's scenarios, end to end through API Gateway, SQS, the worker and DynamoDB."""

from __future__ import annotations

import itertools
from datetime import datetime

import httpx
import pytest
from e2e_support import submit, wait_terminal

from functions.policy import TaskPolicy

pytestmark = pytest.mark.e2e

# History timestamps carry milliseconds; two truncations can shave up to 1 ms off a real gap.
TIMESTAMP_RESOLUTION_S = 0.001


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_success_task_is_completed_after_one_attempt(api: httpx.Client) -> None:
    # GIVEN a task whose simulated work always succeeds
    task_id = submit(api, "SUCCESS")

    # WHEN the worker has processed it
    record = wait_terminal(api, task_id)

    # THEN it is COMPLETED on its first attempt, with that attempt in its history
    assert record["status"] == "COMPLETED"
    assert record["attempts"] == 1
    assert record["completedAt"] is not None and record["failedAt"] is None
    assert [(e["attempt"], e["outcome"]) for e in record["history"]] == [(1, "SUCCEEDED")]


def test_error_task_fails_after_max_attempts_with_its_history(
    api: httpx.Client, deployed_policy: TaskPolicy
) -> None:
    # GIVEN a task whose every attempt fails
    task_id = submit(api, "ERROR")

    # WHEN the worker has retried it to the end
    record = wait_terminal(api, task_id, timeout_s=30 + deployed_policy.maxDelaySeconds)

    # THEN it is FAILED after exactly maxAttempts attempts, each recorded
    assert record["status"] == "FAILED"
    assert record["attempts"] == deployed_policy.maxAttempts
    assert record["failedAt"] is not None and record["completedAt"] is None
    assert record["lastError"]
    history = record["history"]
    assert [entry["attempt"] for entry in history] == list(
        range(1, deployed_policy.maxAttempts + 1)
    )
    assert all(entry["outcome"] == "FAILED" and entry["error"] for entry in history)
    # every attempt but the last promised a delay; the last had nothing to wait for
    assert all(entry["retryDelaySeconds"] is not None for entry in history[:-1])
    assert history[-1]["retryDelaySeconds"] is None


def test_the_retry_really_waits_the_delay_the_record_promised(
    api: httpx.Client, deployed_policy: TaskPolicy
) -> None:
    if deployed_policy.maxAttempts < 2:
        pytest.fail("the dev stack must allow a retry for this test (maxAttempts >= 2)")
    # GIVEN a task that fails every attempt, so the worker schedules a retry
    task_id = submit(api, "ERROR")

    # WHEN it has finished
    history = wait_terminal(api, task_id, timeout_s=30 + deployed_policy.maxDelaySeconds)["history"]

    # THEN each next attempt started no earlier than the delay the previous one promised
    for previous, following in itertools.pairwise(history):
        promised_s = previous["retryDelaySeconds"]
        measured_s = (
            _instant(following["startedAt"]) - _instant(previous["finishedAt"])
        ).total_seconds()
        assert promised_s is not None and promised_s > 0
        assert measured_s >= promised_s - TIMESTAMP_RESOLUTION_S, (
            f"attempt {following['attempt']} started {measured_s:.3f} s after attempt "
            f"{previous['attempt']} finished, but {promised_s} s were promised"
        )
