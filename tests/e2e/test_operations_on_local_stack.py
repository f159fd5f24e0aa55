"""The operator's view on the local stack, with no flags but the stack: failed tasks are found by
`tasks list` (the deployed status index), read with `tasks show`, and redriven in bulk; the
deployed worker then runs them to their end.

The window (`--since`) starts when this test does, so tasks other tests failed earlier in the
session are neither listed nor redriven here.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from e2e_support import LocalStackUnderTest, submit, taskctl, wait_terminal, wait_until

from functions.lifecycle import TaskRecord, to_iso
from functions.policy import TaskPolicy

pytestmark = pytest.mark.e2e
COMMAND_TIMEOUT_S = 60
FAILING_TASKS = 2


def operator(local_stack: LocalStackUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m taskctl <args>` as the on-call engineer types it: the local stack is the
    default target (found through TASKS_LOCAL_DIR, as `local` commands find it)."""
    return taskctl(*args, env=local_stack.env, timeout_s=COMMAND_TIMEOUT_S)


def test_failed_tasks_are_listed_shown_and_redriven_in_bulk_until_they_end(
    api: httpx.Client, local_stack: LocalStackUnderTest, deployed_policy: TaskPolicy
) -> None:
    since = to_iso(datetime.now(UTC) - timedelta(seconds=1))
    budget_s = 30 + deployed_policy.maxDelaySeconds
    # GIVEN tasks whose message fails every attempt, FAILED after the stack's attempts
    task_ids = [submit(api, "ERROR") for _ in range(FAILING_TASKS)]
    failed = {task_id: wait_terminal(api, task_id, timeout_s=budget_s) for task_id in task_ids}
    assert {record["status"] for record in failed.values()} == {"FAILED"}

    # WHEN the operator lists FAILED tasks (the index is eventually consistent: poll briefly)
    def listed() -> list[dict] | None:
        listing = operator(
            local_stack, "tasks", "list", "--status", "FAILED", "--since", since, "--json"
        )
        assert listing.returncode == 0, listing.stderr
        records = [json.loads(line) for line in listing.stdout.splitlines()]
        return records if set(task_ids) <= {r["taskId"] for r in records} else None

    records = wait_until(listed, timeout_s=20, interval_s=1, what="the FAILED tasks listed")
    # THEN it shows them, newest first, as GET shows them
    assert {r["status"] for r in records} == {"FAILED"}
    assert [r["updatedAt"] for r in records] == sorted(
        (r["updatedAt"] for r in records), reverse=True
    )
    for record in records:
        if record["taskId"] in failed:  # (GET spells absent fields as null)
            assert TaskRecord.from_json(record) == TaskRecord.from_json(failed[record["taskId"]])
    table = operator(local_stack, "tasks", "list", "--status", "FAILED", "--since", since)
    assert all(task_id in table.stdout for task_id in task_ids), table.stdout

    # AND `tasks show` prints one's history as a timeline: attempts, outcomes, waits, the error
    shown = operator(local_stack, "tasks", "show", task_ids[0])
    assert shown.returncode == 0, shown.stderr
    attempts = deployed_policy.maxAttempts
    for n in range(1, attempts + 1):
        assert f"attempt {n} started" in shown.stdout and f"attempt {n} FAILED" in shown.stdout
    assert "waited" in shown.stdout and "backoff" in shown.stdout
    assert "the message asks to fail" in shown.stdout

    # WHEN the operator first rehearses the bulk redrive, then makes it with one more attempt
    rehearsal = operator(
        local_stack, "redrive", "--status", "FAILED", "--since", since, "--dry-run"
    )
    assert rehearsal.returncode == 0, rehearsal.stdout + rehearsal.stderr
    assert "nothing written" in rehearsal.stdout
    assert {api.get(f"/tasks/{t}").json()["status"] for t in task_ids} == {"FAILED"}

    redriven = operator(
        local_stack, "redrive", "--status", "FAILED", "--since", since, "--extra-attempts", "1"
    )

    # THEN each is redriven, the summary says so, and the worker runs the extra attempt: the
    # ERROR message fails it again, so each ends FAILED with one more attempt in its history
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    assert re.search(r"Summary: \d+ redriven, 0 refused, 0 failed", redriven.stdout)
    assert all(task_id in redriven.stdout for task_id in task_ids)
    for task_id in task_ids:
        record = wait_until(
            lambda task_id=task_id: _finished_after_redrive(api, task_id),
            timeout_s=budget_s,
            what=f"redriven task {task_id} to finish",
        )
        assert (record["attempts"], record["redriveCount"]) == (attempts + 1, 1)
        assert record["history"][:attempts] == failed[task_id]["history"]


def _finished_after_redrive(api: httpx.Client, task_id: str) -> dict | None:
    record = api.get(f"/tasks/{task_id}").json()
    if record.get("redriveCount") and record["status"] in ("COMPLETED", "FAILED"):
        return record
    return None
