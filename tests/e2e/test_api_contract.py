"""Idempotency-Key and hostile input, through the real API Gateway HTTP API in the emulator."""

from __future__ import annotations

import uuid

import httpx
import pytest
from e2e_support import LocalStackUnderTest, submit

pytestmark = pytest.mark.e2e


def test_same_idempotency_key_and_body_returns_the_same_task(api: httpx.Client) -> None:
    key = f"e2e-{uuid.uuid4()}"
    first = api.post("/tasks", json={"message": "SUCCESS"}, headers={"Idempotency-Key": key})
    again = api.post("/tasks", json={"message": "SUCCESS"}, headers={"Idempotency-Key": key})

    assert first.status_code == 202 and again.status_code == 202
    assert again.json()["taskId"] == first.json()["taskId"]
    assert again.json()["createdAt"] == first.json()["createdAt"]


def test_same_idempotency_key_with_another_body_is_refused(api: httpx.Client) -> None:
    key = f"e2e-{uuid.uuid4()}"
    first_id = submit(api, "first body", **{"Idempotency-Key": key})

    clash = api.post("/tasks", json={"message": "second body"}, headers={"Idempotency-Key": key})

    assert clash.status_code in (409, 422)
    assert "Idempotency-Key" in clash.json()["error"]
    # the original task is untouched
    assert api.get(f"/tasks/{first_id}").json()["message"] == "first body"


HOSTILE_SUBMISSIONS = {
    "malformed JSON": (b'{"message": ', "application/json"),
    "empty body": (b"", "application/json"),
    "JSON array": (b'["SUCCESS"]', "application/json"),
    "missing message": (b'{"text": "SUCCESS"}', "application/json"),
    "message not a string": (b'{"message": 42}', "application/json"),
    "empty message": (b'{"message": ""}', "application/json"),
    "unknown field": (b'{"message": "x", "priority": 9}', "application/json"),
    "message too long": (b'{"message": "' + b"x" * 5000 + b'"}', "application/json"),
    "body too large": (b'{"message": "' + b"x" * 70_000 + b'"}', "application/json"),
    "not JSON at all": (b"message=SUCCESS", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SUBMISSIONS))
def test_hostile_submission_gets_a_json_4xx_and_stores_nothing(
    api: httpx.Client, local_stack: LocalStackUnderTest, case: str
) -> None:
    body, content_type = HOSTILE_SUBMISSIONS[case]
    before = local_stack.stored_task_count()

    reply = api.post("/tasks", content=body, headers={"Content-Type": content_type})

    assert 400 <= reply.status_code < 500, f"{case}: {reply.status_code} {reply.text[:200]}"
    assert reply.json()["error"], case
    assert local_stack.stored_task_count() == before, f"{case} stored a task"


@pytest.mark.parametrize(
    ("path", "expected_status"),
    [
        ("/tasks/not-a-uuid", 400),
        ("/tasks/%27%20OR%201%3D1--", 400),
        (f"/tasks/{uuid.UUID(int=0)}", 404),
    ],
)
def test_reading_a_task_that_cannot_exist_is_a_json_4xx(
    api: httpx.Client, path: str, expected_status: int
) -> None:
    reply = api.get(path)

    assert reply.status_code == expected_status, reply.text
    assert reply.json()["error"]


def test_an_unknown_route_is_a_404_in_the_api_error_shape(api: httpx.Client) -> None:
    reply = api.get("/admin")

    assert reply.status_code == 404
    assert "/tasks" in reply.json()["error"]


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(api: httpx.Client) -> None:
    reply = api.delete("/tasks")

    assert reply.status_code == 405
    assert "POST" in reply.headers["allow"]
    assert reply.json()["error"]


def test_the_openapi_document_is_served_and_describes_both_routes(api: httpx.Client) -> None:
    reply = api.get("/openapi.json")

    assert reply.status_code == 200
    paths = reply.json()["paths"]
    assert "post" in paths["/tasks"]
    assert "get" in paths["/tasks/{taskId}"]
