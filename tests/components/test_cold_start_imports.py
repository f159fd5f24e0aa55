"""What each handler imports on a cold start: only what it needs (no timing is asserted here;
`make bench` measures the import times).

Every check imports a handler in a fresh interpreter and reads its `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Only the api serves HTTP: Powertools' HTTP resolvers (the event_handler package, with its
# OpenAPI machinery and request validation), the api module itself, and pydantic, which validates
# requests (and the stack config, in the Pulumi program), never what the queue functions read.
API_ONLY_PREFIXES = ("aws_lambda_powertools.event_handler", "functions.api", "pydantic")
# What only `GET /openapi.json` needs: generating the OpenAPI document.
OPENAPI_GENERATION_MODULES = (
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.event_handler.openapi.schema_generator",
)
NON_HTTP_HANDLERS = ("functions.worker", "functions.dead_letter", "functions.reconciler")


def _modules_after(statements: str) -> set[str]:
    """`sys.modules` of a fresh interpreter (no site customisation, the project first on its
    path, no AWS settings) after running `statements`."""
    probe = (
        f"import json, sys\nsys.path.insert(0, {str(PROJECT_DIR)!r})\n{statements}\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR.parent,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def _api_only(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.startswith(API_ONLY_PREFIXES))


@pytest.mark.parametrize("handler", NON_HTTP_HANDLERS)
def test_queue_and_schedule_handlers_import_nothing_only_the_api_uses(handler):
    # GIVEN a fresh interpreter WHEN it imports the handler
    modules = _modules_after(f"import {handler}")
    # THEN it has the handler and what it needs, and none of the HTTP machinery
    assert handler in modules
    assert "aws_lambda_powertools" in modules and "functions.store" in modules
    assert _api_only(modules) == []


def test_the_api_only_modules_are_what_the_api_imports():
    # The check above would pass vacuously if the names were wrong: the api does import them.
    modules = _modules_after("import functions.api")
    assert "functions.api" in modules
    assert "aws_lambda_powertools.event_handler.api_gateway" in modules
    assert "aws_lambda_powertools.event_handler.openapi.params" in modules
    assert "pydantic.main" in modules


def test_the_api_generates_its_openapi_document_on_first_use_not_at_import():
    # GIVEN the api imported, as a cold start does before its first request
    imported = _modules_after("import functions.api")
    # THEN nothing that only generating the document needs is loaded
    assert [name for name in OPENAPI_GENERATION_MODULES if name in imported] == []
    # WHEN the document is asked for THEN those modules come in (so the check above can fail)
    generated = _modules_after("import functions.api\nfunctions.api.openapi_document()")
    assert set(OPENAPI_GENERATION_MODULES) <= generated


def test_the_openapi_document_is_generated_once_and_each_caller_gets_its_own_copy():
    from functions import api

    first = api.openapi_document("/dev")
    first["paths"].clear()  # a caller changing its copy
    second = api.openapi_document("/prod")
    assert second["paths"] and second["servers"] == [{"url": "/prod"}]
    assert api._generated_openapi_json.cache_info().misses == 1
