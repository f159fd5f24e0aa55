"""Who may call the API, end to end on the local stack (dev: `apiAuth: jwt`, its own user pool).

The emulator's Cognito issues the tokens (client-credentials grant at its `/oauth2/token`,
through `python -m taskctl token`) and its API Gateway verifies them as AWS does: RS256 against
the pool's JWKS, issuer, expiry, audience, then the route's scope. A token that Cognito would
not hand out on request (an expired one, a user's) is signed with the pool's own signing key,
which the emulator keeps in the stack's state directory: the authorizer cannot tell it from one
Cognito issued, so only the claim under test differs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from e2e_support import STACK, LocalStackUnderTest, api_client

from taskctl.program import load_stack_settings

pytestmark = pytest.mark.e2e

GATEWAY_UNAUTHORIZED = {"message": "Unauthorized"}
GATEWAY_FORBIDDEN = {"message": "Forbidden"}
OTHER_POOL_ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class PoolSigner:
    """Signs tokens with the stack's user pool's access-token key, as its Cognito does."""

    def __init__(self, local_stack: LocalStackUnderTest) -> None:
        pool_id = local_stack.outputs["userPoolId"]
        key_file = (
            local_stack.state_dir / STACK / "emulator-state" / "cognito-pool-keys"
            / f"{pool_id}-access.pem"
        )  # fmt: skip
        self._key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        # The key's id as the pool's JWKS lists it: the entry with this key's modulus.
        jwks = httpx.get(f"{local_stack.endpoint_url}/{pool_id}/.well-known/jwks.json").json()
        modulus = _b64url(self._key.public_key().public_numbers().n.to_bytes(256, "big"))
        (self._kid,) = [key["kid"] for key in jwks["keys"] if key["n"] == modulus]

    def sign(self, claims: dict[str, Any]) -> str:
        header = _b64url(json.dumps({"alg": "RS256", "kid": self._kid}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = self._key.sign(
            f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{header}.{payload}.{_b64url(signature)}"


@pytest.fixture(scope="module")
def token(local_stack: LocalStackUnderTest) -> str:
    if not local_stack.authenticates:
        pytest.fail("the e2e stack (dev) must authenticate callers: apiAuth is jwt by default")
    return local_stack.token()


@pytest.fixture(scope="module")
def signer(local_stack: LocalStackUnderTest) -> PoolSigner:
    return PoolSigner(local_stack)


@pytest.fixture(scope="module")
def valid_claims(token: str) -> dict[str, Any]:
    """The claims of a fresh token of the stack's own app client, as Cognito issued them."""
    return claims_of(token)


def post(client: httpx.Client, message: str = "SUCCESS", **headers: str) -> httpx.Response:
    return client.post("/tasks", json={"message": message}, headers=headers)


# -- 401 and 403 come from API Gateway, before the function, storing nothing -------------------


def test_without_a_token_both_task_routes_are_401_and_nothing_is_stored(
    local_stack: LocalStackUnderTest,
) -> None:
    before = local_stack.stored_task_count()
    with api_client(local_stack, None) as anonymous:
        submitted = post(anonymous)
        read = anonymous.get(f"/tasks/{uuid.uuid4()}")
        document = anonymous.get("/openapi.json")

    assert (submitted.status_code, submitted.json()) == (401, GATEWAY_UNAUTHORIZED)
    assert (read.status_code, read.json()) == (401, GATEWAY_UNAUTHORIZED)
    assert local_stack.stored_task_count() == before
    # the OpenAPI document stays public
    assert document.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"exp": -60, "iat": -3660}, id="expired"),
        pytest.param({"client_id": "another-app-client", "sub": "another-app-client"}, id="aud"),
        pytest.param({"iss": OTHER_POOL_ISSUER}, id="iss"),
    ],
)  # fmt: skip
def test_an_expired_or_foreign_token_is_401_while_the_same_token_otherwise_is_accepted(
    local_stack: LocalStackUnderTest,
    signer: PoolSigner,
    valid_claims: dict[str, Any],
    change: dict[str, Any],
) -> None:
    now = int(time.time())
    fresh = {**valid_claims, "iat": now - 10, "exp": now + 600}
    # times are given relative to now
    changed = {**fresh, **{k: now + v if k in ("exp", "iat") else v for k, v in change.items()}}

    with api_client(local_stack, signer.sign(fresh)) as control:
        assert post(control).status_code == 202
    with api_client(local_stack, signer.sign(changed)) as refused:
        reply = post(refused)

    assert (reply.status_code, reply.json()) == (401, GATEWAY_UNAUTHORIZED)


def test_a_token_whose_signature_does_not_match_is_401(
    local_stack: LocalStackUnderTest, token: str
) -> None:
    header, _payload, signature = token.split(".")
    tampered_claims = {**claims_of(token), "sub": "someone-else"}
    tampered = f"{header}.{_b64url(json.dumps(tampered_claims).encode())}.{signature}"

    with api_client(local_stack, tampered) as client:
        assert post(client).status_code == 401


def test_a_client_of_the_pool_that_is_not_the_stacks_gets_tokens_the_api_refuses(
    local_stack: LocalStackUnderTest,
) -> None:
    # GIVEN another app client of the same pool, allowed the same scopes
    cognito = local_stack.client("cognito-idp")
    other = cognito.create_user_pool_client(
        UserPoolId=local_stack.outputs["userPoolId"],
        ClientName="not-the-stacks",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=["tasks/write", "tasks/read"],
    )["UserPoolClient"]
    issued = httpx.post(
        f"{local_stack.endpoint_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(other["ClientId"], other["ClientSecret"]),
    )
    assert issued.status_code == 200, issued.text

    # WHEN its genuine token is used THEN the API's audience (the stack's client) refuses it
    with api_client(local_stack, issued.json()["access_token"]) as client:
        assert post(client).status_code == 401


def test_a_token_without_the_routes_scope_is_403(local_stack: LocalStackUnderTest) -> None:
    read_only, write_only = local_stack.token("tasks/read"), local_stack.token("tasks/write")
    assert claims_of(read_only)["scope"] == "tasks/read"
    before = local_stack.stored_task_count()

    with api_client(local_stack, read_only) as reader:
        refused_submit = post(reader)
    with api_client(local_stack, write_only) as writer:
        accepted = post(writer)
        refused_read = writer.get(f"/tasks/{accepted.json()['taskId']}")
    with api_client(local_stack, read_only) as reader:
        read = reader.get(f"/tasks/{accepted.json()['taskId']}")

    assert (refused_submit.status_code, refused_submit.json()) == (403, GATEWAY_FORBIDDEN)
    assert accepted.status_code == 202
    assert (refused_read.status_code, refused_read.json()) == (403, GATEWAY_FORBIDDEN)
    assert read.status_code == 200
    assert local_stack.stored_task_count() == before + 1


# -- owners ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_token(signer: PoolSigner, valid_claims: dict[str, Any]) -> str:
    """An access token of a user of the pool signed in through the stack's app client: the same
    client_id (so the API's audience), its own `sub` (so another owner)."""
    now = int(time.time())
    return signer.sign(
        {
            **valid_claims,
            "sub": str(uuid.uuid4()),
            "username": "alice",
            "iat": now,
            "exp": now + 900,
        }
    )


def test_two_owners_with_the_same_idempotency_key_get_different_tasks(
    local_stack: LocalStackUnderTest, api: httpx.Client, user_token: str
) -> None:
    key = f"order-{uuid.uuid4()}"
    mine = post(api, "SUCCESS", **{"Idempotency-Key": key})
    with api_client(local_stack, user_token) as user:
        theirs = post(user, "ERROR", **{"Idempotency-Key": key})
        their_read = user.get(f"/tasks/{theirs.json()['taskId']}")

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["taskId"] != theirs.json()["taskId"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert their_read.json()["message"] == "ERROR"
    assert api.get(f"/tasks/{mine.json()['taskId']}").json()["message"] == "SUCCESS"


def test_reading_another_owners_task_is_404_like_an_unknown_id(
    local_stack: LocalStackUnderTest, api: httpx.Client, user_token: str
) -> None:
    task_id = post(api, "private").json()["taskId"]
    unknown_id = str(uuid.uuid4())

    with api_client(local_stack, user_token) as user:
        foreign, unknown = user.get(f"/tasks/{task_id}"), user.get(f"/tasks/{unknown_id}")

    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"] == unknown.json()["error"].replace(unknown_id, task_id)
    assert "private" not in foreign.text
    assert api.get(f"/tasks/{task_id}").status_code == 200
    # the record keeps its owner for itself
    assert local_stack.stored_item(task_id)["owner"] == {"S": local_stack.owner}


def test_the_deployed_authorizer_and_routes_are_the_declared_ones(
    local_stack: LocalStackUnderTest,
) -> None:
    (declared,) = local_stack.deployed("aws:apigatewayv2/authorizer:Authorizer")
    api_id = declared["inputs"]["apiId"]
    gateway = local_stack.client("apigatewayv2")

    (authorizer,) = gateway.get_authorizers(ApiId=api_id)["Items"]
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"]["Issuer"] == local_stack.outputs["authIssuer"]
    assert authorizer["JwtConfiguration"]["Audience"] == [local_stack.outputs["appClientId"]]
    routes = {route["RouteKey"]: route for route in gateway.get_routes(ApiId=api_id)["Items"]}
    for key, scope in (("POST /tasks", "tasks/write"), ("GET /tasks/{taskId}", "tasks/read")):
        assert routes[key]["AuthorizationType"] == "JWT"
        assert routes[key]["AuthorizerId"] == authorizer["AuthorizerId"]
        assert routes[key]["AuthorizationScopes"] == [scope]
    assert routes["$default"].get("AuthorizationType", "NONE") == "NONE"


def test_the_api_function_runs_with_its_reserved_concurrency(
    local_stack: LocalStackUnderTest,
) -> None:
    reserved = local_stack.client("lambda").get_function_concurrency(
        FunctionName=local_stack.function_name("api")
    )
    assert reserved["ReservedConcurrentExecutions"] == (
        load_stack_settings(STACK).apiReservedConcurrency
    )
