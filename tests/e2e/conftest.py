"""The end-to-end tests' local stack: started once per session, talked to over HTTP.

The session fixture runs the real command, `python -m taskctl local up --detach`, on a free port
with its own state directory (TASKS_LOCAL_DIR), reads the outputs the command wrote, and runs
`local down` at the end, checking that it stops the detached stack completely. The emulator's
virtualenv and the bundle cache are shared with `make local`, so only a cold machine pays for
installing them.

Right after `up` it strands one task (stored, never queued: see `strand_task`). The reconciler's
first scheduled run comes one interval after deployment; planting the task first lets that wait
overlap the other tests instead of adding to the suite's time. `test_recovery_on_local_stack`
checks that the task was recovered and finished.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import httpx
import pytest
from e2e_support import (
    STACK,
    UP_TIMEOUT_S,
    LocalStackUnderTest,
    api_client,
    environment_with_state,
    local_command,
    strand_task,
)

from functions.policy import TaskPolicy
from taskctl.local import emulator


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackUnderTest]:
    state_dir = tmp_path_factory.mktemp("local-state")
    env = environment_with_state(state_dir)
    port = emulator.free_port()
    # What an emulator killed without `local down` leaves in its TMPDIR: `up` removes it.
    leftover = state_dir / STACK / "tmp" / "ministack-lambda-of-a-killed-run"
    leftover.mkdir(parents=True)
    # ... and the log of an earlier run, which `up` keeps as emulator.log.1 beside its own
    (state_dir / STACK / "emulator.log").write_text("the previous run\n")
    started = local_command(
        "up", "--stack", STACK, "--port", str(port), "--detach", env=env, timeout_s=UP_TIMEOUT_S
    )
    record_file = state_dir / STACK / "emulator.json"
    if started.returncode != 0:
        if record_file.exists():
            local_command("down", "--stack", STACK, env=env, timeout_s=60)
        pytest.fail(f"local up failed:\n{started.stdout}\n{started.stderr}")
    record = json.loads(record_file.read_text())
    outputs = json.loads((state_dir / STACK / "outputs.json").read_text())
    stack = LocalStackUnderTest(
        state_dir=state_dir,
        env=env,
        port=port,
        pid=record["pid"],
        region=record["region"],
        outputs=outputs,
        up_output=started.stdout,
    )
    try:
        assert not leftover.exists(), "local up kept the emulator's old unpacked code"
        assert (state_dir / STACK / "emulator.log.1").read_text() == "the previous run\n"
        assert "the previous run" not in (state_dir / STACK / "emulator.log").read_text()
        stack = dataclasses.replace(stack, stranded_task=strand_task(stack, "SUCCESS"))
        yield stack
    finally:
        stopped = local_command("down", "--stack", STACK, env=env, timeout_s=60)
    # `local down` of a detached stack succeeds and leaves nothing behind: no emulator, no
    # function process, no listening port. (The session's stack is the one detached stack the
    # tests start, so this is where that is checked.)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert emulator.group_members(stack.pid) == [], "processes left after `local down`"
    assert not emulator.port_in_use(port), f"port {port} still bound after `local down`"
    # ... and no unpacked function code (about 100 MB a run) left in the emulator's TMPDIR.
    assert not (state_dir / STACK / "tmp").exists(), "the emulator's TMPDIR survived `local down`"


@pytest.fixture(scope="session")
def api(local_stack: LocalStackUnderTest) -> Iterator[httpx.Client]:
    """HTTP to the printed apiUrl as the stack's own app client (with its token when the stack
    authenticates callers, as `python -m taskctl token` prints it)."""
    token = local_stack.token() if local_stack.authenticates else None
    with api_client(local_stack, token) as client:
        yield client


@pytest.fixture(scope="session")
def deployed_policy(local_stack: LocalStackUnderTest) -> TaskPolicy:
    """The retry policy the deployed worker really runs with (from its environment)."""
    return local_stack.deployed_policy()
