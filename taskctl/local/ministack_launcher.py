"""Start ministack with the fidelity fixes the local stack needs (run by the EMULATOR's Python).

This file runs as a script under `.local/emulator-venv/bin/python` (it imports only ministack
and the standard library, never the project). Lambda workers are separate processes started
with their own script, so nothing here reaches the functions.

Fix 1: the Lambda runtime. ministack runs Python functions on its own interpreter, whose
site-packages hold ministack and its dependencies (hypercorn, PyYAML, ...), none of which AWS's
runtime has. Functions run instead on the interpreter `TASKS_LAMBDA_PYTHON` names (a venv with
boto3 only), so an import the bundle does not satisfy fails as it would in AWS.

Fix 2: API Gateway HTTP API, payload format 2.0, named stage. AWS puts the stage in `rawPath` and
`requestContext.http.path` (`/dev/tasks` on stage `dev`); ministack 1.5.33 leaves it out
(`/tasks`). Code written for AWS - Powertools' `APIGatewayHttpResolver` strips the stage from
`rawPath` - would then see `ks` and answer 404. The event is corrected just before the function
is invoked.
"""

from __future__ import annotations

import os
from typing import Any

LAMBDA_PYTHON_ENV = "TASKS_LAMBDA_PYTHON"


def _with_stage_in_path(event: Any) -> Any:
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return event
    context = event.get("requestContext") or {}
    http = context.get("http")
    stage = context.get("stage")
    if not isinstance(http, dict) or not stage or stage == "$default":
        return event
    prefix = f"/{stage}"
    raw_path = event.get("rawPath") or "/"
    if raw_path == prefix or raw_path.startswith(prefix + "/"):
        return event  # already AWS-shaped (a later ministack may fix this itself)
    fixed = dict(event)
    fixed["rawPath"] = prefix + raw_path
    fixed["requestContext"] = {
        **context,
        "http": {**http, "path": prefix + http.get("path", raw_path)},
    }
    return fixed


def _patch_http_api_events() -> None:
    from ministack.services import lambda_svc

    original = lambda_svc._execute_function_with_config_scope

    def execute_with_aws_paths(func: dict, event: dict) -> dict:
        return original(func, _with_stage_in_path(event))

    lambda_svc._execute_function_with_config_scope = execute_with_aws_paths


def _patch_lambda_python(lambda_python: str) -> None:
    from ministack.core import lambda_runtime

    original = lambda_runtime._detect_runtime_binary

    def detect_runtime_binary(runtime: str) -> tuple[str, str]:
        binary, worker_script = original(runtime)
        return (lambda_python if runtime.startswith("python") else binary), worker_script

    lambda_runtime._detect_runtime_binary = detect_runtime_binary


if __name__ == "__main__":
    _patch_lambda_python(os.environ[LAMBDA_PYTHON_ENV])  # emulator.start always sets it
    _patch_http_api_events()
    from ministack.app import main

    main()
