"""One exit-status convention for every taskctl command (taskctl/exit_codes.py): 0 done,
1 a check failed, 2 a usage or runtime error with one `error:` line on stderr. Only the paths that
need no emulator run here; tests/e2e runs the rest against the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import typer
from botocore.exceptions import EndpointConnectionError
from typer.testing import CliRunner

from taskctl.exit_codes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK
from taskctl.local import emulator, stack
from taskctl.local.cli import app as local_app
from taskctl.local.emulator import LocalStackError, RunningEmulator, record_running
from taskctl.local.paths import PROJECT_DIR, StackPaths
from taskctl.ops.cli import redrive

runner = CliRunner()


@pytest.fixture
def no_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory where no local stack runs."""
    monkeypatch.setenv("TASKS_LOCAL_DIR", str(tmp_path))
    return tmp_path


def _one_error_line(result) -> str:
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.output
    return line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["outputs"], "is not running"),
        (["outputs", "--key", "apiUrl"], "is not running"),
        (["logs", "--no-follow"], "is not running"),
        (["up", "--stack", "staging", "--detach"], "known stacks: dev, prod"),
    ],
    ids=["outputs", "outputs-key", "logs", "up-unknown-stack"],
)
def test_a_local_command_that_cannot_do_its_work_exits_2_with_one_error_line(
    no_local_stack: Path, args: list[str], says: str
) -> None:
    result = runner.invoke(local_app, args)

    assert result.exit_code == EXIT_ERROR, result.output
    assert says in _one_error_line(result)
    assert list(no_local_stack.iterdir()) == []  # nothing was started or written


@pytest.mark.parametrize("args", [["outputs"], ["logs", "--no-follow"]], ids=["outputs", "logs"])
def test_a_stack_still_being_deployed_has_no_outputs_or_logs_yet(
    no_local_stack: Path, args: list[str]
) -> None:
    # `local up` has recorded its emulator (this live process stands in for it) but has not
    # written the outputs, its last step: the stack is not ready, and says so.
    paths = StackPaths.for_stack("dev")
    paths.root.mkdir(parents=True)
    running = RunningEmulator(
        pid=os.getpid(), port=4566, region="us-east-1", started_at=psutil.Process().create_time()
    )
    record_running(paths, running)

    result = runner.invoke(local_app, args)

    assert result.exit_code == EXIT_ERROR, result.output
    assert f"is being deployed (pid {os.getpid()})" in _one_error_line(result)
    assert sorted(p.name for p in paths.root.iterdir()) == [paths.pid_file.name]
    # ... and `status` (exit 0: it runs) says it is not ready yet
    shown = runner.invoke(local_app, ["status"])
    assert shown.exit_code == EXIT_OK and "still being deployed" in shown.stdout, shown.output


def test_a_pid_file_naming_a_process_that_reused_the_pid_stops_nothing(no_local_stack) -> None:
    # GIVEN a pid file left by an emulator killed outright, whose pid another process now has
    # (its own process group, as the emulator's was)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        paths = StackPaths.for_stack("dev")
        paths.root.mkdir(parents=True)
        started = psutil.Process(other.pid).create_time()
        stale = RunningEmulator(
            pid=other.pid, port=4566, region="us-east-1", started_at=started - 60
        )
        record_running(paths, stale)

        # WHEN the user asks about the stack and stops it
        status = runner.invoke(local_app, ["status"])
        down = runner.invoke(local_app, ["down"])

        # THEN the stack is not running, and the other process is left alone
        assert status.exit_code == EXIT_CHECK_FAILED, status.output
        assert down.exit_code == EXIT_OK and "not running" in down.stdout, down.output
        assert other.poll() is None
        assert not paths.pid_file.exists()
    finally:
        other.kill()
        other.wait()


def test_an_up_while_another_up_of_the_stack_is_starting_is_refused(no_local_stack) -> None:
    paths = StackPaths.for_stack("dev")
    with stack.starting(paths):  # the other `up`, between its check and its pid file
        result = runner.invoke(local_app, ["up", "--detach", "--port", "4599"])

    assert result.exit_code == EXIT_ERROR
    assert "another `local up` of stack 'dev' is starting" in _one_error_line(result)
    assert not paths.pid_file.exists()


def test_local_status_of_a_stack_that_is_not_running_is_a_failed_check(no_local_stack) -> None:
    result = runner.invoke(local_app, ["status"])

    assert result.exit_code == EXIT_CHECK_FAILED
    assert "is not running" in result.stdout


def test_local_down_of_a_stack_that_is_not_running_has_nothing_to_do(no_local_stack) -> None:
    result = runner.invoke(local_app, ["down"])

    assert result.exit_code == EXIT_OK
    assert "is not running" in result.stdout


def test_a_bad_local_flag_is_a_usage_error(no_local_stack) -> None:
    assert runner.invoke(local_app, ["up", "--port", "0"]).exit_code == EXIT_ERROR


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["T1"], "is not running"),
        (["T1", "--table", "tasks"], "go together"),
        (["T1", "--stack", "staging"], "known stacks: dev, prod"),
        (["T1", "--table", "tasks", "--queue-url", "https://q"], "--stack"),
    ],
    ids=["no-local-stack", "table-without-queue", "unknown-stack", "table-without-stack"],
)
def test_a_redrive_that_cannot_start_exits_2_with_one_error_line(
    no_local_stack: Path, args: list[str], says: str
) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(redrive)
    app.command("noop")(lambda: None)  # keeps Typer from collapsing the app into its command

    result = runner.invoke(app, ["redrive", *args])

    assert result.exit_code == EXIT_ERROR, result.output
    assert says in _one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["local", "up", "--detach"],
        ["load", "--url", "http://127.0.0.1:9"],
        ["bench"],
        ["chaos", "--tasks", "5"],
        ["capacity", "--rate", "5"],
        ["redrive", "T1"],
    ],
    ids=lambda args: args[0],
)
def test_every_command_refuses_an_unknown_stack_in_the_same_words(no_local_stack, args) -> None:
    from taskctl.cli import app

    result = runner.invoke(app, [*args, "--stack", "staging"])

    assert result.exit_code == EXIT_ERROR, result.output
    assert _one_error_line(result) == (
        "error: stack staging: no stack file Pulumi.staging.yaml; known stacks: dev, prod"
    )


def test_without_the_project_packages_the_entry_point_exits_2_saying_how_to_get_them() -> None:
    # `-S` leaves out site-packages: the interpreter a user has before `make venv`
    result = subprocess.run(
        [sys.executable, "-S", "-m", "taskctl", "load", "--help"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert result.returncode == EXIT_ERROR
    (line,) = result.stderr.strip().splitlines()
    assert "make venv" in line and "Traceback" not in result.stderr


def test_the_virtualenv_has_a_taskctl_command_that_is_python_m_taskctl() -> None:
    # GIVEN the virtualenv `make venv` builds (requirements-dev.txt installs the project)
    command = Path(sys.executable).with_name("taskctl")
    assert command.exists(), "run `make venv`: it installs the project and its `taskctl` command"

    # WHEN it is run THEN it is the same CLI, named as the user typed it
    result = subprocess.run(
        [str(command), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert "Usage: taskctl " in result.stdout
    assert {"local", "load", "redrive"} <= set(result.stdout.split())


def test_a_deployment_cut_short_by_local_down_says_so(
    no_local_stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an `up` whose emulator (this process stands in for it) is stopped by `local down`
    # from another terminal while the program is being deployed: the pid file goes first, then
    # the deployment's next call finds no emulator
    paths = StackPaths.for_stack("dev")
    stand_in = RunningEmulator(
        pid=os.getpid(), port=4599, region="us-east-1", started_at=psutil.Process().create_time()
    )

    def start(paths: StackPaths, **_: object) -> RunningEmulator:
        record_running(paths, stand_in)
        return stand_in

    def deploy_meets_local_down(*_: object) -> None:
        paths.pid_file.unlink()
        raise EndpointConnectionError(endpoint_url=stand_in.endpoint_url)

    monkeypatch.setattr(emulator, "start", start)
    monkeypatch.setattr(emulator, "stop", lambda running: None)
    monkeypatch.setattr(stack, "_deploy", deploy_meets_local_down)

    # WHEN the deployment fails  THEN the error says what happened, not the connection error
    with pytest.raises(LocalStackError, match="stopped by `local down` during the deployment"):
        stack.bring_up("dev", port=4599, foreground=False, progress=lambda _message: None)


def test_a_campaign_that_breaks_exits_2_saying_how_to_reproduce_it(monkeypatch) -> None:
    from taskctl.chaos import campaign
    from taskctl.cli import app

    def broken(*_args, **_kwargs):
        raise RuntimeError("the simulated queue\nlost its order")

    monkeypatch.setattr(campaign, "run_campaign", broken)
    result = runner.invoke(app, ["chaos", "--tasks", "5", "--seed", "9", "--jobs", "1"])

    assert result.exit_code == EXIT_ERROR, result.output
    assert _one_error_line(result) == (
        "error: the campaign stopped (RuntimeError: the simulated queue lost its order); "
        "rerun with the same --seed 9 --tasks 5 to reproduce"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read {file}: No such file or directory"),
        ('{"quotas": {', "{file} is not valid JSON: Expecting property name"),
        (
            '{"recorded": "2026-11-29", "quotas": {}}',
            "{file} has no quotas.sqsInFlightPerStandardQueue.value",
        ),
    ],
    ids=["missing", "not-json", "no-entry"],
)
@pytest.mark.parametrize(
    "mode",
    [["--tasks", "3", "--jobs", "1"], ["--scale", "--duration", "5"]],
    ids=["campaign", "scale"],
)
def test_chaos_with_an_unreadable_quotas_file_exits_2_naming_it_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, says: str, mode
) -> None:
    from taskctl.chaos import campaign
    from taskctl.cli import app

    # GIVEN a quotas file that is missing, not JSON, or without the in-flight quota
    quotas_file = tmp_path / "quotas.json"
    if content is not None:
        quotas_file.write_text(content)
    monkeypatch.setattr("taskctl.capacity.quotas.QUOTAS_FILE", quotas_file)

    def runs(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the campaign started")

    monkeypatch.setattr(campaign, "run_campaign", runs)

    # WHEN either mode runs
    result = runner.invoke(app, ["chaos", *mode])

    # THEN one line names the file and what is wrong with it, before anything ran (not "the
    # campaign stopped ... rerun with the same --seed", not a traceback)
    assert result.exit_code == EXIT_ERROR, result.output
    line = _one_error_line(result)
    assert line.startswith("error: " + says.format(file=quotas_file)), line
    assert line.endswith("`git checkout bench/quotas.json` restores the recorded one")
    assert result.stdout == ""
