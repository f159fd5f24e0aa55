"""Helpers for the end-to-end tests: the stack under test, the CLI, polling with deadlines.

The session fixture runs the real command, `python -m taskctl local up --detach`, on a free port
with its own state directory (TASKS_LOCAL_DIR), reads the outputs the command wrote, and runs
`local down` at the end. The emulator's virtualenv and the bundle cache are shared with `make
local`, so only a cold machine pays for installing them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.callers import ANONYMOUS_OWNER
from functions.lifecycle import new_task
from functions.policy import TaskPolicy
from functions.store import TaskStore
from taskctl.local import emulator
from taskctl.local.creators import EMULATOR_SCHEDULER_TICK_S
from taskctl.local.paths import PROJECT_DIR

STACK = "dev"
UP_TIMEOUT_S = 240  # a cold machine builds the emulator venv and the bundle first
TERMINAL = frozenset({"COMPLETED", "FAILED"})


TASKCTL = (sys.executable, "-m", "taskctl")
LOCAL_COMMAND = (*TASKCTL, "local")


def run_in_project(
    command: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess:
    """Run `command` in the repository, as a user there would; its output captured."""
    return subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def taskctl(*args: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `python -m taskctl <args>` as a user would, in the repository."""
    return run_in_project([*TASKCTL, *args], env, timeout_s)


def local_command(*args: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `python -m taskctl local <args>`."""
    return taskctl("local", *args, env=env, timeout_s=timeout_s)


def environment_with_state(state_dir: Path) -> dict[str, str]:
    env = {**os.environ, "TASKS_LOCAL_DIR": str(state_dir), "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    return env


@dataclass(frozen=True)
class StrandedTask:
    """A task stored without a message, as an api crash between PutItem and SendMessage leaves
    it; `stranded_at` is time.monotonic() when it was written."""

    task_id: str
    stranded_at: float


@dataclass(frozen=True)
class LocalStackUnderTest:
    state_dir: Path
    env: dict[str, str]
    port: int
    pid: int
    region: str
    outputs: dict[str, Any]
    up_output: str
    # Planted by the session fixture as soon as the stack is up (see conftest.py).
    stranded_task: StrandedTask | None = None

    @property
    def api_url(self) -> str:
        return self.outputs["apiUrl"]

    @property
    def authenticates(self) -> bool:
        """Whether the stack's API wants a token (`apiAuth: jwt`)."""
        return self.outputs.get("apiAuth") != "none"

    @property
    def owner(self) -> str:
        """Who the tests' tasks belong to: the stack's own app client (the `sub` of its
        client-credentials tokens), or the anonymous owner of an open stack."""
        return self.outputs["appClientId"] if self.authenticates else ANONYMOUS_OWNER

    def token(self, *scopes: str) -> str:
        """A token of the stack's own app client, from `python -m taskctl token` as a user
        gets one (`scopes`: only these; default all)."""
        flags = [arg for scope in scopes for arg in ("--scope", scope)]
        got = taskctl("token", "--stack", STACK, *flags, env=self.env, timeout_s=60)
        assert got.returncode == 0, got.stderr
        return got.stdout.strip()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str) -> Any:
        """A boto3 client on the emulator (for what no HTTP route shows: queues, functions)."""
        return emulator.client(self.endpoint_url, self.region, service)

    def deployment(self) -> dict[str, Any]:
        return json.loads((self.state_dir / STACK / "deployment.json").read_text())

    def deployed(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.deployment()["resources"] if r["type"] == type_token]

    def function_name(self, logical_prefix: str) -> str:
        """The deployed name of the function the program calls `<logical_prefix>-function`."""
        functions = self.deployed("aws:lambda/function:Function")
        matches = [f for f in functions if f["name"] == f"{logical_prefix}-function"]
        assert len(matches) == 1, [f["name"] for f in functions]
        return matches[0]["outputs"]["name"]

    def deployed_policy(self) -> TaskPolicy:
        """The policy the deployed worker really runs with (from its environment)."""
        config = self.client("lambda").get_function_configuration(
            FunctionName=self.function_name("worker")
        )
        return TaskPolicy.from_env(config["Environment"]["Variables"])

    def stored_item(self, task_id: str) -> dict[str, Any]:
        """The task's item as DynamoDB holds it, internal attributes included (typed values)."""
        reply = self.client("dynamodb").get_item(
            TableName=self.outputs["tableName"], Key={"taskId": {"S": task_id}}, ConsistentRead=True
        )
        return reply["Item"]

    def stored_task_count(self) -> int:
        """How many tasks the table holds. Only tasks: the reconciler keeps its cursor in the
        table too, an item without a `status`, written on its first scheduled run."""
        pages = (
            self.client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=self.outputs["tableName"],
                Select="COUNT",
                FilterExpression="attribute_exists(#status)",
                ExpressionAttributeNames={"#status": "status"},
            )
        )
        return sum(page["Count"] for page in pages)

    def schedule_interval_s(self, function_logical_prefix: str) -> int:
        """The interval of the deployed `rate(...)` rule that runs the function."""
        function_arn = next(
            f["outputs"]["arn"]
            for f in self.deployed("aws:lambda/function:Function")
            if f["name"] == f"{function_logical_prefix}-function"
        )
        (rule_name,) = (
            t["inputs"]["rule"]
            for t in self.deployed("aws:cloudwatch/eventTarget:EventTarget")
            if t["inputs"]["arn"] == function_arn
        )
        expression = self.client("events").describe_rule(Name=rule_name)["ScheduleExpression"]
        return rate_seconds(expression)


def rate_seconds(expression: str) -> int:
    """`rate(1 minute)` -> 60, as EventBridge reads it."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    assert match, f"not a rate() expression: {expression!r}"
    unit_s = {"minute": 60, "hour": 3600, "day": 86_400}[match[2].rstrip("s")]
    return int(match[1]) * unit_s


def strand_task(local_stack: LocalStackUnderTest, message: str) -> StrandedTask:
    """Store a PENDING task exactly as the api does, and send no message: an api that crashed
    between PutItem and SendMessage (DESIGN §8) leaves this. Only the scheduled reconciler can
    get it to run.

    It was created (so the api would have crashed) more than `recoveryGraceSeconds` ago, so the
    reconciler's first look finds it overdue. Its first check is due now rather than in the
    past: the reconciler walks check times from where its previous run stopped, so a check time
    before that run would never be looked at (the api's are always in the future).
    """
    policy = local_stack.deployed_policy()
    now = datetime.now(UTC)
    created = now - timedelta(seconds=policy.recoveryGraceSeconds + 5)
    record = new_task(str(uuid.uuid4()), message, policy, created)
    store = TaskStore(
        local_stack.client("dynamodb"), local_stack.outputs["tableName"], policy.taskTtlDays
    )
    store.create(record, created, check_after=now, owner=local_stack.owner)
    return StrandedTask(task_id=record.taskId, stranded_at=time.monotonic())


def scheduled_run_budget_s(interval_s: int) -> float:
    """How long after a moment the first scheduled run after it may take to finish a task: one
    interval, the emulator scheduler's look-up period, and cold starts of the scheduled function
    and of the worker on a busy machine."""
    return interval_s + EMULATOR_SCHEDULER_TICK_S + 20


def api_client(local_stack: LocalStackUnderTest, token: str | None) -> httpx.Client:
    """HTTP to the printed apiUrl, host-routed like curl does it, with `token` (if any) as the
    bearer token.

    curl resolves `<id>.execute-api.localhost` to 127.0.0.1 itself (RFC 6761); Python's resolver
    does not, so the client connects to 127.0.0.1 and sends the apiUrl's host in `Host`, which is
    what API Gateway (and the emulator) routes on.
    """
    api_url = httpx.URL(local_stack.api_url)
    assert api_url.host.endswith(".execute-api.localhost"), local_stack.api_url
    headers = {"Host": api_url.netloc.decode()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=api_url.copy_with(host="127.0.0.1"), headers=headers, timeout=30.0)


def submit(api: httpx.Client, message: str, **headers: str) -> str:
    reply = api.post("/tasks", json={"message": message}, headers=headers)
    assert reply.status_code == 202, reply.text
    return reply.json()["taskId"]


def wait_until(
    check: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.2, what: str
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def wait_terminal(api: httpx.Client, task_id: str, *, timeout_s: float = 30) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        record = api.get(f"/tasks/{task_id}").json()
        return record if record.get("status") in TERMINAL else None

    return wait_until(finished, timeout_s=timeout_s, what=f"task {task_id} to finish")
