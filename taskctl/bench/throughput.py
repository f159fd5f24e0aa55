"""Local end-to-end throughput: a bulk load run on a local stack of its own.

The stack is started detached on a free port with its state in a temporary directory (so a stack
the user already runs is left alone), the load logic runs against its apiUrl, and the stack is
stopped again whatever happens.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from taskctl.load.client import LoadError
from taskctl.load.policy import policy_from_stack
from taskctl.load.runner import LoadOptions, default_timeout_s, run_load
from taskctl.local.emulator import free_port
from taskctl.local.paths import PROJECT_DIR

UP_TIMEOUT_S = 600  # the first run builds the emulator's virtualenv and the bundle
DOWN_TIMEOUT_S = 120
WARM_UP_TASKS = 20


def _taskctl(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run a taskctl command; one that outlives `timeout_s` is killed and reported as failed."""
    command = [sys.executable, "-m", "taskctl", *args]
    try:
        return subprocess.run(
            command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -1, "", f"timed out after {timeout_s:g} s")


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def not_measured(reason: str) -> dict[str, Any]:
    return {"measured": False, "reason": reason}


def measure_throughput(
    stack: str, *, tasks: int, concurrency: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Tasks per second, submit of the first to terminal of the last; or why it was not measured."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskctl-bench-") as state_dir:
        env = {**os.environ, "TASKS_LOCAL_DIR": state_dir}
        progress(f"local stack {stack}: starting on port {port} (first run installs the emulator)")
        up = _taskctl(
            ["local", "up", "--detach", "--stack", stack, "--port", str(port)], env, UP_TIMEOUT_S
        )
        try:
            if up.returncode != 0:
                return not_measured(f"the local stack did not start: {_last_line(up)}")
            found = _taskctl(["local", "outputs", "--stack", stack, "--key", "apiUrl"], env, 60)
            api_url = found.stdout.strip()
            if found.returncode != 0 or not api_url:
                return not_measured(f"no apiUrl output: {_last_line(found)}")
            # The stack's own app client's token (empty for an open stack), as a user gets it.
            got = _taskctl(["token", "--stack", stack], env, 60)
            if got.returncode != 0:
                return not_measured(f"no token: {_last_line(got)}")
            token = got.stdout.strip() or None
            policy = policy_from_stack(stack)
            options = LoadOptions(
                url=api_url,
                count=tasks,
                concurrency=concurrency,
                timeout_s=default_timeout_s(policy),
                policy=policy,
                bearer_token=token,
            )
            # A few tasks first, so the figure is the warm stack's rate, not its cold starts.
            progress(f"local load: warming up with {WARM_UP_TASKS} tasks")
            run = "warm-up"
            terminal = itertools.count(1)
            try:
                run_load(dataclasses.replace(options, count=WARM_UP_TASKS))
                run = "load"
                report = run_load(
                    options,
                    on_terminal=lambda _task: progress(
                        f"local load: {next(terminal)}/{tasks} tasks terminal"
                    ),
                )
            except LoadError as exc:
                return not_measured(f"the {run} run stopped: {exc}")
            return {
                "measured": True,
                "stack": stack,
                "tasks": tasks,
                "concurrency": concurrency,
                "tasksPerSecond": report["throughputTasksPerSecond"],
                "completed": report["completed"],
                "failed": report["failed"],
                "unfinished": report["unfinished"],
                "latencySeconds": report["latencySeconds"],
                "failedFractionConsistent": report["failedFractionConsistent"],
                "retryGapViolations": report["retryGapSeconds"]["violations"],
                "warmUpTasks": WARM_UP_TASKS,
                "note": "tasks/s = terminal tasks / (first submit -> last terminal seen), after "
                "a warm-up run; one machine runs the emulator, the functions and the client",
            }
        finally:
            progress(f"local stack {stack}: stopping")
            down = _taskctl(["local", "down", "--stack", stack], env, DOWN_TIMEOUT_S)
            if down.returncode != 0:  # its processes may outlive the state directory: say so
                print(
                    f"warning: `local down` of the bench's stack: {_last_line(down)}",
                    file=sys.stderr,
                )
