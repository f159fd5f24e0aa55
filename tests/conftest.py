"""Fixtures every test area can share, and how `make test` spreads the suite over two workers."""

from __future__ import annotations

import os
from typing import Any

import pytest

# The end-to-end tests share one local stack per test session (tests/e2e/conftest.py).
E2E_DIR = "tests/e2e/"


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region, and no endpoint override: nothing can reach real AWS
    (moto intercepts), and no developer profile leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (`make test` runs `pytest -n 2`): every end-to-end test goes to one
    worker, in file order, so the local stack is started once, as in a serial run; every other
    test is a unit of its own, handed to whichever worker is free. The end-to-end tests spend
    much of their time waiting for the emulator's functions and retries, which the other worker
    fills with the CPU-bound rest of the suite.

    (xdist's own `--dist loadgroup` cannot do this on pytest 9: it groups by rewriting
    `item._nodeid`, which pytest 9 no longer reads.) `--dist each` keeps its meaning."""
    if config.getvalue("dist") == "each":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndTogether(LoadScopeScheduling):
        # The largest unit (the end-to-end tests) is handed out first (`--loadscope-reorder`,
        # xdist's default), so they start at once and the other worker takes the rest.
        def _split_scope(self, nodeid: str) -> str:
            return E2E_DIR if nodeid.startswith(E2E_DIR) else nodeid

    return EndToEndTogether(config, log)
