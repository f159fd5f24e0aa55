"""The local stack's virtualenvs are rebuilt exactly when what they were made from changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskctl.local.venvs import ManagedVenv


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ManagedVenv, list[str]]:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("boto3==1.0\n")
    managed = ManagedVenv(
        label="test",
        requirements=requirements,
        directory=tmp_path / "venv",
        warm_import="json",
    )
    builds: list[str] = []

    def build(self: ManagedVenv, report) -> None:  # what pip and venv would leave behind
        builds.append(sys.base_prefix)
        self.python.parent.mkdir(parents=True, exist_ok=True)
        self.python.touch()

    monkeypatch.setattr(ManagedVenv, "_build", build)
    return managed, builds


def test_a_current_venv_is_reused(venv) -> None:
    managed, builds = venv
    managed.ensure(report=lambda _: None)
    managed.ensure(report=lambda _: None)
    assert len(builds) == 1


def test_a_changed_requirements_file_rebuilds_it(venv) -> None:
    managed, builds = venv
    managed.ensure(report=lambda _: None)
    managed.requirements.write_text("boto3==2.0\n")
    managed.ensure(report=lambda _: None)
    assert len(builds) == 2


def test_a_project_venv_on_another_python_rebuilds_it(venv, monkeypatch) -> None:
    # The functions' bundle is built for the running interpreter: a Lambda runtime venv made from
    # the previous one (say 3.11 after the project moved to 3.13) could not load its wheels.
    managed, builds = venv
    managed.ensure(report=lambda _: None)
    monkeypatch.setattr(sys, "base_prefix", "/opt/python/3.13.0")
    monkeypatch.setattr(sys, "version", "3.13.0 (main)")
    managed.ensure(report=lambda _: None)
    assert builds == [builds[0], "/opt/python/3.13.0"]
