"""Fixtures for the program tests: the real `__main__.py` under recording mocks."""

from __future__ import annotations

import pytest
from stack_runs import STACKS, ProgramRun, run_stack


@pytest.fixture(params=STACKS)
def program_run(request: pytest.FixtureRequest) -> ProgramRun:
    """The program's run for each stack (built once per session, shared by the tests)."""
    return run_stack(request.param)
