"""Where the local stack keeps its state: everything lives under `.local/`, nothing elsewhere.

`TASKS_LOCAL_DIR` moves a stack's state (the end-to-end tests use a temporary directory); the
virtualenvs (`venvs.py`) stay in `<repo>/.local/`, shared by every state directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The repository (Pulumi.yaml, __main__.py, bench/); every taskctl module finds its files from here.
PROJECT_DIR = Path(__file__).resolve().parents[2]


class _InRoot:
    """A `StackPaths` attribute: the file or directory of that name under the stack's root."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, paths: StackPaths, owner: type) -> Path:
        return paths.root / self.name


@dataclass(frozen=True)
class StackPaths:
    """The files of one local stack, all under `<local root>/<stack>/`."""

    stack: str
    root: Path

    # The running emulator as JSON (emulator.RunningEmulator); its pid is also its process group.
    pid_file = _InRoot("emulator.json")
    outputs_file = _InRoot("outputs.json")
    # What was created, per resource (type, name, inputs, outputs, skipped settings).
    deployment_file = _InRoot("deployment.json")
    emulator_log = _InRoot("emulator.log")
    # The emulator's TMPDIR: its pid file and the functions' unpacked code land here.
    tmp_dir = _InRoot("tmp")
    # The emulator's own files: its Cognito signing keys (one pair per user pool).
    emulator_state_dir = _InRoot("emulator-state")

    @classmethod
    def for_stack(cls, stack: str) -> StackPaths:
        local_root = Path(os.environ.get("TASKS_LOCAL_DIR") or PROJECT_DIR / ".local").resolve()
        return cls(stack=stack, root=local_root / stack)
