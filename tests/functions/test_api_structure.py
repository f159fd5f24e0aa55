"""How the api is built: 404, 405 and `Allow` come from the resolver's own routes, a request body
is judged once before routing, and the OpenAPI document keeps exactly the schemas it uses.

The contract clients see is tested in test_api.py; these tests pin the structure that keeps it
true when a route is added."""

from __future__ import annotations

from typing import Any

import pytest
from aws_harness import FakeLambdaContext, http_event, json_body, scan_items
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel

from functions import api, api_errors
from functions.runtime import Runtime


def resolver_with_the_error_mapping() -> APIGatewayHttpResolver:
    """A resolver of its own (the api's is left alone), mapping errors as the api does."""
    app = APIGatewayHttpResolver(
        enable_validation=True, json_body_deserializer=api_errors.parse_json_body
    )
    api_errors.register(app)
    return app


def call(app: APIGatewayHttpResolver, method: str, path: str, **event: Any) -> dict[str, Any]:
    """`method path` as the api's handler takes it: the body judged, then routed."""
    request = http_event(method, path, **event)
    refusal = api_errors.refuse_before_routing(app, request)
    return refusal if refusal is not None else app.resolve(request, FakeLambdaContext())


class Thing(BaseModel):
    name: str


# -- 404 and 405 ------------------------------------------------------------------------------


def test_adding_a_route_changes_allow_and_the_404_without_editing_a_table() -> None:
    # GIVEN a resolver with one route on /things/<thingId>
    app = resolver_with_the_error_mapping()

    @app.get("/things/<thingId>")
    def read_thing(thingId: str) -> dict[str, str]:
        return {"thingId": thingId}

    assert call(app, "DELETE", "/things/1")["headers"]["Allow"] == "GET"

    # WHEN routes are added: another method on that path, and a new path
    @app.delete("/things/<thingId>")
    def remove_thing(thingId: str) -> dict[str, str]:
        return {"thingId": thingId}

    @app.post("/things")
    def create_thing(thing: Thing) -> dict[str, str]:
        return thing.model_dump()

    # THEN the 405 for a third method lists both methods, the new path has its own Allow ...
    not_allowed = call(app, "PUT", "/things/1")
    assert not_allowed["statusCode"] == 405
    assert not_allowed["headers"]["Allow"] == "DELETE, GET"
    assert json_body(not_allowed)["error"] == "PUT is not allowed on /things/1; use DELETE, GET"
    assert call(app, "GET", "/things")["headers"]["Allow"] == "POST"
    # ... and the 404 names every route
    unknown = call(app, "GET", "/widgets")
    assert unknown["statusCode"] == 404
    assert json_body(unknown)["error"] == (
        "no route GET /widgets; this API has POST /things, GET /things/{thingId} and "
        "DELETE /things/{thingId}"
    )


def test_every_route_of_the_api_answers_its_other_methods_with_405_and_allow(rt: Runtime) -> None:
    # GIVEN every route the resolver has: those documented, and /openapi.json
    methods_by_path = {
        path: {method.upper() for method in operations}
        for path, operations in api.openapi_document()["paths"].items()
    } | {"/openapi.json": {"GET"}}
    for path, methods in methods_by_path.items():
        concrete = path.replace("{taskId}", "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b")
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - methods:
            # WHEN a method it does not have is called  THEN 405, and Allow names its methods
            reply = api.handler(http_event(method, concrete), FakeLambdaContext())
            assert reply["statusCode"] == 405, (method, path)
            assert reply["headers"]["Allow"] == ", ".join(sorted(methods))


def test_the_error_mapping_sees_the_routes_powertools_documents() -> None:
    # The routes are read from the resolver (Powertools has no public view of them): the view
    # must be the one Powertools generates the OpenAPI document from.
    routes = api_errors._routes(api.app)
    documented = {
        (method.upper(), path)
        for path, operations in api.openapi_document()["paths"].items()
        for method in operations
    }

    assert {(r.method, r.openapi_path) for r in routes if r.include_in_schema} == documented
    assert {(r.method, r.path) for r in routes if not r.include_in_schema} == {
        ("GET", "/openapi.json")
    }


def test_a_path_parameter_the_router_refuses_is_a_400_not_a_404(rt: Runtime) -> None:
    reply = api.handler(http_event("GET", "/tasks/🚀"), FakeLambdaContext())

    assert reply["statusCode"] == 400
    assert "UUID" in json_body(reply)["error"]


# -- the body, judged once before routing ------------------------------------------------------

NOT_JSON = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",  # no boundary: Powertools' multipart parser raises a bare ValueError
    "multipart/form-data; boundary=b",
    "application/jsonl",  # starts like JSON: Powertools would parse it as JSON
    "application/x-www-form-urlencoded+json",  # ends like JSON: Powertools would parse a form
]
BODIES = {
    "valid": '{"message": "SUCCESS"}',
    "empty": "",
    "malformed": '{"message": "x"',
    "form": "message=SUCCESS",
    "array": '[{"message": "x"}]',
    "oversize": '{"message": "x"' + " " * api.MAX_BODY_BYTES + "}",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=list(BODIES))
@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_body_not_declared_json_is_a_415_whatever_it_holds(
    rt: Runtime, content_type: str, body: str
) -> None:
    # GIVEN a submit whose Content-Type is not JSON  WHEN it is posted
    event = http_event("POST", "/tasks", body=body, headers={"content-type": content_type})
    reply = api.handler(event, FakeLambdaContext())

    # THEN 415, decided by the Content-Type alone (not by what a parser made of the body)
    assert reply["statusCode"] == 415, reply["body"]
    assert "application/json" in json_body(reply)["error"]
    assert scan_items(rt) == []


def test_a_route_that_takes_a_body_is_judged_before_routing_without_being_listed() -> None:
    # GIVEN a new route with a body, on a resolver of its own
    app = resolver_with_the_error_mapping()

    @app.put("/things/<thingId>")
    def replace_thing(thingId: str, thing: Thing) -> dict[str, str]:
        return thing.model_dump()

    # WHEN bodies it cannot take are sent  THEN they are refused before it is routed
    form = call(app, "PUT", "/things/1", body="name=x", headers={"content-type": "text/plain"})
    assert form["statusCode"] == 415
    assert call(app, "PUT", "/things/1", body="")["statusCode"] == 400
    assert call(app, "PUT", "/things/1", body="x" * (api.MAX_BODY_BYTES + 1))["statusCode"] == 413
    # AND a JSON body is routed
    assert json_body(call(app, "PUT", "/things/1", body='{"name": "x"}')) == {"name": "x"}
    # AND a request to a route without a body is routed, whatever its Content-Type
    elsewhere = call(app, "GET", "/things/1", body="x", headers={"content-type": "text/plain"})
    assert elsewhere["statusCode"] == 405


def test_a_refusal_before_routing_is_built_as_powertools_builds_every_reply(rt: Runtime) -> None:
    refused = http_event("POST", "/tasks", body="x", headers={"content-type": "text/plain"})

    assert api.handler(refused, FakeLambdaContext()) == {
        "statusCode": 415,
        "body": '{"error":"Content-Type \'text/plain\' is not supported; send application/json"}',
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "cookies": [],
    }


# -- the OpenAPI document keeps the schemas it uses --------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_unused_schemas_are_dropped_with_everything_only_they_use() -> None:
    # GIVEN Powertools' 422 on an operation that did not declare one, and schemas: one used,
    # one used only through it, the 422's chain, and two unused ones that refer to each other
    reply_422 = {"content": {"application/json": {"schema": _ref("HTTPValidationError")}}}
    document = {
        "paths": {
            "/x": {"post": {"responses": {"200": {"content": {"a": {"schema": _ref("Used")}}}}}},
            "/y": {"get": {"responses": {"422": reply_422}}},
        },
        "components": {
            "schemas": {
                "Used": {"properties": {"part": _ref("Part")}},
                "Part": {"type": "string"},
                "HTTPValidationError": {"items": _ref("ValidationError")},
                "ValidationError": {"type": "object"},
                "Ping": {"properties": {"pong": _ref("Pong")}},
                "Pong": {"properties": {"ping": _ref("Ping")}},
            }
        },
    }

    pruned = api._without_default_validation_reply(document)

    assert pruned["paths"]["/y"]["get"]["responses"] == {}
    assert list(pruned["components"]["schemas"]) == ["Used", "Part"]
