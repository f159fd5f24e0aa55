"""`python -m taskctl load` run as a user runs it, against the local stack, checked independently.

The command's report is compared with what the task table itself holds for the run (every message
the command submits names the run's id), and its expected FAILED fraction with the policy the
deployed worker really runs with.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e_support import STACK, TERMINAL, LocalStackUnderTest, taskctl

from functions.policy import TaskPolicy
from taskctl.load.stats import check_failure_rate
from taskctl.local import emulator

pytestmark = pytest.mark.e2e

TASK_COUNT = 60
# The command exits 1 when the observed FAILED fraction is off at this confidence. At the
# default 99 % a correct system would fail this test up to 1 run in 100; at 99.99 % the chance is
# checked below to stay under MAX_FALSE_ALARM_PROBABILITY.
CONFIDENCE = 0.9999
MAX_FALSE_ALARM_PROBABILITY = 1e-3
# The command's own wait after the last submit: dev tasks finish within seconds (one 2 s backoff),
# so a stuck task shows as the command's "unfinished" verdict, well before RUN_TIMEOUT_S.
WAIT_FOR_TASKS_S = 60
RUN_TIMEOUT_S = 180


def taskctl_load(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return taskctl("load", *args, env=env, timeout_s=RUN_TIMEOUT_S)


def false_alarm_probability(count: int, failed_fraction: float, confidence: float) -> float:
    """P(the command's check rejects a correct system): the binomial mass of the FAILED counts
    the check refuses."""
    return sum(
        math.comb(count, failed)
        * failed_fraction**failed
        * (1 - failed_fraction) ** (count - failed)
        for failed in range(count + 1)
        if not check_failure_rate(
            failed=failed, trials=count, expected_fraction=failed_fraction, confidence=confidence
        ).consistent
    )


def tasks_of_run(local_stack: LocalStackUnderTest, run_id: str) -> list[dict[str, Any]]:
    """The run's task records, read straight from the table (not through the API)."""
    dynamodb = local_stack.client("dynamodb")
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=local_stack.outputs["tableName"],
        FilterExpression="begins_with(#message, :prefix)",
        ExpressionAttributeNames={"#message": "message"},
        ExpressionAttributeValues={":prefix": {"S": f"load {run_id} task "}},
    )
    return [
        {
            "message": item["message"]["S"],
            "status": item["status"]["S"],
            "attempts": int(item["attempts"]["N"]),
        }
        for page in pages
        for item in page["Items"]
    ]


def test_the_chosen_confidence_makes_a_false_alarm_rare(deployed_policy: TaskPolicy) -> None:
    expected = deployed_policy.errorRate**deployed_policy.maxAttempts
    assert false_alarm_probability(TASK_COUNT, expected, CONFIDENCE) < MAX_FALSE_ALARM_PROBABILITY


def test_load_report_agrees_with_the_table_and_the_deployed_policy(
    local_stack: LocalStackUnderTest, deployed_policy: TaskPolicy, tmp_path: Path
) -> None:
    # GIVEN the running local stack
    report_file = tmp_path / "r.json"

    # WHEN the user runs the load command against it (no --url, as `make load` does), judging
    # by the dev stack's policy
    run = taskctl_load(
        "--count", str(TASK_COUNT),
        "--stack", STACK,
        "--confidence", str(CONFIDENCE),
        "--timeout", str(WAIT_FOR_TASKS_S),
        "--report", str(report_file),
        env=local_stack.env,
    )  # fmt: skip

    # THEN it passes and writes its report
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    report = json.loads(report_file.read_text())
    assert report["url"] == local_stack.api_url  # the stack's apiUrl, as `local up` printed it
    assert report["passed"] is True
    assert report["submitted"] == TASK_COUNT and report["unfinished"] == 0

    # AND the table holds exactly the run's tasks, each once, all finished
    records = tasks_of_run(local_stack, report["runId"])
    assert sorted(record["message"] for record in records) == sorted(
        f"load {report['runId']} task {index}/{TASK_COUNT}" for index in range(1, TASK_COUNT + 1)
    )
    statuses = Counter(record["status"] for record in records)
    assert set(statuses) <= TERMINAL, statuses

    # AND the report's counts are the table's
    assert report["completed"] == statuses["COMPLETED"]
    assert report["failed"] == statuses["FAILED"]
    attempts = Counter(record["attempts"] for record in records)
    assert {int(k): v["observed"] for k, v in report["attempts"].items() if v["observed"]} == dict(
        attempts
    )
    assert all(
        record["attempts"] == deployed_policy.maxAttempts
        for record in records
        if record["status"] == "FAILED"
    )

    # AND it was judged against the policy the deployed worker runs with
    assert report["policy"]["maxAttempts"] == deployed_policy.maxAttempts
    assert report["policy"]["errorRate"] == deployed_policy.errorRate
    assert report["expectedFailedFraction"] == pytest.approx(
        deployed_policy.errorRate**deployed_policy.maxAttempts, rel=1e-12
    )
    assert report["observedFailedFraction"] == pytest.approx(statuses["FAILED"] / TASK_COUNT)


def test_an_unreachable_url_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    # GIVEN a URL where nothing listens
    nothing_there = f"http://127.0.0.1:{emulator.free_port()}/dev"
    report_file = tmp_path / "r.json"

    # WHEN the load command is pointed at it
    run = taskctl_load(
        "--url", nothing_there,
        "--count", "3",
        "--stack", STACK,
        "--report", str(report_file),
        env=dict(os.environ),
    )  # fmt: skip

    # THEN it stops with exit 2 and one line on stderr naming the URL, without a traceback
    assert run.returncode == 2, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    error_lines = run.stderr.strip().splitlines()
    assert len(error_lines) == 1, run.stderr
    assert error_lines[0].startswith("error: ") and nothing_there in error_lines[0], run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    # AND no report is written for a run that never happened
    assert not report_file.exists()
