"""Redrive on the local stack: the operator's command gives a FAILED task another attempt, and
the deployed worker really runs it (DESIGN §3: "a FAILED task can be redriven from its record")."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from e2e_support import STACK, LocalStackUnderTest, submit, taskctl, wait_terminal

from functions.policy import TaskPolicy

pytestmark = pytest.mark.e2e
COMMAND_TIMEOUT_S = 60


def redrive_command(
    local_stack: LocalStackUnderTest, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m taskctl redrive <args>` as an operator runs it; the state directory in the
    environment (TASKS_LOCAL_DIR) is how it finds this session's stack, as `local` commands do."""
    return taskctl(
        "redrive", *args, "--stack", STACK, env=local_stack.env, timeout_s=COMMAND_TIMEOUT_S
    )


def test_a_failed_task_redriven_with_one_more_attempt_runs_it_and_fails_again(
    api: httpx.Client, local_stack: LocalStackUnderTest, deployed_policy: TaskPolicy
) -> None:
    # GIVEN an ERROR task that ended FAILED after the stack's attempts
    task_id = submit(api, "ERROR")
    failed = wait_terminal(api, task_id, timeout_s=30 + deployed_policy.maxDelaySeconds)
    attempts = deployed_policy.maxAttempts
    assert (failed["status"], failed["attempts"]) == ("FAILED", attempts)

    # WHEN the operator redrives it with one more attempt
    redriven = redrive_command(local_stack, task_id, "--extra-attempts", "1")

    # THEN the command reports it redriven, the worker runs attempt n+1 (ERROR fails again),
    # and the task ends FAILED with one more attempt on top of the history it had
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    assert task_id in redriven.stdout and "redriven" in redriven.stdout
    record = wait_terminal(api, task_id, timeout_s=30 + deployed_policy.maxDelaySeconds)
    assert record["status"] == "FAILED"
    assert (record["attempts"], record["maxAttempts"]) == (attempts + 1, attempts + 1)
    assert [entry["attempt"] for entry in record["history"]] == list(range(1, attempts + 2))
    assert record["history"][:attempts] == failed["history"]
    assert record["history"][-1]["outcome"] == "FAILED"
    assert record["redriveCount"] == 1
    assert record["failedAt"] > record["redrivenAt"] > failed["failedAt"]


def test_redriving_a_completed_task_is_refused_with_its_status(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    task_id = submit(api, "SUCCESS")
    completed = wait_terminal(api, task_id)
    assert completed["status"] == "COMPLETED"

    refused = redrive_command(local_stack, task_id)

    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert task_id in line and "COMPLETED" in line
    assert api.get(f"/tasks/{task_id}").json() == completed
