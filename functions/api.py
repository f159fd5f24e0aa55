"""The HTTP API (API Gateway HTTP API, payload format 2.0): submit a task, read a task.

    POST /tasks           {"message": "<1..4096 chars>"} -> 202 {"taskId","status","createdAt"}
    GET  /tasks/{taskId}   -> 200 the task record | 404 unknown | 400 not a UUID
    GET  /openapi.json     -> this API's OpenAPI document (generated from the same models)

Callers (`functions.callers`): with `apiAuth: jwt` API Gateway has already refused a request
without a valid token (401) or without the route's scope (403); the function reads the caller
from the verified claims. Each task belongs to its caller: another caller's task is a 404 like an
unknown id, and an Idempotency-Key names a task of its caller only.

Every error is JSON `{"error": "<what is wrong and how to fix it>"}` (plus `details` for
validation errors). Client mistakes get a 4xx and store nothing:

    400  malformed JSON, empty body, body not UTF-8, a taskId that is not a UUID, an
         Idempotency-Key that is empty or over 255 characters
    401  a task route without verified token claims on a stack that authenticates (the
         function's own guard; API Gateway normally refuses such a request first)
    404  unknown task (or another caller's), unknown route
    405  known route, wrong method (with `Allow`)
    409  Idempotency-Key reused with a different body
    413  body over 64 KiB or message over 4096 characters
    415  a Content-Type other than application/json
    422  well-formed JSON that is not {"message": "<text>"} (array, missing/null/number/empty
         message, unknown fields)

503 means the task store did not answer: the task may or may not be stored (a retry with the
same Idempotency-Key tells which). A 202 means the task is stored and will run: if its message
could not be queued, the reconciler queues it after `recoveryGraceSeconds`. 500 is a bug.

The routes below parse (Powertools validates against the models), call the domain, and format.
Judging the body before routing, and mapping every error to its reply, is `functions.api_errors`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from functions import api_errors, callers, runtime
from functions.api_errors import (
    IDEMPOTENCY_KEY_MAX_CHARS,
    MAX_BODY_BYTES,
    ApiError,
    ErrorReply,
    parse_json_body,
    refuse_before_routing,
)
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

REPLAYED_HEADER = "Idempotent-Replayed"

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=parse_json_body)
api_errors.register(app)


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


# An absent header is None to the handler, but a header is never null on the wire: documented as
# the optional string it is, not `anyOf [string, null]`. The `Header(...)` constraints validate.
_OptionalHeaderText = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_CHARS}),
]

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


def _json_reply(description: str, model: type[BaseModel], **extra: Any) -> dict[str, Any]:
    """A documented reply whose body is `model` as JSON (`extra`: e.g. its `headers`)."""
    return {"description": description, **extra, "content": {"application/json": {"model": model}}}


def _error_replies(*statuses: int) -> dict[int, dict[str, Any]]:
    """The documented error replies of an operation: `statuses`, and 405 with its `Allow` header
    (every path answers a method it does not have with a 405)."""
    replies = {status: _json_reply(HTTPStatus(status).phrase, ErrorReply) for status in statuses}
    replies[HTTPStatus.METHOD_NOT_ALLOWED.value] = {
        **_json_reply(HTTPStatus.METHOD_NOT_ALLOWED.phrase, ErrorReply),
        "headers": {
            "Allow": {
                "description": "The methods this path has, comma-separated",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    }
    return replies


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
        202: _json_reply("Accepted; poll the Location", TaskAccepted, headers=_ACCEPTED_HEADERS),
        **_error_replies(400, 409, 413, 415, 422, 503),
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
    rt = runtime.current()
    owner = _caller(rt)
    now = rt.clock()
    fingerprint = task.fingerprint()
    task_id = (
        callers.idempotent_task_id(owner, idempotency_key) if idempotency_key else str(uuid.uuid4())
    )
    record = new_task(task_id, task.message, rt.settings.policy, now)
    try:
        rt.store.create(
            record,
            now,
            check_after=first_check_at(now, rt.settings.policy),
            owner=owner,
            request_hash=fingerprint if idempotency_key else None,
        )
    except TaskAlreadyExists:
        return _replay(rt.store.get(task_id), owner, fingerprint)
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
    responses={200: _json_reply("The task", TaskRecord), **_error_replies(400, 404, 503)},
)
def get_task(
    taskId: Annotated[uuid.UUID, Path(description="The id `POST /tasks` returned")],
) -> Response[TaskRecord]:
    rt = runtime.current()
    owner = _caller(rt)
    task_id = str(taskId)  # canonical lowercase form, as stored
    stored = rt.store.get(task_id)
    # Another caller's task is answered exactly like one that does not exist.
    if stored is None or _owner_of(stored) != owner:
        raise ApiError(
            HTTPStatus.NOT_FOUND, f"no task {task_id}; check the id POST /tasks returned"
        )
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=stored.record.to_json(),
    )


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[dict[str, Any]]:
    # A tool that loads the document from this URL (a fuzzer, Swagger UI, a client generator)
    # resolves the paths against `servers`: behind a named stage that must be the stage, or it
    # would call /tasks instead of /dev/tasks and meet the gateway's own 404. It declares the
    # bearer token only where the stack asks for one.
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=openapi_document(
            server_url=_stage_prefix() or "/",
            authenticated=runtime.current().settings.api_auth == "jwt",
        ),
    )


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


def _caller(rt: runtime.Runtime) -> str:
    """The owner of this request (see `functions.callers`)."""
    claims = app.current_event.request_context.authorizer.jwt_claim
    try:
        return callers.owner_of(rt.settings.api_auth, claims)
    except callers.Unauthenticated:
        raise ApiError(
            HTTPStatus.UNAUTHORIZED,
            "this API needs a bearer token: send `Authorization: Bearer <token>` (`python -m "
            "taskctl token` prints one for the stack's own app client)",
        ) from None


def _owner_of(stored: StoredTask) -> str:
    # A task stored before tasks had owners was submitted to the open API.
    return stored.owner or callers.ANONYMOUS_OWNER


def _replay(existing: StoredTask | None, owner: str, fingerprint: str) -> Response[TaskAccepted]:
    """A repeat of an `Idempotency-Key`: the original reply if the body matches. Its id is
    derived from the owner, so the task is the caller's own; were it not (a task stored before
    ids were scoped), the reply would say nothing about it."""
    if existing is None:
        # Its task existed a moment ago and is gone now (TTL deleted it, finished): a retry
        # then creates it anew.
        raise ApiError(
            HTTPStatus.CONFLICT, "a request with this Idempotency-Key is in progress; retry it"
        )
    if _owner_of(existing) != owner:
        raise ApiError(
            HTTPStatus.CONFLICT,
            "this Idempotency-Key cannot be used; use a new key for a new task",
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


def _task_location(task_id: str) -> str:
    """The task's URL path as this client reaches it: behind a named stage the path starts with
    it (`/dev/tasks/...`), so a client can follow the Location as is."""
    return f"{_stage_prefix()}/tasks/{task_id}"


def _stage_prefix() -> str:
    """What the request's path has before the routed path: `/dev` behind the dev stage, empty
    behind `$default`."""
    raw_path, routed_path = app.current_event.raw_path, app.current_event.path
    return raw_path[: len(raw_path) - len(routed_path)] if raw_path.endswith(routed_path) else ""


# -- the OpenAPI document ---------------------------------------------------------------------


# The scope each task operation needs (the JWT authorizer's route scopes, components/task_api.py).
OPERATION_SCOPES = {("/tasks", "post"): "tasks/write", ("/tasks/{taskId}", "get"): "tasks/read"}
SECURITY_SCHEME = "bearerToken"
# API Gateway's own reply to a request its JWT authorizer refuses (not this API's ErrorReply).
_GATEWAY_DENIAL = {
    "type": "object",
    "properties": {"message": {"type": "string", "enum": ["Unauthorized", "Forbidden"]}},
    "required": ["message"],
}


def openapi_document(server_url: str = "/", *, authenticated: bool = True) -> dict[str, Any]:
    """This API's OpenAPI document, generated from the routes and models above, its paths
    relative to `server_url` (the stage prefix when served), and, when `authenticated`
    (`apiAuth: jwt`), the bearer token and scope each task operation needs, with API Gateway's
    401 and 403. A new dict on every call."""
    document = json.loads(_generated_openapi_json())
    document["servers"] = [{"url": server_url}]
    if authenticated:
        _declare_bearer_token(document)
    return document


def _declare_bearer_token(document: dict[str, Any]) -> None:
    document.setdefault("components", {})["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token of the stack's issuer (its own Cognito user pool unless the "
                "stack names another): `python -m taskctl token` prints one. API Gateway checks "
                "it before the function runs."
            ),
        }
    }
    denial = {"content": {"application/json": {"schema": _GATEWAY_DENIAL}}}
    for (path, method), scope in OPERATION_SCOPES.items():
        operation = document["paths"][path][method]
        # OpenAPI 3.1: a scheme other than oauth2 may list the roles it needs, here the scope.
        operation["security"] = [{SECURITY_SCHEME: [scope]}]
        operation["responses"]["401"] = {
            "description": "No token, or one that is malformed, expired, badly signed, or for "
            "another issuer or audience (API Gateway's reply; the function's own, in the API's "
            "error shape, should a request ever reach it without verified claims)",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [_GATEWAY_DENIAL, {"$ref": f"{_SCHEMA_REF}ErrorReply"}]}
                }
            },
        }
        operation["responses"]["403"] = {
            "description": f"The token lacks the scope {scope} (API Gateway's reply)",
            **denial,
        }


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


_SCHEMA_REF = "#/components/schemas/"


def _without_default_validation_reply(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 422 `{"detail": ...}` on every route; this API never sends
    it (validation errors become `ErrorReply`), so drop it where a route did not declare 422,
    then every schema nothing refers to any more."""
    default_reply = {"$ref": f"{_SCHEMA_REF}HTTPValidationError"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            reply = operation.get("responses", {}).get("422", {})
            if reply.get("content", {}).get("application/json", {}).get("schema") == default_reply:
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending = list(_schema_refs({k: v for k, v in document.items() if k != "components"}))
    while pending:
        if (name := pending.pop()) not in used and name in schemas:
            used.add(name)
            pending.extend(_schema_refs(schemas[name]))
    for name in [name for name in schemas if name not in used]:
        del schemas[name]
    return document


def _schema_refs(node: Any) -> Iterator[str]:
    """The names of the schemas `node` refers to (`{"$ref": "#/components/schemas/<name>"}`)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            yield ref.removeprefix(_SCHEMA_REF)
        for value in node.values():
            yield from _schema_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_refs(item)


# -- the Lambda entry point -------------------------------------------------------------------


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refusal = refuse_before_routing(app, event)
    return refusal if refusal is not None else app.resolve(event, context)
