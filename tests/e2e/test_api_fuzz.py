"""Schemathesis fuzzes the deployed API from the OpenAPI document the API itself serves.

The document comes from `GET /openapi.json` on the local stack (not from importing the code), so
what is fuzzed is what a client would read, and the paths are resolved against the document's own
`servers` entry. For every operation, schemathesis generates random valid and invalid requests
(its fuzzing phase) and deterministic boundary cases, methods the route lacks and undeclared media
types (its coverage phase), sent through the emulator's API Gateway HTTP API. Each reply must:

- never be a 5xx (DESIGN §2: a 5xx is a bug or an outage, never a reply to bad input);
- match the document: a documented status, content type and body schema;
- reject invalid input with a 4xx, accept valid input (a 409 is a valid input whose generated
  Idempotency-Key was already used with another body);
- for a 4xx, be JSON `{"error": "<non-empty text>"}` and leave the table as it was;
- for a 202, have stored exactly one new task (none for an idempotent replay), readable at the
  reply's Location as a record the document describes.

Bounded and reproducible: derandomized generation, a fixed number of examples per operation and
mode, no database of past failures. The same checks run against the handler on moto, with more
examples, in tests/functions/test_api_handler_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from e2e_support import LocalStackUnderTest
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 50
# Invalid input must be refused with some 4xx; which one is checked against the document by
# `status_code_conformance` (so the API's documented 413 for an over-long message is fine).
SCHEMATHESIS_CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}}}
# Reproducible (derandomized: the same examples every run) and bounded: no shrinking against the
# live stack (a failure prints a curl command that reproduces it instead), no example database.
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
REPLAYED_HEADER = "Idempotent-Replayed"
# The replies API Gateway's JWT authorizer gives itself, in its own shape (`{"message": ...}`).
GATEWAY_DENIALS = {"401", "403"}


class Target:
    """Where fuzzed requests go: the served document's server on the apiUrl's origin, as a tool
    reading the document from its URL would resolve it; connected to 127.0.0.1 with the
    apiUrl's host in `Host` (see the `api` fixture: Python does not resolve
    `*.execute-api.localhost`)."""

    def __init__(self, api_url: str, server_url: str, token: str | None) -> None:
        url = httpx.URL(api_url)
        self.base_url = str(url.copy_with(host="127.0.0.1", path=server_url)).rstrip("/")
        self.headers = {"Host": url.netloc.decode()}
        if token is not None:  # the stack's own app client's, with both scopes
            self.headers["Authorization"] = f"Bearer {token}"
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment for a loopback API

    def call(self, case: schemathesis.Case) -> schemathesis.Response:
        return case.call(**self.transport_kwargs())

    def validate(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        """schemathesis's checks; a check that sends a control request sends it here too."""
        case.validate_response(
            response, headers=self.headers, transport_kwargs=self.transport_kwargs()
        )

    def transport_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "session": self.session, "headers": dict(self.headers)}


@pytest.fixture(scope="module")
def target(local_stack: LocalStackUnderTest, served_document: dict[str, Any]) -> Iterator[Target]:
    token = local_stack.token() if local_stack.authenticates else None
    target = Target(local_stack.api_url, served_document["servers"][0]["url"], token)
    yield target
    target.session.close()


@pytest.fixture(scope="module")
def served_document(api: httpx.Client) -> dict[str, Any]:
    reply = api.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


@pytest.fixture(scope="module")
def served_schema(served_document: dict[str, Any]) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
    return schemathesis.openapi.from_dict(served_document, config=config)


class StoredTasks:
    """Counts the table's tasks; `added()` is the change since the previous call.

    One scan per request instead of two: nothing else creates tasks while the module runs
    (pytest runs tests one at a time; the worker, the dead-letter function and the reconciler
    only update them, and the reconciler's cursor item is not a task).
    """

    def __init__(self, local_stack: LocalStackUnderTest) -> None:
        self._local_stack = local_stack
        self._last_count = local_stack.stored_task_count()

    def added(self) -> int:
        count = self._local_stack.stored_task_count()
        added, self._last_count = count - self._last_count, count
        return added


@pytest.fixture
def stored_tasks(local_stack: LocalStackUnderTest) -> StoredTasks:
    return StoredTasks(local_stack)


def test_served_document_describes_both_routes_and_their_client_errors(
    served_document: dict[str, Any],
) -> None:
    # GIVEN the document the deployed API serves
    paths = served_document["paths"]

    # THEN it describes both routes, each with JSON error replies for the client's mistakes,
    # so the fuzz test below has something to hold every reply against
    assert set(paths) == {"/tasks", "/tasks/{taskId}"}
    submit, read = paths["/tasks"]["post"], paths["/tasks/{taskId}"]["get"]
    assert {"202", "400", "413", "415", "422"} <= set(submit["responses"])
    assert {"200", "400", "404"} <= set(read["responses"])
    for operation in (submit, read):
        for status, reply in operation["responses"].items():
            if status.startswith("4") and status not in GATEWAY_DENIALS:
                schema = reply["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorReply"}, status
    assert "error" in served_document["components"]["schemas"]["ErrorReply"]["required"]


def test_served_document_declares_the_bearer_token_the_stack_asks_for(
    served_document: dict[str, Any], local_stack: LocalStackUnderTest
) -> None:
    paths = served_document["paths"]
    operations = (paths["/tasks"]["post"], paths["/tasks/{taskId}"]["get"])
    declared = "securitySchemes" in served_document["components"]
    assert declared == local_stack.authenticates
    for operation in operations:
        assert ("security" in operation) == declared
        if declared:
            assert set(operation["responses"]) >= GATEWAY_DENIALS


def test_served_document_names_the_stage_so_a_tool_reaching_it_by_url_calls_the_api(
    served_document: dict[str, Any], local_stack: LocalStackUnderTest
) -> None:
    # GIVEN the document served at <apiUrl>/openapi.json
    servers = served_document["servers"]

    # THEN its one server is the stage the apiUrl ends in: a tool that resolves the paths
    # against it calls /dev/tasks, not the gateway's 404 at /tasks
    assert [server["url"] for server in servers] == [httpx.URL(local_stack.api_url).path]


def _error_text(response: schemathesis.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


# schemathesis's own pytest integration (`schemathesis.pytest.from_fixture`) does not run on
# pytest 9 (it reads `request.node._nodeid`, which pytest 9 removed), so each operation's
# strategy is driven with Hypothesis directly: the same generators and the same checks.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzzed_requests_get_documented_replies_and_rejected_ones_store_nothing(
    mode: GenerationMode,
    target: Target,
    served_schema: schemathesis.BaseSchema,
    stored_tasks: StoredTasks,
) -> None:
    operations = [result.ok() for result in served_schema.get_all_operations()]
    assert operations, "the served document has no operations to fuzz"
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def send_and_check(case: schemathesis.Case) -> None:
            _send_and_check(case, target, served_schema, stored_tasks)

        send_and_check()


def test_boundary_values_wrong_methods_and_media_types_get_documented_replies(
    target: Target, served_schema: schemathesis.BaseSchema, stored_tasks: StoredTasks
) -> None:
    # GIVEN schemathesis's coverage cases for every operation: deterministic boundary values of
    # each parameter, methods the route does not have, and media types it does not declare
    # (e.g. `multipart/form-data` without a boundary)
    for result in served_schema.get_all_operations():
        operation = result.ok()
        cases = served_schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=served_schema.config.generation_for(operation=operation),
        )
        for case in cases:
            _send_and_check(case, target, served_schema, stored_tasks)


def _send_and_check(
    case: schemathesis.Case,
    target: Target,
    served_schema: schemathesis.BaseSchema,
    stored_tasks: StoredTasks,
) -> None:
    # WHEN schemathesis's generated request is sent through the HTTP API
    response = target.call(case)

    # THEN the reply conforms to the document (no 5xx, documented status/type/schema, invalid
    # input refused, valid input accepted)
    target.validate(case, response)
    added = stored_tasks.added()
    reproduce = case.as_curl_command(headers=target.headers, base_url=target.base_url)
    if 400 <= response.status_code < 500:
        # AND a refusal says why, as JSON, and stores nothing
        error = _error_text(response)
        assert _answered_by_the_emulator(case, response) or (
            isinstance(error, str) and error.strip()
        ), f"{response.status_code} without a JSON error: {response.text[:300]!r}\n{reproduce}"
        assert added == 0, f"a rejected request stored {added} task(s)\n{reproduce}"
    if response.status_code == 202:
        # AND an accepted task is stored once (a replay stores nothing) and readable where the
        # reply says, in the documented record shape
        replayed = _header(response, REPLAYED_HEADER) == "true"
        assert added == (0 if replayed else 1), f"an accepted request stored {added}\n{reproduce}"
        _check_readable(response, target, served_schema)


def _answered_by_the_emulator(case: schemathesis.Case, response: schemathesis.Response) -> bool:
    """ministack answers OPTIONS itself (403 `{"message": "CORS not configured"}`) for an HTTP
    API without CORS configuration; in AWS such an API's `$default` route carries OPTIONS to
    the function, which answers 405 in the error shape (see test_api_handler_fuzz.py). And a
    request the JWT authorizer refuses (schemathesis's `ignored_auth` check sends one without
    the token) gets API Gateway's own documented 401/403 `{"message": ...}`, as in AWS."""
    if case.method == "OPTIONS" and response.status_code == 403:
        return True
    return str(response.status_code) in GATEWAY_DENIALS and _gateway_message(response)


def _gateway_message(response: schemathesis.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("message") in ("Unauthorized", "Forbidden")


def _header(response: schemathesis.Response, name: str) -> str | None:
    """A reply header's value (schemathesis keeps every header as a list, keyed in lowercase)."""
    values = response.headers.get(name.lower())
    return values[0] if values else None


def _check_readable(
    accepted: schemathesis.Response, target: Target, served_schema: schemathesis.BaseSchema
) -> None:
    task_id = accepted.json()["taskId"]
    location = _header(accepted, "Location")
    assert location is not None and location.endswith(f"/tasks/{task_id}"), location
    read = served_schema["/tasks/{taskId}"]["GET"].Case(path_parameters={"taskId": task_id})
    response = target.call(read)
    assert response.status_code == 200, response.text
    target.validate(read, response)
    assert response.json()["taskId"] == task_id
