"""Helpers for the end-to-end tests: the stack under test, the CLI, polling with deadlines.

The session fixture runs the real command, `python -m taskctl.local up --detach`, on a free port
with its own state directory (TASKS_LOCAL_DIR), reads the outputs the command wrote, and runs
`local down` at the end. The emulator's virtualenv and the bundle cache are shared with `make
local`, so only a cold machine pays for installing them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from taskctl.local.paths import REPO_ROOT

STACK = "dev"
UP_TIMEOUT_S = 240  # a cold machine builds the emulator venv and the bundle first
TERMINAL = frozenset({"COMPLETED", "FAILED"})


TASKCTL = (sys.executable, "-m", "taskctl")
LOCAL_COMMAND = (*TASKCTL, "local")


def taskctl(*args: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `python -m taskctl <args>` as a user would, in the repository."""
    return subprocess.run(
        [*TASKCTL, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def local_command(*args: str, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `python -m taskctl local <args>`."""
    return taskctl("local", *args, env=env, timeout_s=timeout_s)


def environment_with_state(state_dir: Path) -> dict[str, str]:
    env = {**os.environ, "TASKS_LOCAL_DIR": str(state_dir), "COLUMNS": "200"}
    env.pop("AWS_ENDPOINT_URL", None)
    return env


@dataclass(frozen=True)
class LocalStackUnderTest:
    state_dir: Path
    env: dict[str, str]
    port: int
    pid: int
    region: str
    outputs: dict[str, Any]
    up_output: str

    @property
    def api_url(self) -> str:
        return self.outputs["apiUrl"]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str) -> Any:
        """A boto3 client on the emulator (for what no HTTP route shows: queues, functions)."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

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
