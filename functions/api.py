"""The HTTP API (API Gateway HTTP API, payload format 2.0): submit a task, read a task.

    POST /tasks           {"message": "<1..4096 chars>"} -> 202 {"taskId","status","createdAt"}
    GET  /tasks/{taskId}   -> 200 the task record | 404 unknown | 400 not a UUID
    GET  /openapi.json     -> this API's OpenAPI document (generated from the same models)

Every error is JSON `{"error": "<what is wrong and how to fix it>"}` (plus `details` for
validation errors). Client mistakes get a 4xx and store nothing:

    400  malformed JSON, empty body, body not UTF-8, a taskId that is not a UUID, a bad header
    404  unknown task or route          405  known route, wrong method (with `Allow`)
    409  Idempotency-Key reused with a different body
    413  body over 64 KiB or message over 4096 characters
    415  a Content-Type other than application/json
    422  well-formed JSON that is not {"message": "<text>"} (array, missing/null/number/empty
         message, unknown fields)

503 means the task store did not answer: the task may or may not be stored (a retry with the
same Idempotency-Key tells which). A 202 means the task is stored and will run: if its message
could not be queued, the reconciler queues it after `recoveryGraceSeconds`. 500 is a bug.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from functions import runtime
from functions.lifecycle import (
    MESSAGE_MAX_CHARS,
    TaskId,
    TaskRecord,
    TaskStatus,
    Timestamp,
    first_check_at,
    new_task,
)
from functions.store import StoredTask, TaskAlreadyExists

# A body holding a maximal message always fits: 4096 characters of the longest JSON escape
# (`\uXXXX\uXXXX`, 12 bytes) is 48 KiB.
MAX_BODY_BYTES = 64 * 1024
IDEMPOTENCY_KEY_MAX_CHARS = 255
# Task ids for an Idempotency-Key are uuid5(key) in this namespace: the same key always names
# the same task, so a repeat is caught by the table's `attribute_not_exists(taskId)` condition.
IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fault-tolerant-tasks:idempotency-key")
REPLAYED_HEADER = "Idempotent-Replayed"

# Route table for telling 405 from 404; a test checks it against the OpenAPI document.
ROUTE_METHODS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (re.compile(r"/tasks"), frozenset({"POST"})),
    (re.compile(r"/tasks/[^/]+"), frozenset({"GET"})),
    (re.compile(r"/openapi\.json"), frozenset({"GET"})),
)

logger = Logger()


class ApiError(Exception):
    """A reply other than success, already decided: status, message, extra headers."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}


def _parse_json_body(text: str) -> Any:
    """The body deserializer Powertools calls for JSON bodies: size-capped and strict."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_BODY_BYTES:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the request body is over {MAX_BODY_BYTES} bytes; a task's message holds at most "
            f"{MESSAGE_MAX_CHARS} characters",
        )
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"the request body is not valid JSON ({error.msg} at character {error.pos}); "
            'send {"message": "<text>"}',
        ) from None
    except RecursionError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "the request body is nested too deeply") from None
    if document is not None and not isinstance(document, dict):
        # Checked here because Powertools would validate the first item of an array against
        # the body model: `[{"message": "x"}]` would pass.
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, _NOT_AN_OBJECT)
    return document


_NOT_AN_OBJECT = (
    f'the body must be a JSON object {{"message": "<1..{MESSAGE_MAX_CHARS} characters>"}}'
)


def _reject_constant(name: str) -> Any:
    raise ApiError(HTTPStatus.BAD_REQUEST, f"the request body contains {name}, which is not JSON")


app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_parse_json_body)


# -- models: the OpenAPI document is generated from these --------------------------------------


class SubmitTask(BaseModel):
    """The body of `POST /tasks`."""

    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MESSAGE_MAX_CHARS,
            description=(
                'What the task works on. "SUCCESS" always succeeds, "ERROR" always fails; '
                "anything else fails each attempt with the stack's errorRate."
            ),
            examples=["SUCCESS"],
        ),
    ]

    def fingerprint(self) -> str:
        """SHA-256 of the canonical body: equal for equal requests, whatever their spacing."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class TaskAccepted(BaseModel):
    """The reply to an accepted submit (202)."""

    taskId: TaskId
    status: TaskStatus
    createdAt: Timestamp


class ErrorReply(BaseModel):
    """Every error reply."""

    error: str
    details: list[dict[str, Any]] | None = None


_ERRORS = {
    status.value: {"description": status.phrase, "content": _content}
    for status in (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.METHOD_NOT_ALLOWED,
        HTTPStatus.CONFLICT,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        HTTPStatus.UNPROCESSABLE_ENTITY,
        HTTPStatus.SERVICE_UNAVAILABLE,
    )
    for _content in [{"application/json": {"model": ErrorReply}}]
}


# The 405 is the reply to a method the path does not have (see `_on_no_route`); it is listed on
# every operation so the document says which status and header that call gets.
_ERRORS[HTTPStatus.METHOD_NOT_ALLOWED.value]["headers"] = {
    "Allow": {
        "description": "The methods this path has, comma-separated",
        "required": True,
        "schema": {"type": "string"},
    }
}

_ACCEPTED_HEADERS = {
    "Location": {
        "description": "Where to read the task: `GET` this path (it includes the stage)",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    },
    REPLAYED_HEADER: {
        "description": "`true` on the reply to a repeated Idempotency-Key; absent otherwise",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    },
}


# An absent header is None to the handler, but a header is never null on the wire: documented as
# the optional string it is, not `anyOf [string, null]`. The `Header(...)` constraints validate.
_OptionalHeaderText = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_CHARS}),
]


def _error_responses(*statuses: HTTPStatus) -> dict[int, dict[str, Any]]:
    """The documented error replies of an operation: `statuses` and, for every operation, 405."""
    return {
        status.value: _ERRORS[status.value] for status in (*statuses, HTTPStatus.METHOD_NOT_ALLOWED)
    }


# -- routes -----------------------------------------------------------------------------------


@app.post(
    "/tasks",
    summary="Submit a task",
    description=(
        f"Accepts a task for asynchronous processing. The body is at most {MAX_BODY_BYTES} bytes "
        f"and `message` 1..{MESSAGE_MAX_CHARS} characters. With an `Idempotency-Key`, a repeat "
        "with the same body returns the same task; a different body is a 409. A 202 means the "
        "task is stored and will run; a 503 means the store did not answer, and a retry with the "
        "same key tells whether the task was kept."
    ),
    responses={
        202: {
            "description": "Accepted; poll the Location",
            "headers": _ACCEPTED_HEADERS,
            "content": {"application/json": {"model": TaskAccepted}},
        },
        **_error_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.CONFLICT,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
    },
)
def submit_task(
    task: SubmitTask,
    idempotency_key: Annotated[
        _OptionalHeaderText,
        Header(
            alias="idempotency-key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_CHARS,
            description="Makes retries safe: the same key and body always give the same task",
        ),
    ] = None,
) -> Response[TaskAccepted]:
    _require_json_content_type()
    rt = runtime.current()
    now = rt.clock()
    fingerprint = task.fingerprint()
    task_id = str(
        uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key) if idempotency_key else uuid.uuid4()
    )
    record = new_task(task_id, task.message, rt.settings.policy, now)
    try:
        rt.store.create(
            record,
            now,
            check_after=first_check_at(now, rt.settings.policy),
            request_hash=fingerprint if idempotency_key else None,
        )
    except TaskAlreadyExists:
        return _replay(rt.store.get(task_id), fingerprint)
    logger.append_keys(taskId=task_id)
    try:
        rt.queue.enqueue(task_id)
    except (ClientError, BotoCoreError):
        # The task is stored, so it is accepted: the reconciler finds it PENDING with no
        # progress and queues it after the grace period. A 5xx here would invite a retry that,
        # without an Idempotency-Key, creates a second task.
        logger.exception("enqueue failed; the reconciler will queue the task")
    logger.info("task accepted")
    return _accepted(record.taskId, record.createdAt)


@app.get(
    "/tasks/<taskId>",
    summary="Read a task",
    responses={
        200: {"description": "The task", "content": {"application/json": {"model": TaskRecord}}},
        **_error_responses(
            HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE
        ),
    },
)
def get_task(
    taskId: Annotated[uuid.UUID, Path(description="The id `POST /tasks` returned")],
) -> Response[TaskRecord]:
    task_id = str(taskId)  # canonical lowercase form, as stored
    stored = runtime.current().store.get(task_id)
    if stored is None:
        raise ApiError(
            HTTPStatus.NOT_FOUND, f"no task {task_id}; check the id POST /tasks returned"
        )
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=stored.record.model_dump(mode="json", exclude_none=True),
    )


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[dict[str, Any]]:
    # A tool that loads the document from this URL (a fuzzer, Swagger UI, a client generator)
    # resolves the paths against `servers`: behind a named stage that must be the stage, or it
    # would call /tasks instead of /dev/tasks and meet the gateway's own 404.
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=openapi_document(server_url=_stage_prefix() or "/"),
    )


def openapi_document(server_url: str = "/") -> dict[str, Any]:
    """This API's OpenAPI document, generated from the routes and models above, its paths
    relative to `server_url` (the stage prefix when served). A new dict on every call."""
    document = json.loads(_generated_openapi_json())
    document["servers"] = [{"url": server_url}]
    return document


@functools.cache
def _generated_openapi_json() -> str:
    """The document as JSON text, generated on first use and only once: generating it imports
    Powertools' OpenAPI models and schema generator, which no other route needs, so a cold start
    that serves tasks never pays for it."""
    document = json.loads(
        app.get_openapi_json_schema(
            title="Fault-tolerant tasks",
            version="1.0.0",
            description=__doc__.split("\n\n")[0],
        )
    )
    return json.dumps(_without_default_validation_reply(document))


def _without_default_validation_reply(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 422 `{"detail": ...}` on every route; this API never sends
    it (validation errors become `ErrorReply`), so drop it where a route did not declare 422."""
    default_ref = "#/components/schemas/HTTPValidationError"
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            reply = operation.get("responses", {}).get("422", {})
            if reply.get("content", {}).get("application/json", {}).get("schema") == {
                "$ref": default_ref
            }:
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    while unused := [
        name
        for name in schemas
        if f'"#/components/schemas/{name}"'
        not in json.dumps({**document, "components": {"schemas": _others(schemas, name)}})
    ]:
        for name in unused:
            del schemas[name]
    return document


def _others(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    return {other: schema for other, schema in schemas.items() if other != name}


# -- replies ----------------------------------------------------------------------------------


def _accepted(task_id: str, created_at: str, *, replayed: bool = False) -> Response[TaskAccepted]:
    headers = {"Location": _task_location(task_id)}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    body = TaskAccepted(taskId=task_id, status=TaskStatus.PENDING, createdAt=created_at)
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json"),
        headers=headers,
    )


def _task_location(task_id: str) -> str:
    """The task's URL path as this client reaches it: behind a named stage the path starts with
    it (`/dev/tasks/...`), so a client can follow the Location as is."""
    return f"{_stage_prefix()}/tasks/{task_id}"


def _stage_prefix() -> str:
    """What the request's path has before the routed path: `/dev` behind the dev stage, empty
    behind `$default`."""
    raw_path, routed_path = app.current_event.raw_path, app.current_event.path
    return raw_path[: len(raw_path) - len(routed_path)] if raw_path.endswith(routed_path) else ""


def _replay(existing: StoredTask | None, fingerprint: str) -> Response[TaskAccepted]:
    """A repeat of an `Idempotency-Key`: the original reply if the body matches."""
    if existing is None:
        # The first request with this key is being undone right now (its enqueue failed).
        raise ApiError(
            HTTPStatus.CONFLICT, "a request with this Idempotency-Key is in progress; retry it"
        )
    if existing.request_hash != fingerprint:
        raise ApiError(
            HTTPStatus.CONFLICT,
            "this Idempotency-Key was already used with a different body; use a new key for a "
            "new task",
            details=[{"taskId": existing.record.taskId}],
        )
    logger.info("idempotent repeat", extra={"taskId": existing.record.taskId})
    return _accepted(existing.record.taskId, existing.record.createdAt, replayed=True)


def _error(error: ApiError) -> Response[ErrorReply]:
    body = ErrorReply(error=error.message, details=error.details)
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json", exclude_none=True),
        headers=error.headers,
    )


def _require_json_content_type() -> None:
    problem = _content_type_problem()
    if problem is not None:
        raise problem


def _content_type_problem() -> ApiError | None:
    """A 415 unless the body is declared JSON (an absent Content-Type is taken as JSON)."""
    declared = app.current_event.headers.get("content-type", "")
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return ApiError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {declared[:100]!r} is not supported; send application/json",
        )
    return None


# -- errors: everything becomes {"error": ...} ------------------------------------------------


@app.exception_handler(ApiError)
def _on_api_error(error: ApiError) -> Response[ErrorReply]:
    if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.error("request failed", extra={"status": error.status, "reason": error.message})
    else:
        logger.info("request rejected", extra={"status": error.status, "reason": error.message})
    return _error(error)


# Exception handlers must return their reply: Powertools does not route an exception raised
# inside one to another handler.


@app.exception_handler(RequestUnsupportedContentType)
def _on_unsupported_content_type(_: RequestUnsupportedContentType) -> Response[ErrorReply]:
    return _on_api_error(
        _content_type_problem()
        or ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    )


@app.exception_handler(RequestValidationError)
def _on_validation_error(error: RequestValidationError) -> Response[ErrorReply]:
    """Powertools' 422 `{"detail": ...}` becomes our shape, with the status the problem
    deserves."""
    return _on_api_error(_classify(error))


def _classify(error: RequestValidationError) -> ApiError:
    if app.current_event.http_method.upper() == "POST":
        problem = _content_type_problem()
        if problem is not None:
            return problem
        if not (app.current_event.decoded_body or "").strip():
            return ApiError(
                HTTPStatus.BAD_REQUEST,
                'the request body is empty; send {"message": "<text>"} as JSON',
            )
    problems = [_describe(item) for item in error.errors()]
    statuses = {status for status, _, _ in problems}
    # The most specific status wins: too large, then malformed, then unprocessable.
    status = next(
        candidate
        for candidate in (
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.UNPROCESSABLE_ENTITY,
        )
        if candidate in statuses or candidate == HTTPStatus.UNPROCESSABLE_ENTITY
    )
    return ApiError(
        status,
        "; ".join(dict.fromkeys(text for _, text, _ in problems)),
        details=[detail for _, _, detail in problems],
    )


_NOT_A_UUID = "taskId must be a UUID such as 3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"
_MESSAGE_PROBLEMS = {
    "missing": 'message is required: send {"message": "<text>"}',
    "string_type": f"message must be a JSON string of 1..{MESSAGE_MAX_CHARS} characters",
    "string_too_short": "message must not be empty",
}


def _describe(item: dict[str, Any]) -> tuple[HTTPStatus, str, dict[str, Any]]:
    """One validation problem: its status, a sentence, and a detail without the raw input."""
    location = [str(part) for part in item.get("loc", ())]
    source, field = (location[0], ".".join(location[1:])) if location else ("body", "")
    kind = str(item.get("type", ""))
    detail = {"in": source, "field": field or None, "type": kind}
    if source == "path":
        return (
            HTTPStatus.BAD_REQUEST,
            _NOT_A_UUID,
            detail,
        )
    if source == "header":
        return (
            HTTPStatus.BAD_REQUEST,
            f"header {field}: {item.get('msg', 'invalid')} (1..{IDEMPOTENCY_KEY_MAX_CHARS} chars)",
            detail,
        )
    if not field or kind in {"model_attributes_type", "dict_type", "model_type"}:
        return (
            HTTPStatus.UNPROCESSABLE_ENTITY,
            _NOT_AN_OBJECT,
            detail,
        )
    if field == "message" and kind == "string_too_long":
        return (
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"message is longer than {MESSAGE_MAX_CHARS} characters",
            detail,
        )
    if field == "message" and kind in _MESSAGE_PROBLEMS:
        return HTTPStatus.UNPROCESSABLE_ENTITY, _MESSAGE_PROBLEMS[kind], detail
    if kind == "extra_forbidden":
        return (
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{field} is not a field of a task; send only message",
            detail,
        )
    return HTTPStatus.UNPROCESSABLE_ENTITY, f"{field}: {item.get('msg', kind)}", detail


@app.exception_handler(UnicodeDecodeError)
def _on_undecodable_body(_: UnicodeDecodeError) -> Response[ErrorReply]:
    return _on_api_error(ApiError(HTTPStatus.BAD_REQUEST, "the request body is not UTF-8 text"))


@app.exception_handler(ValueError)
def _on_value_error(error: ValueError) -> Response[ErrorReply]:
    """Powertools parses a multipart body before any route code runs and raises a bare
    ValueError for `Content-Type: multipart/form-data` without a boundary: the client's mistake,
    a 415 like any other body that is not JSON. Any other ValueError is a bug."""
    problem = _content_type_problem()
    if problem is not None and app.current_event.http_method.upper() == "POST":
        return _on_api_error(problem)
    return _on_bug(error)


@app.not_found
def _on_no_route(_: NotFoundError) -> Response[ErrorReply]:
    method = app.current_event.http_method.upper()
    path = app.current_event.path
    for pattern, methods in ROUTE_METHODS:
        if pattern.fullmatch(path):
            if method in methods:
                # The route exists but Powertools' router refused the path parameter's
                # characters (e.g. an emoji): the id cannot be a task id.
                return _on_api_error(ApiError(HTTPStatus.BAD_REQUEST, _NOT_A_UUID))
            allowed = ", ".join(sorted(methods))
            return _on_api_error(
                ApiError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{method} is not allowed on {path}; use {allowed}",
                    headers={"Allow": allowed},
                )
            )
    return _on_api_error(
        ApiError(
            HTTPStatus.NOT_FOUND,
            f"no route {method} {path}; this API has POST /tasks and GET /tasks/{{taskId}}",
        )
    )


@app.exception_handler(ClientError)
@app.exception_handler(BotoCoreError)
def _on_aws_unavailable(error: Exception) -> Response[ErrorReply]:
    """DynamoDB or SQS did not answer (after the SDK's retries): an outage, not a bug."""
    logger.exception("AWS call failed")
    message = "the task store did not answer; retry in a few seconds"
    if app.current_event.http_method.upper() == "POST":
        message += (
            ". The task may have been stored: a retry with the same Idempotency-Key returns it "
            "if so; without a key, a retry may create a second task"
        )
    return _on_api_error(
        ApiError(HTTPStatus.SERVICE_UNAVAILABLE, message, headers={"Retry-After": "2"})
    )


@app.exception_handler(Exception)
def _on_bug(error: Exception) -> Response[ErrorReply]:
    # Not swallowed: logged with its traceback, answered as the 5xx it is.
    logger.exception("unhandled error")
    request_id = app.lambda_context.aws_request_id if app.lambda_context else "unknown"
    return _error(
        ApiError(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            f"internal error (request {request_id}); it has been logged",
        )
    )


# -- the Lambda entry point -------------------------------------------------------------------


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
