"""The real program run under recording mocks, once per stack per test session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions.settings import StackSettings
from taskctl.program import CreatedResource, RecordingMocks, load_stack_settings, run_program

STACKS = ("dev", "prod")
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"


@dataclass(frozen=True)
class ProgramRun:
    """One run of `__main__.py`: the stack, its settings, what it declared and what it exported."""

    stack: str
    settings: StackSettings
    mocks: RecordingMocks
    outputs: dict[str, Any]

    def created(self, type_token: str) -> list[CreatedResource]:
        return self.mocks.created(type_token)

    def one(self, type_token: str, name: str) -> CreatedResource:
        return self.mocks.one(type_token, name)

    def function(self, service: str) -> CreatedResource:
        return self.one("aws:lambda/function:Function", f"{service}-function")

    def policy_of(self, service: str) -> dict[str, Any]:
        return json.loads(
            self.one("aws:iam/rolePolicy:RolePolicy", f"{service}-policy").inputs["policy"]
        )


_runs: dict[str, ProgramRun] = {}


def run_stack(stack: str) -> ProgramRun:
    """Run the program for `stack` (cached: each stack's graph is built once per session)."""
    if stack not in _runs:
        mocks = RecordingMocks()
        outputs = run_program(stack, mocks)
        _runs[stack] = ProgramRun(stack, load_stack_settings(stack), mocks, outputs)
    return _runs[stack]
