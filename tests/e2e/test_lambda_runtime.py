"""The functions run as in AWS: on an interpreter with boto3 and nothing else, from their bundle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
from e2e_support import LocalStackUnderTest, submit, wait_terminal

from taskctl.local import emulator
from taskctl.local.venvs import LAMBDA_RUNTIME_VENV

pytestmark = pytest.mark.e2e

# Run with -I: the distributions on the interpreter's own path, not the working directory's.
DISTRIBUTIONS = (
    "import importlib.metadata as m\n"
    "print(*(d.metadata['Name'] for d in m.distributions()), sep='\\n')"
)


def _pinned_names(requirements: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return {line.split("==")[0].lower() for line in lines if line}


def test_the_lambda_runtime_holds_exactly_boto3_and_its_dependencies(
    local_stack: LocalStackUnderTest,
) -> None:
    # every distribution the runtime's interpreter can import from (it has no pip of its own)
    listed = subprocess.run(
        [str(LAMBDA_RUNTIME_VENV.python), "-I", "-c", DISTRIBUTIONS],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = {line.lower() for line in listed.splitlines()}

    assert "boto3" in installed
    # nothing of the project's and nothing of the emulator's is importable by a function
    assert installed - {"pip", "setuptools", "wheel"} == _pinned_names(
        LAMBDA_RUNTIME_VENV.requirements
    )


def test_every_function_process_runs_on_the_lambda_runtime_interpreter(
    api: httpx.Client, local_stack: LocalStackUnderTest
) -> None:
    wait_terminal(api, submit(api, "SUCCESS"))  # api and worker have run at least once

    workers = []
    for pid in emulator.group_members(local_stack.pid):
        command = psutil.Process(pid).cmdline()
        if any(part.endswith("_worker.py") for part in command):
            workers.append(Path(command[0]))

    assert len(workers) >= 2
    assert set(workers) == {LAMBDA_RUNTIME_VENV.python}
