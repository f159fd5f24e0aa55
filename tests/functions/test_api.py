"""The api function on moto, driven with HTTP API (payload 2.0) events."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from aws_faults import fail_calls, lose_response
from aws_harness import (
    FakeLambdaContext,
    Pipeline,
    http_event,
    json_body,
    record_of,
    scan_items,
    submit_event,
)
from botocore.exceptions import ClientError, EndpointConnectionError

from functions import api, reconciler, runtime
from functions.lifecycle import MESSAGE_MAX_CHARS
from functions.policy import SDK_MAX_ATTEMPTS
from functions.runtime import Runtime
from taskctl.chaos.clock import SimClock


def call(event: dict[str, Any]) -> dict[str, Any]:
    return api.handler(event, FakeLambdaContext(function_name="fault-tolerant-tasks-dev-api"))


def queued_task_ids(pipeline: Pipeline) -> list[str]:
    return [json.loads(message["Body"])["taskId"] for message in pipeline.receive()]


def assert_json_error(response: dict[str, Any], status: int) -> dict[str, Any]:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["Content-Type"] == "application/json"
    body = json_body(response)
    assert isinstance(body["error"], str) and body["error"]
    return body


# -- submit and read --------------------------------------------------------------------------


def test_submit_accepts_a_task_stores_it_pending_and_queues_exactly_one_message(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a valid submit  WHEN it is posted
    response = call(submit_event("SUCCESS"))

    # THEN 202 with the task's id, PENDING, its creation time and where to poll
    assert response["statusCode"] == 202
    body = json_body(response)
    assert body["status"] == "PENDING"
    assert body["createdAt"] == "2026-11-29T06:00:00.000Z"
    assert response["headers"]["Location"] == f"/dev/tasks/{body['taskId']}"
    uuid.UUID(body["taskId"])
    # AND the record is stored PENDING with no attempts, and one message names it
    stored = rt.store.get(body["taskId"])
    assert stored is not None
    assert (stored.record.status, stored.record.attempts, stored.record.maxAttempts) == (
        "PENDING",
        0,
        rt.settings.policy.maxAttempts,
    )
    assert queued_task_ids(pipeline) == [body["taskId"]]


def test_location_is_the_path_the_client_can_follow_with_or_without_a_stage(rt: Runtime) -> None:
    for stage, prefix in (("dev", "/dev"), ("prod", "/prod"), ("$default", "")):
        response = call(submit_event("SUCCESS", stage=stage))

        task_id = json_body(response)["taskId"]
        assert response["headers"]["Location"] == f"{prefix}/tasks/{task_id}"
        followed = call(http_event("GET", f"/tasks/{task_id}", stage=stage))
        assert followed["statusCode"] == 200


def test_get_returns_the_stored_record(rt: Runtime) -> None:
    task_id = json_body(call(submit_event("hello")))["taskId"]

    response = call(http_event("GET", f"/tasks/{task_id}"))

    assert response["statusCode"] == 200
    record = json_body(response)
    assert record["taskId"] == task_id
    assert record["message"] == "hello"
    assert record["status"] == "PENDING"
    assert record["history"] == []
    assert record["createdAt"] == record["updatedAt"]
    # internal attributes stay internal
    assert not {"expiresAt", "leaseExpiresAt", "requestHash"} & record.keys()


def test_get_accepts_the_id_in_upper_case(rt: Runtime) -> None:
    task_id = json_body(call(submit_event("hello")))["taskId"]

    response = call(http_event("GET", f"/tasks/{task_id.upper()}"))

    assert response["statusCode"] == 200
    assert json_body(response)["taskId"] == task_id


def test_get_of_an_unknown_task_is_404_json(rt: Runtime) -> None:
    response = call(http_event("GET", f"/tasks/{uuid.uuid4()}"))

    assert "no task" in assert_json_error(response, 404)["error"]


def test_a_message_of_exactly_the_limit_is_accepted(rt: Runtime) -> None:
    response = call(submit_event("x" * MESSAGE_MAX_CHARS))

    assert response["statusCode"] == 202
    assert len(scan_items(rt)) == 1


def test_a_message_with_multibyte_characters_round_trips(rt: Runtime) -> None:
    message = "tâche \U0001f680 " * 10
    task_id = json_body(call(submit_event(message)))["taskId"]

    assert json_body(call(http_event("GET", f"/tasks/{task_id}")))["message"] == message


# -- hostile input: 4xx JSON, nothing stored --------------------------------------------------

HOSTILE_SUBMITS = {
    "malformed JSON": (http_event("POST", "/tasks", body='{"message": "x"'), 400),
    "empty body": (http_event("POST", "/tasks", body=""), 400),
    "whitespace body": (http_event("POST", "/tasks", body="  \n "), 400),
    "no body at all": (
        http_event("POST", "/tasks", headers={"content-type": "application/json"}),
        400,
    ),
    "JSON null": (http_event("POST", "/tasks", body="null"), 422),
    "JSON array": (http_event("POST", "/tasks", body='[{"message": "x"}]'), 422),
    "JSON string": (http_event("POST", "/tasks", body='"SUCCESS"'), 422),
    "message missing": (http_event("POST", "/tasks", body="{}"), 422),
    "message null": (http_event("POST", "/tasks", body='{"message": null}'), 422),
    "message a number": (http_event("POST", "/tasks", body='{"message": 42}'), 422),
    "message an object": (http_event("POST", "/tasks", body='{"message": {"a": 1}}'), 422),
    "message empty": (http_event("POST", "/tasks", body='{"message": ""}'), 422),
    "unknown field": (http_event("POST", "/tasks", body='{"message": "x", "priority": 1}'), 422),
    "message over the limit": (submit_event("x" * (MESSAGE_MAX_CHARS + 1)), 413),
    "body over the limit": (
        http_event("POST", "/tasks", body='{"message": "x"' + " " * api.MAX_BODY_BYTES + "}"),
        413,
    ),
    "form content type": (
        http_event(
            "POST",
            "/tasks",
            body="message=SUCCESS",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        415,
    ),
    "text content type": (
        http_event(
            "POST", "/tasks", body='{"message": "x"}', headers={"content-type": "text/plain"}
        ),
        415,
    ),
    "multipart content type": (
        http_event(
            "POST",
            "/tasks",
            body='--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nx\r\n--b--\r\n',
            headers={"content-type": "multipart/form-data; boundary=b"},
            base64_body=True,
        ),
        415,
    ),
    "NaN is not JSON": (http_event("POST", "/tasks", body='{"message": NaN}'), 400),
    "a 5000-digit number": (
        http_event("POST", "/tasks", body='{"message": ' + "1" * 5000 + "}"),
        400,
    ),
    "deeply nested": (http_event("POST", "/tasks", body="[" * 10_000 + "]" * 10_000), 400),
    "binary body": (http_event("POST", "/tasks", body=b"\xff\xfe\x00", base64_body=True), 400),
    "empty Idempotency-Key": (submit_event("x", headers={"Idempotency-Key": ""}), 400),
    "huge Idempotency-Key": (submit_event("x", headers={"Idempotency-Key": "k" * 1000}), 400),
}


@pytest.mark.parametrize(
    ("event", "status"), HOSTILE_SUBMITS.values(), ids=list(HOSTILE_SUBMITS.keys())
)
def test_hostile_submit_is_a_4xx_json_error_and_stores_nothing(
    rt: Runtime, pipeline: Pipeline, event: dict[str, Any], status: int
) -> None:
    response = call(event)

    assert_json_error(response, status)
    assert scan_items(rt) == []
    assert pipeline.receive() == []


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "one too long"])
def test_a_bad_idempotency_key_is_named_with_its_limit(rt: Runtime, key: str) -> None:
    body = assert_json_error(call(submit_event("x", headers={"Idempotency-Key": key})), 400)

    assert body["error"].startswith("Idempotency-Key must be 1..255 characters"), body
    assert scan_items(rt) == []


@pytest.mark.parametrize(
    "task_id",
    ["not-a-uuid", "1234", "a" * 100_000, "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6", "%00", "🚀"],
    ids=["word", "digits", "huge", "one-short", "nul", "emoji"],
)
def test_get_with_an_id_that_cannot_be_a_task_id_is_400(rt: Runtime, task_id: str) -> None:
    body = assert_json_error(call(http_event("GET", f"/tasks/{task_id}")), 400)

    assert "UUID" in body["error"]
    assert len(response_text := body["error"]) < 200, response_text  # never echoes the input


def test_an_unknown_route_is_404_json(rt: Runtime) -> None:
    assert_json_error(call(http_event("GET", "/jobs")), 404)


def test_a_known_route_with_the_wrong_method_is_405_with_allow(rt: Runtime) -> None:
    # GIVEN every route the OpenAPI document declares
    for path, operations in api.openapi_document()["paths"].items():
        concrete = path.replace("{taskId}", str(uuid.uuid4()))
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - {m.upper() for m in operations}:
            # WHEN it is called with a method it does not have
            response = call(http_event(method, concrete))
            # THEN 405, and Allow lists the methods it has
            assert_json_error(response, 405)
            assert response["headers"]["Allow"] == ", ".join(sorted(m.upper() for m in operations))
    assert scan_items(rt) == []


# -- Idempotency-Key --------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_same_task_and_creates_nothing_more(
    rt: Runtime, pipeline: Pipeline
) -> None:
    first = call(submit_event("SUCCESS", headers={"Idempotency-Key": "order-42"}))
    # the same JSON with other spacing is the same body
    again = call(
        http_event(
            "POST",
            "/tasks",
            body='{ "message" :  "SUCCESS" }',
            headers={"Idempotency-Key": "order-42"},
        )
    )

    assert first["statusCode"] == again["statusCode"] == 202
    assert json_body(again) == json_body(first)
    assert again["headers"]["Location"] == first["headers"]["Location"]
    assert again["headers"][api.REPLAYED_HEADER] == "true"
    assert len(scan_items(rt)) == 1
    assert queued_task_ids(pipeline) == [json_body(first)["taskId"]]


def test_same_idempotency_key_with_a_different_body_is_409_and_changes_nothing(
    rt: Runtime, pipeline: Pipeline
) -> None:
    first = json_body(call(submit_event("SUCCESS", headers={"Idempotency-Key": "order-42"})))

    response = call(submit_event("ERROR", headers={"Idempotency-Key": "order-42"}))

    body = assert_json_error(response, 409)
    assert "different body" in body["error"]
    stored = rt.store.get(first["taskId"])
    assert stored is not None and stored.record.message == "SUCCESS"
    assert len(scan_items(rt)) == 1
    assert len(pipeline.receive()) == 1


def test_different_idempotency_keys_give_different_tasks(rt: Runtime) -> None:
    a = json_body(call(submit_event("SUCCESS", headers={"Idempotency-Key": "a"})))
    b = json_body(call(submit_event("SUCCESS", headers={"Idempotency-Key": "b"})))

    assert a["taskId"] != b["taskId"]
    assert len(scan_items(rt)) == 2


# -- submit is safe ---------------------------------------------------------------------------


def _send_fails(error: Exception, before: Any = None):
    def hook(**_: Any) -> None:
        if before is not None:
            before()
        raise error

    return hook


@pytest.mark.parametrize(
    "error",
    [
        ClientError(
            {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "SendMessage"
        ),
        EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com"),
    ],
    ids=["sqs-5xx", "network"],
)
def test_enqueue_failure_is_accepted_and_the_reconciler_queues_the_task(
    rt: Runtime, pipeline: Pipeline, clock: SimClock, error: Exception
) -> None:
    # GIVEN SQS refuses the message
    refuse = _send_fails(error)
    rt.sqs.meta.events.register("before-call.sqs.SendMessage", refuse)

    # WHEN a task is submitted
    response = call(submit_event("SUCCESS"))

    # THEN it is accepted: the record is stored (a 5xx would invite a duplicate) ...
    assert response["statusCode"] == 202
    task_id = json_body(response)["taskId"]
    assert pipeline.receive() == []
    rt.sqs.meta.events.unregister("before-call.sqs.SendMessage", refuse)
    # ... and the reconciler queues it once it is overdue, so it runs
    run_reconciler_after(clock, rt.settings.policy.recoveryGraceSeconds + 1)
    pipeline.run_until_idle()
    assert record_of(rt, task_id).status == "COMPLETED"


def test_enqueue_that_reports_failure_after_a_worker_started_the_task_is_accepted(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN the send "fails" although the message went out and a worker already claimed it
    def worker_claims_first() -> None:
        (item,) = scan_items(rt)
        task = rt.store.get(item["taskId"]["S"])
        assert task is not None
        rt.store.claim(task.record, 1, rt.clock(), rt.clock())

    rt.sqs.meta.events.register(
        "before-call.sqs.SendMessage",
        _send_fails(
            ClientError({"Error": {"Code": "RequestTimeout"}}, "SendMessage"), worker_claims_first
        ),
    )

    response = call(submit_event("SUCCESS"))

    # THEN the client gets its 202 and the running task is untouched
    assert response["statusCode"] == 202
    stored = rt.store.get(json_body(response)["taskId"])
    assert stored is not None and stored.record.status == "PROCESSING"


@pytest.mark.parametrize("operation", ["PutItem", "GetItem"])
def test_an_outage_of_the_table_is_a_503_that_says_what_to_do(rt: Runtime, operation: str) -> None:
    # GIVEN DynamoDB answers every try with 503 (the SDK's retries included)
    tries = fail_calls(rt.dynamodb, operation)
    event = (
        submit_event("SUCCESS")
        if operation == "PutItem"
        else http_event("GET", f"/tasks/{uuid.uuid4()}")
    )

    # WHEN a client calls  THEN a JSON 503 that tells it how to retry safely, never a 500
    body = assert_json_error(call(event), 503)

    assert "retry" in body["error"]
    assert tries.count == SDK_MAX_ATTEMPTS
    if operation == "PutItem":
        assert "Idempotency-Key" in body["error"]
        assert scan_items(rt) == []  # no try reached the table


# -- a write applied whose reply was lost, a process that died between two writes ---------------


@pytest.mark.parametrize("key", ["order-42", None], ids=["with-key", "without-key"])
def test_a_create_whose_reply_was_lost_is_a_fresh_202_and_the_task_is_queued(
    rt: Runtime, pipeline: Pipeline, key: str | None
) -> None:
    # GIVEN the PutItem is applied but its reply is lost, and botocore retries it
    lost = lose_response(rt.dynamodb, "PutItem")

    # WHEN a task is submitted
    response = call(submit_event("SUCCESS", headers={"Idempotency-Key": key}))

    # THEN it is accepted as new (no "replayed", no 409 about a key never sent) and queued
    assert lost.lost
    assert response["statusCode"] == 202, response["body"]
    assert api.REPLAYED_HEADER not in response["headers"]
    assert queued_task_ids(pipeline) == [json_body(response)["taskId"]]


class ProcessDied(BaseException):
    """The function's process ends here (a timeout, a crash): no handler catches it."""


def test_a_submit_that_died_before_its_enqueue_is_replayed_and_still_runs(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    # GIVEN the api process dies after writing the record and before sending the message
    def die(**_: Any) -> None:
        raise ProcessDied

    rt.sqs.meta.events.register("before-call.sqs.SendMessage", die)
    headers = {"Idempotency-Key": "order-43"}
    with pytest.raises(ProcessDied):
        call(submit_event("SUCCESS", headers=headers))
    rt.sqs.meta.events.unregister("before-call.sqs.SendMessage", die)

    # WHEN the client retries with its key (it saw a 502)
    retry = call(submit_event("SUCCESS", headers=headers))

    # THEN it gets the task, and the reconciler makes sure it runs
    assert retry["statusCode"] == 202
    assert retry["headers"][api.REPLAYED_HEADER] == "true"
    task_id = json_body(retry)["taskId"]
    run_reconciler_after(clock, rt.settings.policy.recoveryGraceSeconds + 1)
    pipeline.run_until_idle()
    assert record_of(rt, task_id).status == "COMPLETED"


def run_reconciler_after(clock: SimClock, seconds: float) -> None:
    clock.advance(seconds)
    reconciler.reconcile(runtime.current())


# -- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_document_lists_both_routes_and_the_request_schema() -> None:
    document = api.openapi_document()

    assert set(document["paths"]) == {"/tasks", "/tasks/{taskId}"}
    post = document["paths"]["/tasks"]["post"]
    assert {"202", "400", "409", "413", "415", "422", "503"} <= set(post["responses"])
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["message"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["message"]["maxLength"] == MESSAGE_MAX_CHARS
    assert schema["properties"]["message"]["minLength"] == 1
    get = document["paths"]["/tasks/{taskId}"]["get"]
    assert get["parameters"][0]["schema"]["format"] == "uuid"
    assert {"200", "400", "404"} <= set(get["responses"])


def _string_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The string branch of a property's schema (an optional field is `anyOf [string, null]`)."""
    branches = schema.get("anyOf", [schema])
    (string_branch,) = [branch for branch in branches if branch.get("type") == "string"]
    return string_branch


def test_openapi_document_gives_task_ids_and_timestamps_their_formats() -> None:
    schemas = api.openapi_document()["components"]["schemas"]
    properties = {
        (model, name): prop
        for model in ("TaskAccepted", "TaskRecord", "AttemptRecord")
        for name, prop in schemas[model]["properties"].items()
    }
    timestamps = {key for key in properties if key[1].endswith("At")}
    # GIVEN the timestamps of the reply and the record (every property named ...At)
    assert {
        ("TaskAccepted", "createdAt"),
        ("TaskRecord", "updatedAt"),
        ("TaskRecord", "nextAttemptAt"),
        ("TaskRecord", "completedAt"),
        ("TaskRecord", "failedAt"),
        ("TaskRecord", "redrivenAt"),
        ("AttemptRecord", "startedAt"),
        ("AttemptRecord", "finishedAt"),
    } <= timestamps
    # THEN each is a date-time string, and every task id a UUID string
    for key in timestamps:
        assert _string_schema(properties[key]).get("format") == "date-time", key
    for model in ("TaskAccepted", "TaskRecord"):
        assert _string_schema(properties[(model, "taskId")]).get("format") == "uuid", model


def test_openapi_document_describes_the_reply_headers_and_the_405() -> None:
    paths = api.openapi_document()["paths"]
    accepted = paths["/tasks"]["post"]["responses"]["202"]

    assert accepted["headers"]["Location"]["required"] is True
    assert accepted["headers"]["Location"]["schema"]["type"] == "string"
    assert accepted["headers"][api.REPLAYED_HEADER]["required"] is False
    assert accepted["headers"][api.REPLAYED_HEADER]["schema"]["enum"] == ["true"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            not_allowed = operation["responses"].get("405")
            assert not_allowed is not None, f"{method} {path} does not document 405"
            assert not_allowed["headers"]["Allow"]["required"] is True
            assert not_allowed["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorReply"
            }


def test_openapi_document_makes_the_idempotency_key_an_optional_string_of_1_to_255() -> None:
    (parameter,) = [
        parameter
        for parameter in api.openapi_document()["paths"]["/tasks"]["post"]["parameters"]
        if parameter["name"].lower() == "idempotency-key"
    ]

    assert parameter["in"] == "header"
    assert parameter["required"] is False
    assert "anyOf" not in parameter["schema"]
    assert parameter["schema"]["type"] == "string"
    assert parameter["schema"]["minLength"] == 1
    assert parameter["schema"]["maxLength"] == api.IDEMPOTENCY_KEY_MAX_CHARS


def test_the_openapi_document_is_served_at_openapi_json(rt: Runtime) -> None:
    response = call(http_event("GET", "/openapi.json"))

    assert response["statusCode"] == 200
    assert json_body(response) == api.openapi_document(server_url="/dev")


def test_every_reference_in_the_openapi_document_resolves_and_every_schema_is_used() -> None:
    document = api.openapi_document()
    text = json.dumps(document)
    schemas = document["components"]["schemas"]

    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', text))

    assert referenced == set(schemas)
    assert "HTTPValidationError" not in schemas  # Powertools' 422 shape is never sent
