"""Tasks belong to their callers (DESIGN §2): the api function on moto, with the claims API
Gateway's JWT authorizer hands over, and on an open stack."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aws_harness import (
    CALLER,
    OTHER_CALLER,
    FakeLambdaContext,
    http_event,
    json_body,
    scan_items,
    submit_event,
)

from functions import api, callers, runtime
from functions.lifecycle import first_check_at, new_task
from functions.runtime import Runtime


def call(event: dict[str, Any]) -> dict[str, Any]:
    return api.handler(event, FakeLambdaContext(function_name="fault-tolerant-tasks-dev-api"))


def submit_as(caller: str | None, message: str = "SUCCESS", **headers: str) -> dict[str, Any]:
    return call(submit_event(message, headers=headers, caller=caller))


def read_as(caller: str | None, task_id: str) -> dict[str, Any]:
    return call(http_event("GET", f"/tasks/{task_id}", caller=caller))


# -- owners ---------------------------------------------------------------------------------


def test_each_task_records_the_caller_that_submitted_it(rt: Runtime) -> None:
    task_id = json_body(submit_as(CALLER))["taskId"]

    stored = rt.store.get(task_id)
    assert stored is not None and stored.owner == CALLER
    # ...and the record GET shows keeps it to itself
    assert "owner" not in json_body(read_as(CALLER, task_id))


def test_another_callers_task_is_a_404_exactly_like_an_unknown_id(rt: Runtime) -> None:
    task_id = json_body(submit_as(CALLER, "a secret message"))["taskId"]
    unknown_id = "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b"

    foreign = read_as(OTHER_CALLER, task_id)
    unknown = read_as(OTHER_CALLER, unknown_id)

    assert foreign["statusCode"] == unknown["statusCode"] == 404
    assert json_body(foreign)["error"] == json_body(unknown)["error"].replace(unknown_id, task_id)
    assert "a secret message" not in foreign["body"]
    assert read_as(CALLER, task_id)["statusCode"] == 200


# -- Idempotency-Key scoped to its owner ------------------------------------------------------


def test_two_callers_with_the_same_key_get_two_tasks_each_their_own(rt: Runtime) -> None:
    mine = submit_as(CALLER, "mine", **{"Idempotency-Key": "order-42"})
    theirs = submit_as(OTHER_CALLER, "theirs", **{"Idempotency-Key": "order-42"})

    # a different body under the same key is no conflict across owners: nothing to block
    assert mine["statusCode"] == theirs["statusCode"] == 202
    assert api.REPLAYED_HEADER not in theirs["headers"]
    my_id, their_id = json_body(mine)["taskId"], json_body(theirs)["taskId"]
    assert my_id != their_id
    assert len(scan_items(rt)) == 2
    assert json_body(read_as(CALLER, my_id))["message"] == "mine"
    assert json_body(read_as(OTHER_CALLER, their_id))["message"] == "theirs"
    # each caller's repeat still finds its own task
    again = submit_as(OTHER_CALLER, "theirs", **{"Idempotency-Key": "order-42"})
    assert json_body(again)["taskId"] == their_id


def test_the_409_for_a_reused_key_names_only_the_callers_own_task(rt: Runtime) -> None:
    first = json_body(submit_as(CALLER, "SUCCESS", **{"Idempotency-Key": "k"}))

    conflict = submit_as(CALLER, "ERROR", **{"Idempotency-Key": "k"})

    assert conflict["statusCode"] == 409
    assert json_body(conflict)["details"] == [{"taskId": first["taskId"]}]


def test_a_foreign_task_under_the_callers_key_id_is_a_409_that_reveals_nothing(
    rt: Runtime,
) -> None:
    # GIVEN another owner's task at the id the caller's key names (only a task stored before
    # ids were scoped could be there)
    task_id = callers.idempotent_task_id(CALLER, "k")
    now = rt.clock()
    record = new_task(task_id, "their secret", rt.settings.policy, now)
    rt.store.create(
        record, now, check_after=first_check_at(now, rt.settings.policy), owner=OTHER_CALLER
    )

    # WHEN the caller submits with that key, with the same body or another
    replies = [submit_as(CALLER, message, **{"Idempotency-Key": "k"}) for message in ("x", "ERROR")]

    # THEN a 409 without the task's id, its message or its owner, and nothing changes
    for reply in replies:
        assert reply["statusCode"] == 409
        assert set(json_body(reply)) == {"error"}
        for secret in (task_id, "their secret", OTHER_CALLER):
            assert secret not in reply["body"]
    stored = rt.store.get(task_id)
    assert stored is not None and stored.owner == OTHER_CALLER
    assert stored.record.message == "their secret"


# -- the function's own guard, and the open stack ---------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_without_verified_claims_a_task_route_is_401_and_stores_nothing(
    rt: Runtime, method: str
) -> None:
    event = (
        submit_event(caller=None)
        if method == "POST"
        else http_event("GET", "/tasks/3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b", caller=None)
    )

    reply = call(event)

    assert reply["statusCode"] == 401
    assert "bearer token" in json_body(reply)["error"]
    assert scan_items(rt) == []


def test_on_an_open_stack_every_caller_is_the_one_anonymous_owner(rt: Runtime) -> None:
    runtime.use(dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, api_auth="none")))

    task_id = json_body(submit_as(None, **{"Idempotency-Key": "k"}))["taskId"]

    assert task_id == callers.idempotent_task_id(callers.ANONYMOUS_OWNER, "k")
    stored = rt.store.get(task_id)
    assert stored is not None and stored.owner == callers.ANONYMOUS_OWNER
    assert read_as(None, task_id)["statusCode"] == 200


# -- pure: who the owner is, and the ids keys name --------------------------------------------


def test_the_owner_is_the_tokens_sub_or_else_its_client_id() -> None:
    assert callers.owner_of("jwt", {"sub": "user-1", "client_id": "app"}) == "user-1"
    assert callers.owner_of("jwt", {"client_id": "app"}) == "app"
    assert callers.owner_of("none", {"sub": "user-1"}) == callers.ANONYMOUS_OWNER
    with pytest.raises(callers.Unauthenticated):
        callers.owner_of("jwt", {})


def test_a_token_whose_subject_is_the_anonymous_owner_reads_nothing_of_it(rt: Runtime) -> None:
    # GIVEN a task stored while the stack was open (or before tasks had owners)
    open_rt = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, api_auth="none"))
    runtime.use(open_rt)
    task_id = json_body(submit_as(None))["taskId"]
    runtime.use(rt)

    # WHEN the stack authenticates and an issuer's token says sub = "anonymous"
    reply = read_as(callers.ANONYMOUS_OWNER, task_id)

    # THEN it is refused, as a token naming nobody is
    assert reply["statusCode"] == 401
    assert "message" not in json_body(reply)


def test_a_key_names_one_id_per_owner_and_no_pair_spells_another() -> None:
    assert callers.idempotent_task_id("a", "k") == callers.idempotent_task_id("a", "k")
    assert callers.idempotent_task_id("a", "k") != callers.idempotent_task_id("b", "k")
    assert callers.idempotent_task_id("a:b", "c") != callers.idempotent_task_id("a", "b:c")


# -- the OpenAPI document declares what the gateway enforces ----------------------------------


def test_the_served_document_declares_the_bearer_token_and_each_operations_scope(
    rt: Runtime,
) -> None:
    # GET /openapi.json needs no token
    document = json_body(call(http_event("GET", "/openapi.json", caller=None)))

    scheme = document["components"]["securitySchemes"][api.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    submit, read = document["paths"]["/tasks"]["post"], document["paths"]["/tasks/{taskId}"]["get"]
    assert submit["security"] == [{api.SECURITY_SCHEME: ["tasks/write"]}]
    assert read["security"] == [{api.SECURITY_SCHEME: ["tasks/read"]}]
    for operation in (submit, read):
        assert {"401", "403"} <= set(operation["responses"])


def test_an_open_stack_serves_a_document_without_security(rt: Runtime) -> None:
    runtime.use(dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, api_auth="none")))

    document = json_body(call(http_event("GET", "/openapi.json", caller=None)))

    assert "securitySchemes" not in document["components"]
    assert "security" not in document["paths"]["/tasks"]["post"]
    assert "401" not in document["paths"]["/tasks"]["post"]["responses"]
