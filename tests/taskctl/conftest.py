"""Fixtures for the taskctl load and bench commands: a fake task API and a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from fake_api import FakeApiServer, FakeTaskApi
from typer.testing import CliRunner

from taskctl.load.cli import load


@pytest.fixture
def fake_api() -> FakeTaskApi:
    """An honest fake with the dev stack's policy (maxAttempts 2, errorRate 0.3), seeded."""
    return FakeTaskApi(error_rate=0.3, max_attempts=2, seed=20261129)


@pytest.fixture
def fake_server(fake_api: FakeTaskApi) -> Iterator[FakeApiServer]:
    with FakeApiServer(fake_api) as server:
        yield server


@pytest.fixture
def load_app() -> typer.Typer:
    """The `load` command alone, as `python -m taskctl` registers it."""
    app = typer.Typer(add_completion=False)
    app.command()(load)
    # A second command keeps Typer from collapsing the app into its only command.
    app.command("noop")(lambda: None)
    return app


@pytest.fixture
def run_load_cli(load_app: typer.Typer):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(load_app, ["load", *args])

    return invoke
