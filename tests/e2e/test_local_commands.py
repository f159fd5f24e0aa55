"""The `local` commands as a user runs them: outputs, logs, refusals, and a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from e2e_support import (
    LOCAL_COMMAND,
    STACK,
    UP_TIMEOUT_S,
    LocalStackUnderTest,
    environment_with_state,
    local_command,
    submit,
    wait_terminal,
    wait_until,
)

from taskctl.local import emulator
from taskctl.local.paths import PROJECT_DIR

pytestmark = pytest.mark.e2e


def test_outputs_key_prints_just_that_value(local_stack: LocalStackUnderTest) -> None:
    shown = local_command("outputs", "--key", "apiUrl", env=local_stack.env, timeout_s=30)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == local_stack.api_url


def test_outputs_json_equals_the_outputs_file(local_stack: LocalStackUnderTest) -> None:
    shown = local_command("outputs", "--json", env=local_stack.env, timeout_s=30)

    assert json.loads(shown.stdout) == local_stack.outputs
    assert set(local_stack.outputs) >= {"apiUrl", "tasksEndpoint", "queueUrl", "dlqUrl",
                                        "tableName", "dashboardUrl"}  # fmt: skip


def test_status_says_where_a_detached_stack_listens_and_how_it_stops(
    local_stack: LocalStackUnderTest,
) -> None:
    shown = local_command("status", "--stack", STACK, env=local_stack.env, timeout_s=30)

    assert shown.returncode == 0, shown.stderr
    assert f"pid {local_stack.pid}, http://127.0.0.1:{local_stack.port}, detached," in shown.stdout
    assert re.search(r"\d+ processes, RSS \d+ MiB", shown.stdout), shown.stdout


def test_the_emulator_listens_on_loopback_at_its_port_only(
    local_stack: LocalStackUnderTest,
) -> None:
    # DESIGN §6: bound to 127.0.0.1. Every process of the stack (the emulator and the function
    # workers it runs) is asked; ministack alone would also open an IoT listener on 0.0.0.0:8883.
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for pid in emulator.group_members(local_stack.pid)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }

    assert listening == {("127.0.0.1", local_stack.port)}


def test_up_prints_the_outputs_and_a_curl_line(local_stack: LocalStackUnderTest) -> None:
    assert re.search(
        rf"^\s+apiUrl\s+{re.escape(local_stack.api_url)}$", local_stack.up_output, re.M
    )
    assert f"curl -i -X POST {local_stack.api_url}/tasks" in local_stack.up_output
    # what the emulator does not do is said, not skipped silently
    assert "Not emulated" in local_stack.up_output


def test_up_says_which_functions_run_on_a_schedule_and_what_runs_them(
    local_stack: LocalStackUnderTest,
) -> None:
    (rule,) = local_stack.deployed("aws:cloudwatch/eventRule:EventRule")
    expression = rule["inputs"]["scheduleExpression"]

    assert "EventBridge scheduler" in local_stack.up_output
    assert re.search(rf"^\s+reconciler\s+{re.escape(expression)}\s", local_stack.up_output, re.M), (
        local_stack.up_output
    )
    # ... and the logs line to paste names the stack (without it, it shows dev's)
    assert f"local logs reconciler --stack {STACK})" in local_stack.up_output


def test_logs_show_each_function_with_its_prefix(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    wait_terminal(api, submit(api, "SUCCESS"))

    shown = local_command("logs", "--no-follow", env=local_stack.env, timeout_s=30)

    assert shown.returncode == 0, shown.stderr
    prefixes = {line.split("|", 1)[0].strip() for line in shown.stdout.splitlines() if "|" in line}
    assert {"api", "worker"} <= prefixes


def test_a_second_up_while_one_runs_is_refused(local_stack: LocalStackUnderTest) -> None:
    again = local_command(
        "up", "--port", str(emulator.free_port()), "--detach", env=local_stack.env, timeout_s=60
    )

    assert again.returncode == 2  # an error, not a failed check (taskctl/exit_codes.py)
    assert "already running" in again.stderr
    assert emulator.is_alive(local_stack.pid)


def test_up_on_a_port_already_taken_says_so(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        refused = local_command(
            "up", "--port", str(port), "--detach", env=environment_with_state(tmp_path),
            timeout_s=60,
        )  # fmt: skip

    assert refused.returncode == 2
    assert f"port {port}" in refused.stderr and "already in use" in refused.stderr
    assert not (tmp_path / STACK / "emulator.json").exists()


def test_without_the_project_virtualenv_the_message_says_how_to_make_it(tmp_path: Path) -> None:
    # `-S` leaves out site-packages: the interpreter a user gets before `make venv`
    refused = subprocess.run(
        [sys.executable, "-S", "-m", "taskctl", "local", "up"],
        cwd=PROJECT_DIR, env=environment_with_state(tmp_path), capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip

    assert refused.returncode == 2
    assert "virtualenv" in refused.stderr and "make venv" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("stopped_by", ["ctrl-c", "terminal closed", "local down"])
def test_stopping_a_foreground_up_leaves_no_process_and_no_bound_port(
    tmp_path: Path, stopped_by: str
) -> None:
    # GIVEN a foreground `local up`, in its own session as a terminal would run it
    port = emulator.free_port()
    state = tmp_path / STACK
    env = environment_with_state(tmp_path)
    foreground = subprocess.Popen(
        [*LOCAL_COMMAND, "up", "--port", str(port)],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: (state / "outputs.json").exists() or foreground.poll() is not None,
            timeout_s=UP_TIMEOUT_S,
            what="the foreground stack to be ready",
        )
        assert foreground.poll() is None, foreground.stdout.read()
        emulator_pid = json.loads((state / "emulator.json").read_text())["pid"]
        assert emulator.group_members(emulator_pid), "the emulator should be running"
        shown = local_command("status", env=env, timeout_s=30)
        assert "in the foreground of another terminal" in shown.stdout, shown.stdout

        # WHEN the user presses Ctrl-C, closes the terminal, or runs `local down` in another
        if stopped_by in ("ctrl-c", "terminal closed"):
            os.kill(foreground.pid, signal.SIGINT if stopped_by == "ctrl-c" else signal.SIGHUP)
        else:
            local_command("down", env=env, timeout_s=60)
        output, _ = foreground.communicate(timeout=60)
    finally:
        if foreground.poll() is None:
            foreground.kill()
        if (state / "emulator.json").exists():  # a failed run must not leave its emulator behind
            local_command("down", env=env, timeout_s=60)

    # THEN the command ends cleanly, saying so, and neither the emulator nor a function process
    # nor the port is left
    assert foreground.returncode == 0, output
    assert emulator.group_members(emulator_pid) == []
    assert not emulator.port_in_use(port)
    assert not (state / "emulator.json").exists()
    assert not (state / "outputs.json").exists()  # a stopped stack has no outputs to show
    assert "stopped" in output
    assert ("`local down`" in output) == (stopped_by == "local down")


# Run in a child process: a Pulumi program that failed leaves runtime state behind in its process.
FAILING_DEPLOYMENT = """
import sys
from taskctl.local import creators, stack
from taskctl.local.emulator import LocalStackError

del creators.CREATORS["aws:sns/topic:Topic"]
try:
    stack.bring_up("dev", port=int(sys.argv[1]), foreground=False, progress=lambda _m: None)
except LocalStackError as error:
    print(error)
    sys.exit(3)
"""


def test_a_failed_deployment_names_the_resource_type_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    # GIVEN a program declaring a resource type the local stack cannot create
    port = emulator.free_port()

    # WHEN it is brought up
    failed = subprocess.run(
        [sys.executable, "-c", FAILING_DEPLOYMENT, str(port)],
        cwd=PROJECT_DIR, env=environment_with_state(tmp_path), capture_output=True, text=True,
        timeout=UP_TIMEOUT_S, check=False,
    )  # fmt: skip

    # THEN the error names the type, and the emulator it started is gone again
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "aws:sns/topic:Topic" in failed.stdout and "creators.py" in failed.stdout
    assert not (tmp_path / STACK / "emulator.json").exists()
    assert not (tmp_path / STACK / "outputs.json").exists()
    assert not emulator.port_in_use(port)
