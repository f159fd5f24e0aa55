"""The ministack emulator as a managed child process.

Contracts:
- The emulator and the functions run from their own virtualenvs (`venvs.py`), not the project's.
- It binds 127.0.0.1 only, starts in a new session (its pid is its process group id, which the
  functions' worker processes inherit), and `stop()` ends the whole group and waits for the
  port to be free: no process and no bound port are left behind.
- Processes are found with psutil and POSIX calls, so this works on Linux and macOS alike.
- Its environment is built from scratch (no PYTHONPATH, no project virtualenv), because the
  emulator hands its environment to every function process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from taskctl.local.ministack_launcher import LAMBDA_PYTHON_ENV
from taskctl.local.paths import StackPaths
from taskctl.local.venvs import EMULATOR_VENV, LAMBDA_RUNTIME_VENV, VenvError, ensure_all

BIND_HOST = "127.0.0.1"
HEALTH_PATH = "/_ministack/health"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 8.0
PORT_RELEASE_TIMEOUT_S = 10.0
# Account id the emulator uses; ARNs and queue URLs carry it.
ACCOUNT_ID = "000000000000"
# Runs ministack with our fidelity fixes; see that file for what and why.
LAUNCHER = Path(__file__).with_name("ministack_launcher.py")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class LocalStackError(RuntimeError):
    """A problem the user can act on; its message is one line and says what to do."""


# -- ports and the running-emulator record -------------------------------------------------


def port_in_use(port: int) -> bool:
    """True if something accepts connections, or holds the address, on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((BIND_HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server would: connections left in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((BIND_HOST, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port the OS considers free right now (for tests and the throughput benchmark)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((BIND_HOST, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class RunningEmulator:
    """What the pid file says: the emulator's pid (= its process group) and where it listens."""

    pid: int
    port: int
    region: str
    foreground: bool = False
    # When that process started (psutil's create_time): with the pid it names the emulator, not
    # a later process given the same pid after a reboot or a kill -9 left the pid file behind.
    started_at: float = 0.0

    @property
    def endpoint_url(self) -> str:
        return f"http://{BIND_HOST}:{self.port}"

    def client(self, service: str) -> Any:
        return client(self.endpoint_url, self.region, service)


def client(endpoint_url: str, region: str, service: str) -> Any:
    """A boto3 client on the emulator at `endpoint_url`, with the emulator's own credentials
    whatever the shell's AWS settings say."""
    import boto3  # not at import: `local down` and `local status` need no AWS client

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def is_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie awaiting its parent counts as ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: it exists
        return True


def record_running(paths: StackPaths, running: RunningEmulator) -> None:
    """Write the pid file that `read_running` reads."""
    paths.pid_file.write_text(json.dumps(asdict(running)) + "\n")


def read_running(paths: StackPaths) -> RunningEmulator | None:
    """The emulator recorded for this stack if it is still alive; a stale record is removed."""
    try:
        record = RunningEmulator(**json.loads(paths.pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _is_recorded_process(record):
        return record
    paths.pid_file.unlink(missing_ok=True)
    return None


def _is_recorded_process(record: RunningEmulator) -> bool:
    """True if the process the record names still runs: its pid, started when it says."""
    if not record.started_at:  # a record written before records carried the start time
        return is_alive(record.pid)
    try:
        started_at = psutil.Process(record.pid).create_time()
    except psutil.Error:  # gone, or not ours to ask about: not our emulator
        return False
    return abs(started_at - record.started_at) < 1 and is_alive(record.pid)


# -- start / stop ----------------------------------------------------------------------------


def _emulator_environment(
    paths: StackPaths, port: int, region: str, lambda_python: Path
) -> dict[str, str]:
    """A clean environment: the emulator passes it on to every function process."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(paths.root)),
        "LANG": "C.UTF-8",
        "TMPDIR": str(paths.tmp_dir),
        "GATEWAY_PORT": str(port),
        "BIND_HOST": BIND_HOST,
        "MINISTACK_HOST": "localhost",
        "MINISTACK_REGION": region,
        "MINISTACK_ACCOUNT_ID": ACCOUNT_ID,
        "PERSIST_STATE": "0",
        # ministack's IoT MQTT-over-TLS listener binds 0.0.0.0:8883 unless turned off; nothing
        # here uses IoT, and the emulator listens on BIND_HOST only.
        "IOT_MTLS_ENABLED": "0",
        # Cognito's signing keys live here (not in the shared /tmp/ministack-state default).
        "STATE_DIR": str(paths.emulator_state_dir),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        LAMBDA_PYTHON_ENV: str(lambda_python),  # read by the launcher
        **FAKE_CREDENTIALS,
    }


def start(
    paths: StackPaths, *, port: int, region: str, foreground: bool, report: Callable[[str], None]
) -> RunningEmulator:
    """Start the emulator on 127.0.0.1:port (its virtualenvs built first if need be) and wait
    until it answers its health check; LocalStackError if the port is taken, or if the emulator
    exits or stays silent."""
    if port_in_use(port):
        raise LocalStackError(
            f"port {port} on {BIND_HOST} is already in use; stop whatever holds it or pass "
            f"--port with another number"
        )
    try:
        python, lambda_python = ensure_all((EMULATOR_VENV, LAMBDA_RUNTIME_VENV), report)
    except VenvError as error:
        raise LocalStackError(str(error)) from None
    report(f"starting the emulator on {BIND_HOST}:{port}")
    clear_tmp_dir(paths)  # what a killed run left behind
    paths.tmp_dir.mkdir(parents=True, exist_ok=True)
    # Each run its own log; the previous run's stays beside it, for a look after a crash.
    with contextlib.suppress(FileNotFoundError):
        paths.emulator_log.replace(paths.emulator_log.with_suffix(".log.1"))
    with paths.emulator_log.open("wb") as log:
        process = subprocess.Popen(
            [str(python), str(LAUNCHER)],
            cwd=paths.root,
            env=_emulator_environment(paths, port, region, lambda_python),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and its workers
        )
    running = RunningEmulator(
        pid=process.pid,
        port=port,
        region=region,
        foreground=foreground,
        started_at=psutil.Process(process.pid).create_time(),
    )
    record_running(paths, running)
    try:
        _wait_ready(process, running, paths)
    except BaseException:
        stop(running)
        paths.pid_file.unlink(missing_ok=True)
        raise
    return running


def clear_tmp_dir(paths: StackPaths) -> None:
    """Remove the emulator's TMPDIR. It unpacks every function's code there (about 25 MB each,
    four functions a stack) and leaves it behind when it stops."""
    shutil.rmtree(paths.tmp_dir, ignore_errors=True)


def _wait_ready(process: subprocess.Popen, running: RunningEmulator, paths: StackPaths) -> None:
    health_url = f"{running.endpoint_url}{HEALTH_PATH}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = paths.emulator_log.read_text(errors="replace").strip().splitlines()[-1:]
            raise LocalStackError(
                f"the emulator exited with code {process.returncode}: "
                f"{tail[0] if tail else 'no output'} (log: {paths.emulator_log})"
            )
        # URLError (no answer yet) and HTTPError (not healthy yet) are OSErrors.
        with contextlib.suppress(OSError), urllib.request.urlopen(health_url, timeout=1) as reply:
            if reply.status == 200:
                return
        time.sleep(0.1)
    raise LocalStackError(
        f"the emulator did not answer on port {running.port} within {READY_TIMEOUT_S:.0f} s "
        f"(log: {paths.emulator_log})"
    )


def stop(running: RunningEmulator) -> None:
    """End the emulator's whole process group (its Lambda workers too) and free its port."""
    _signal_group(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and group_members(running.pid):
        _reap(running.pid)
        time.sleep(0.05)
    if group_members(running.pid):
        _signal_group(running.pid, signal.SIGKILL)
    _reap(running.pid)
    deadline = time.monotonic() + PORT_RELEASE_TIMEOUT_S
    while time.monotonic() < deadline and port_in_use(running.port):
        time.sleep(0.05)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    members = []
    for process in psutil.process_iter(["status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process.pid)
        except OSError:  # gone meanwhile, or not ours to ask about
            continue
    return members


def _reap(pid: int) -> None:
    """Collect the exit status if the emulator is our own child (foreground `up`)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_rss_mb(members: list[int]) -> float:
    """Resident memory in MiB summed over `members` (a group's processes)."""
    rss_bytes = 0
    for pid in members:
        with contextlib.suppress(psutil.Error):
            rss_bytes += psutil.Process(pid).memory_info().rss
    return rss_bytes / 2**20
