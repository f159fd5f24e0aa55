"""The local stack's two virtualenvs, built on demand under `.local/` from pinned files.

- the emulator's (`requirements-emulator.txt`): ministack, kept apart from the project's venv
  because it pins a botocore that conflicts with the project's boto3;
- the Lambda runtime's (`requirements-lambda-runtime.txt`): what AWS's Python runtime provides
  besides the standard library, i.e. boto3, and nothing else. The functions run on this
  interpreter with only their bundle on top, so a dependency missing from the bundle fails
  here as it would in AWS (the emulator's own packages are not visible to them).

Both are made from the running interpreter's base Python, the version the function bundles are
built for (`components/packaging.py`, local target). A venv is rebuilt when its requirements
file or that Python changes; a file lock keeps two commands started together from building it
twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from taskctl.local.paths import PROJECT_DIR

HERE = Path(__file__).resolve().parent
Report = Callable[[str], None]


class VenvError(RuntimeError):
    """A virtualenv could not be built; the message names the step and pip's last line."""


@dataclass(frozen=True)
class ManagedVenv:
    """A virtualenv under `.local/` defined by one pinned requirements file."""

    label: str
    requirements: Path
    # Under the project's `.local/`, not a stack's state dir: every stack and test shares it.
    directory: Path
    warm_import: str  # imported once after installing, so the first real start is not slower

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    def _digest(self) -> str:
        # The requirements, and the interpreter the venv is made from: the functions' bundle is
        # built for the running interpreter, so after the project's venv moves to another Python
        # a Lambda runtime venv of the old one could not load the bundle's compiled wheels.
        made_from = f"\0{sys.base_prefix}\0{sys.version}".encode()
        return hashlib.sha256(self.requirements.read_bytes() + made_from).hexdigest()[:16]

    def ready(self) -> bool:
        marker = self.directory / ".installed"
        return (
            self.python.exists()
            and marker.exists()
            and marker.read_text().strip() == self._digest()
        )

    def ensure(self, report: Report) -> Path:
        """Build the venv unless it is current; return its interpreter."""
        if self.ready():
            return self.python
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with open(self.directory.parent / f".{self.directory.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.ready():  # whoever held the lock before us may have built it
                self._build(report)
                (self.directory / ".installed").write_text(self._digest() + "\n")
        return self.python

    def _build(self, report: Report) -> None:
        python = str(self.python)
        # The running interpreter's pip installs into the venv (`pip --python`), so the venv
        # needs no pip of its own: seeding one costs seconds a venv, and the functions' runtime
        # should not hold it anyway. Without a usable pip here, the venv gets its own.
        if _pip_can_target_another_python():
            create = [sys.executable, "-m", "venv", "--clear", "--without-pip", str(self.directory)]
            pip = [sys.executable, "-m", "pip", "--python", python]
        else:
            create = [sys.executable, "-m", "venv", "--clear", str(self.directory)]
            pip = [python, "-m", "pip"]
        steps = [
            (f"creating the {self.label} virtualenv", create),
            (f"installing the {self.label} ({self.requirements.name})",
             [*pip, "install", "--quiet", "--disable-pip-version-check",
              "-r", str(self.requirements)]),
            (f"compiling the {self.label}", [python, "-c", f"import {self.warm_import}"]),
        ]  # fmt: skip
        for label, command in steps:
            report(label)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise VenvError(f"{label} failed: {last[0]} (command: {' '.join(command)})")


def _pip_can_target_another_python() -> bool:
    """Whether this interpreter has a pip with `--python` (pip 22.3 or later)."""
    try:
        from pip import __version__
    except ImportError:
        return False
    return tuple(int(part) for part in __version__.split(".")[:2]) >= (22, 3)


def ensure_all(venvs: Sequence[ManagedVenv], report: Report) -> list[Path]:
    """`ensure` each venv, building those that are not current at the same time (each build is
    mostly pip unpacking and compiling, one process each); their interpreters, in order. The
    first build error is raised once every build has ended."""
    with ThreadPoolExecutor(max_workers=len(venvs)) as pool:
        futures = [pool.submit(venv.ensure, report) for venv in venvs]
    return [future.result() for future in futures]


EMULATOR_VENV = ManagedVenv(
    label="emulator",
    requirements=HERE / "requirements-emulator.txt",
    directory=PROJECT_DIR / ".local" / "emulator-venv",
    warm_import="ministack.app",
)
LAMBDA_RUNTIME_VENV = ManagedVenv(
    label="Lambda runtime",
    requirements=HERE / "requirements-lambda-runtime.txt",
    directory=PROJECT_DIR / ".local" / "lambda-runtime-venv",
    warm_import="boto3",
)
