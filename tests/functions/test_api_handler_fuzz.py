"""Schemathesis fuzzes the api handler on moto, from the document the handler serves.

The fast twin of tests/e2e/test_api_fuzz.py: no emulator, so more examples per operation and two
checks the live stack cannot make exactly (its worker consumes the queue): a rejected request
queues nothing, an accepted one queues exactly one message. Requests reach `functions.api.handler`
as API Gateway would hand them over (HTTP API payload 2.0 events, built by `aws_harness`), through
a `requests` adapter, so schemathesis sends and checks them as it would over the network.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from aws_harness import CALLER, FakeLambdaContext, http_event
from hypothesis import HealthCheck, Phase, given, settings
from requests.adapters import BaseAdapter, HTTPAdapter
from schemathesis import GenerationMode
from urllib3 import HTTPResponse
from urllib3._collections import HTTPHeaderDict

from functions import api
from functions.runtime import Runtime

EXAMPLES_PER_OPERATION = 80
TOKEN = "a-token-the-authorizer-accepts"  # stands for a valid token with both scopes
STAGE = "dev"
ORIGIN = "https://api.example.test"
SCHEMATHESIS_CONFIG = {
    "checks": {
        "negative_data_rejection": {"expected-statuses": ["4XX"]},
        # Its probe (the request without the token) goes out on a fresh session, which cannot
        # reach the in-process handler; the e2e twin makes that check against the emulator's
        # real authorizer.
        "ignored_auth": {"enabled": False},
    }
}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


class ApiHandlerAdapter(BaseAdapter):
    """A `requests` transport whose server is the api Lambda handler behind an HTTP API stage
    whose JWT authorizer guards the task routes: only `Authorization: Bearer <TOKEN>` reaches
    them, as CALLER's verified claims; anything else gets API Gateway's own 401."""

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        url = urlsplit(request.url)
        assert url.path.startswith(f"/{STAGE}/"), url.path
        path = url.path.removeprefix(f"/{STAGE}")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        authorized = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        if _guarded(str(request.method), path) and not authorized:
            denial = json.dumps({"message": "Unauthorized"}).encode()
            return _reply(request, 401, denial, {"Content-Type": "application/json"})
        event = http_event(
            request.method,
            path,
            body=body,
            headers=dict(request.headers),
            # API Gateway hands a body that is not text to the function base64-encoded
            base64_body=body is not None and not _is_utf8(body),
            stage=STAGE,
            caller=CALLER if authorized else None,
        )
        reply = api.handler(event, FakeLambdaContext(function_name="fault-tolerant-tasks-dev-api"))
        content = reply.get("body", "").encode()
        if reply.get("isBase64Encoded"):
            content = base64.b64decode(content)
        return _reply(request, reply["statusCode"], content, reply.get("headers", {}))

    def close(self) -> None:
        pass


def _guarded(method: str, path: str) -> bool:
    """Whether the request hits a route the JWT authorizer guards (`POST /tasks`,
    `GET /tasks/{taskId}`); everything else goes to the open `$default` route."""
    return (method, path) == ("POST", "/tasks") or (
        method == "GET" and re.fullmatch(r"/tasks/[^/]+", path) is not None
    )


def _reply(
    request: requests.PreparedRequest, status: int, content: bytes, headers: dict[str, str]
) -> requests.Response:
    raw = HTTPResponse(
        body=io.BytesIO(content),
        headers=HTTPHeaderDict(headers),
        status=status,
        version=11,
        preload_content=False,
    )
    return HTTPAdapter().build_response(request, raw)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture
def session(rt: Runtime) -> requests.Session:
    session = requests.Session()
    session.mount("https://", ApiHandlerAdapter())
    return session


@pytest.fixture
def served_schema(session: requests.Session) -> schemathesis.BaseSchema:
    reply = session.get(f"{ORIGIN}/{STAGE}/openapi.json")
    assert reply.status_code == 200, reply.text
    # Paths are relative to the served server, the stage, as a tool reading the document finds
    assert reply.json()["servers"] == [{"url": f"/{STAGE}"}]
    config = schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
    return schemathesis.openapi.from_dict(reply.json(), config=config)


def stored_tasks(rt: Runtime) -> int:
    # Select=COUNT: moto serializes no items, which keeps a scan per example cheap.
    return rt.dynamodb.scan(TableName=rt.settings.table_name, Select="COUNT")["Count"]


def queued_messages(rt: Runtime) -> int:
    attributes = rt.sqs.get_queue_attributes(
        QueueUrl=rt.settings.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(count) for count in attributes.values())


def _error_text(response: schemathesis.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _header(response: schemathesis.Response, name: str) -> str | None:
    values = response.headers.get(name.lower())
    return values[0] if values else None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzzed_requests_get_documented_replies_and_rejected_ones_store_and_queue_nothing(
    mode: GenerationMode,
    rt: Runtime,
    session: requests.Session,
    served_schema: schemathesis.BaseSchema,
) -> None:
    operations = [result.ok() for result in served_schema.get_all_operations()]
    assert len(operations) == 2, [operation.label for operation in operations]
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def send_and_check(case: schemathesis.Case) -> None:
            _send_and_check(case, rt, session)

        send_and_check()


def test_boundary_values_wrong_methods_and_media_types_get_documented_replies(
    rt: Runtime, session: requests.Session, served_schema: schemathesis.BaseSchema
) -> None:
    # GIVEN schemathesis's coverage cases for every operation: deterministic boundary values,
    # methods the route does not have (OPTIONS included), undeclared media types
    methods: set[str] = set()
    for result in served_schema.get_all_operations():
        operation = result.ok()
        cases = served_schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=served_schema.config.generation_for(operation=operation),
        )
        for case in cases:
            methods.add(case.method)
            _send_and_check(case, rt, session)
    assert {"OPTIONS", "PUT", "DELETE"} <= methods, methods


def _send_and_check(case: schemathesis.Case, rt: Runtime, session: requests.Session) -> None:
    # GIVEN what the table and the queue hold before the request
    stored_before, queued_before = stored_tasks(rt), queued_messages(rt)

    # WHEN the generated request reaches the handler
    transport = {
        "base_url": f"{ORIGIN}/{STAGE}",
        "session": session,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
    }
    response = case.call(**transport)

    # THEN the reply is what the document promises (no 5xx among them); a check that sends a
    # control request sends it to the handler too
    case.validate_response(response, transport_kwargs=transport)
    stored = stored_tasks(rt) - stored_before
    queued = queued_messages(rt) - queued_before
    if 400 <= response.status_code < 500:
        # AND a refusal is a JSON error (the API's, or the authorizer's own 401), with nothing
        # stored or queued
        error = _error_text(response)
        denied = response.status_code == 401 and response.json() == {"message": "Unauthorized"}
        assert denied or (isinstance(error, str) and error.strip()), response.text[:300]
        assert (stored, queued) == (0, 0)
    if response.status_code == 202:
        # AND an accepted task is stored and queued once (a replay: not again)
        expected = 0 if _header(response, api.REPLAYED_HEADER) == "true" else 1
        assert (stored, queued) == (expected, expected)
