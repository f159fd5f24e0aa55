"""What the api refuses, and how it says so.

Every refusal and every failure is one JSON reply, `{"error": "<what is wrong and how to fix it>",
"details"?: [...]}`, with the status the problem deserves (the table is in `functions.api`).

- `refuse_before_routing` judges a request's body once, before routing. Powertools picks a parser
  by Content-Type (JSON, form, multipart) before any route code runs; this API takes only JSON, so
  a body that is not JSON, is empty, or is too large never reaches a parser.
- `parse_json_body` is the strict JSON parser Powertools calls for the bodies that pass.
- `register` maps what Powertools and the routes raise to replies: validation errors, a path or
  method no route has (404/405, derived from the resolver's own routes), AWS outages, bugs.
"""

from __future__ import annotations

import binascii
import json
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from functions.lifecycle import MESSAGE_MAX_CHARS

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.exceptions import NotFoundError

# A body holding a maximal message always fits: 4096 characters of the longest JSON escape
# (`\uXXXX\uXXXX`, 12 bytes) is 48 KiB.
MAX_BODY_BYTES = 64 * 1024
IDEMPOTENCY_KEY_MAX_CHARS = 255

_NOT_A_UUID = "taskId must be a UUID such as 3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"
_BAD_IDEMPOTENCY_KEY = (
    f"Idempotency-Key must be 1..{IDEMPOTENCY_KEY_MAX_CHARS} characters; send one key per task, "
    "or none"
)
_NOT_AN_OBJECT = (
    f'the body must be a JSON object {{"message": "<1..{MESSAGE_MAX_CHARS} characters>"}}'
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


class ErrorReply(BaseModel):
    """Every error reply."""

    # Built on the first error, not at import: a cold start that only accepts tasks never pays.
    model_config = ConfigDict(defer_build=True)

    error: str
    details: list[dict[str, Any]] | None = None


def error_response(error: ApiError) -> Response[ErrorReply]:
    """The reply to `error`, logged: a refusal as info, a failure (5xx) as an error."""
    if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.error("request failed", extra={"status": error.status, "reason": error.message})
    else:
        logger.info("request rejected", extra={"status": error.status, "reason": error.message})
    return _reply(error)


def _reply(error: ApiError) -> Response[ErrorReply]:
    body = ErrorReply(error=error.message, details=error.details)
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json", exclude_none=True),
        headers=error.headers,
    )


# -- the body, judged once, before routing -----------------------------------------------------


def refuse_before_routing(
    app: APIGatewayHttpResolver, event: dict[str, Any]
) -> dict[str, Any] | None:
    """The reply to a request whose route takes a body it cannot take, or None to route it.

    Runs before `app.resolve`, because Powertools reads the body (by its Content-Type) before any
    of this API's code runs. The reply is built by Powertools, as every other reply is."""
    request = APIGatewayProxyEventV2(event)
    route = _route_for(app, request.http_method.upper(), request.path)
    if route is None or not route.dependant.body_params:
        return None
    problem = _body_problem(request)
    if problem is None:
        return None
    return ResponseBuilder(error_response(problem)).build(request)


def _body_problem(request: APIGatewayProxyEventV2) -> ApiError | None:
    """A 415 unless the body is declared JSON, then a 400 if it is not UTF-8 or empty, a 413 if
    it is over `MAX_BODY_BYTES`. Whether it is JSON is for `parse_json_body` to say."""
    problem = _content_type_problem(request.headers.get("content-type", ""))
    if problem is not None:
        return problem
    try:
        body = request.decoded_body
    except (binascii.Error, UnicodeDecodeError):
        return ApiError(HTTPStatus.BAD_REQUEST, "the request body is not UTF-8 text")
    if not body:
        return ApiError(
            HTTPStatus.BAD_REQUEST, 'the request body is empty; send {"message": "<text>"} as JSON'
        )
    if len(body.encode("utf-8", errors="surrogatepass")) > MAX_BODY_BYTES:
        return ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the request body is over {MAX_BODY_BYTES} bytes; a task's message holds at most "
            f"{MESSAGE_MAX_CHARS} characters",
        )
    return None


def _content_type_problem(declared: str) -> ApiError | None:
    """A 415 unless the body is declared JSON (an absent Content-Type is taken as JSON)."""
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return ApiError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {declared[:100]!r} is not supported; send application/json",
        )
    if declared.strip() and not declared.strip().startswith("application/json"):
        # A JSON media type that Powertools would not read as JSON: it does so only when the
        # Content-Type starts with `application/json` as written (not `Application/JSON`, not
        # `application/problem+json`).
        return ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    return None


def parse_json_body(text: str) -> Any:
    """The body deserializer Powertools calls for JSON bodies: strict JSON, an object or null."""
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
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise ApiError(HTTPStatus.BAD_REQUEST, "the request body holds a number too long") from None
    if document is not None and not isinstance(document, dict):
        # Checked here because Powertools would validate the first item of an array against
        # the body model: `[{"message": "x"}]` would pass.
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, _NOT_AN_OBJECT)
    return document


def _reject_constant(name: str) -> Any:
    raise ApiError(HTTPStatus.BAD_REQUEST, f"the request body contains {name}, which is not JSON")


# -- what Powertools and the routes raise -------------------------------------------------------


def register(app: APIGatewayHttpResolver) -> None:
    """Give every way a request can end other than success its reply. Each handler returns its
    reply: Powertools does not pass an exception raised inside one to another."""

    @app.exception_handler(ApiError)
    def _on_api_error(error: ApiError) -> Response[ErrorReply]:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def _on_validation_error(error: RequestValidationError) -> Response[ErrorReply]:
        """Powertools' 422 `{"detail": ...}` becomes our shape, with the status the problem
        deserves."""
        return error_response(_classify(error))

    @app.not_found
    def _on_no_route(_: NotFoundError) -> Response[ErrorReply]:
        request = app.current_event
        return error_response(_no_route(app, request.http_method.upper(), request.path))

    @app.exception_handler([ClientError, BotoCoreError])
    def _on_aws_unavailable(error: Exception) -> Response[ErrorReply]:
        """DynamoDB or SQS did not answer (after the SDK's retries): an outage, not a bug."""
        logger.exception("AWS call failed")
        message = "the task store did not answer; retry in a few seconds"
        if app.current_event.http_method.upper() == "POST":
            message += (
                ". The task may have been stored: a retry with the same Idempotency-Key returns "
                "it if so; without a key, a retry may create a second task"
            )
        return error_response(
            ApiError(HTTPStatus.SERVICE_UNAVAILABLE, message, headers={"Retry-After": "2"})
        )

    @app.exception_handler(Exception)
    def _on_bug(error: Exception) -> Response[ErrorReply]:
        # Not swallowed: logged with its traceback, answered as the 5xx it is.
        logger.exception("unhandled error")
        request_id = app.lambda_context.aws_request_id if app.lambda_context else "unknown"
        return _reply(
            ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"internal error (request {request_id}); it has been logged",
            )
        )


def _classify(error: RequestValidationError) -> ApiError:
    problems = [_describe(item) for item in error.errors()]
    statuses = {status for status, _, _ in problems}
    # The most specific status wins: too large, then malformed, then unprocessable.
    status = next(
        (s for s in (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.BAD_REQUEST) if s in statuses),
        HTTPStatus.UNPROCESSABLE_ENTITY,
    )
    return ApiError(
        status,
        "; ".join(dict.fromkeys(text for _, text, _ in problems)),
        details=[detail for _, _, detail in problems],
    )


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
        return HTTPStatus.BAD_REQUEST, _NOT_A_UUID, detail
    if source == "header":  # the one header a route reads
        return HTTPStatus.BAD_REQUEST, _BAD_IDEMPOTENCY_KEY, detail
    if not field or kind in {"model_attributes_type", "dict_type", "model_type"}:
        return HTTPStatus.UNPROCESSABLE_ENTITY, _NOT_AN_OBJECT, detail
    if field == "message" and kind == "string_too_long":
        too_long = f"message is longer than {MESSAGE_MAX_CHARS} characters"
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_long, detail
    if field == "message" and kind in _MESSAGE_PROBLEMS:
        return HTTPStatus.UNPROCESSABLE_ENTITY, _MESSAGE_PROBLEMS[kind], detail
    if kind == "extra_forbidden":
        extra = f"{field} is not a field of a task; send only message"
        return HTTPStatus.UNPROCESSABLE_ENTITY, extra, detail
    return HTTPStatus.UNPROCESSABLE_ENTITY, f"{field}: {item.get('msg', kind)}", detail


# -- routing: 404 and 405 from the resolver's own routes ---------------------------------------


def _routes(app: APIGatewayHttpResolver) -> list[Route]:
    """The resolver's routes, in the order it tries them. Powertools offers no public view of
    them; `tests/functions/test_api_structure.py` checks this one against the routes declared."""
    return [*app._static_routes, *app._dynamic_routes]


def _route_for(app: APIGatewayHttpResolver, method: str, path: str) -> Route | None:
    """The route Powertools will call for `method path`, found as it finds it."""
    return next(
        (route for route in _routes(app) if route.method == method and route.rule.match(path)),
        None,
    )


def _no_route(app: APIGatewayHttpResolver, method: str, path: str) -> ApiError:
    """404 for a path no route has, 405 (with `Allow`) for a method its routes do not have."""
    methods_by_rule: dict[str, set[str]] = {}
    for route in _routes(app):
        methods_by_rule.setdefault(route.path, set()).add(route.method)
    for rule, methods in methods_by_rule.items():
        if re.fullmatch(_any_parameter_value(rule), path):
            if method in methods:
                # The route exists but Powertools' router refused the path parameter's
                # characters (e.g. an emoji): the id cannot be a task id.
                return ApiError(HTTPStatus.BAD_REQUEST, _NOT_A_UUID)
            allowed = ", ".join(sorted(methods))
            return ApiError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {path}; use {allowed}",
                headers={"Allow": allowed},
            )
    routes = [f"{r.method} {r.openapi_path}" for r in _routes(app) if r.include_in_schema]
    listed = f"{', '.join(routes[:-1])} and {routes[-1]}" if len(routes) > 1 else "".join(routes)
    return ApiError(HTTPStatus.NOT_FOUND, f"no route {method} {path}; this API has {listed}")


def _any_parameter_value(rule: str) -> str:
    """A pattern for the paths of `rule` (`/tasks/<taskId>`) with any value in each parameter,
    including values Powertools' router refuses."""
    return "[^/]+".join(re.escape(part) for part in re.split(r"<\w+>", rule))
