"""Where the local stack keeps its state: everything lives under `.local/`, nothing elsewhere.

`TASKS_LOCAL_DIR` moves a stack's state (the end-to-end tests use a temporary directory); the
virtualenvs (`venvs.py`) stay in `<repo>/.local/`, shared by every state directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def local_root() -> Path:
    """The directory holding every stack's state (default `<repo>/.local`)."""
    return Path(os.environ.get("TASKS_LOCAL_DIR") or REPO_ROOT / ".local").resolve()


@dataclass(frozen=True)
class StackPaths:
    """The files of one local stack, all under `<local root>/<stack>/`."""

    stack: str
    root: Path

    @classmethod
    def for_stack(cls, stack: str) -> StackPaths:
        return cls(stack=stack, root=local_root() / stack)

    @property
    def pid_file(self) -> Path:
        """JSON `{pid, port, region}` of the running emulator; its pid is also its process group."""
        return self.root / "emulator.json"

    @property
    def outputs_file(self) -> Path:
        return self.root / "outputs.json"

    @property
    def deployment_file(self) -> Path:
        """What was created, per resource (type, name, inputs, outputs, skipped settings)."""
        return self.root / "deployment.json"

    @property
    def emulator_log(self) -> Path:
        return self.root / "emulator.log"

    @property
    def tmp_dir(self) -> Path:
        """The emulator's TMPDIR: its pid file and the functions' unpacked code land here."""
        return self.root / "tmp"

    @property
    def emulator_state_dir(self) -> Path:
        """The emulator's own files: its Cognito signing keys (one pair per user pool)."""
        return self.root / "emulator-state"

    def ensure(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
