"""Client-credentials tokens from a stack's own Cognito user pool.

The app client's secret never leaves Cognito except into this process: it is read with
DescribeUserPoolClient (the caller's AWS credentials, or the local emulator's) just before the
token request, and neither printed nor stored. The token endpoint answers with an access token
carrying the scopes asked for (all the client's, `tasks/write tasks/read`, by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from taskctl.local.emulator import RunningEmulator

TOKEN_TIMEOUT_S = 10.0


class TokenError(Exception):
    """No token could be had; the message is one line and says what to do."""


@dataclass(frozen=True)
class AppClient:
    """Where a stack's app client gets its tokens: its pool and id, the pool's token endpoint,
    and a `cognito-idp` boto3 client that may describe it."""

    user_pool_id: str
    client_id: str
    token_url: str
    cognito: Any


def client_secret(app: AppClient) -> str:
    try:
        described = app.cognito.describe_user_pool_client(
            UserPoolId=app.user_pool_id, ClientId=app.client_id
        )
    except (ClientError, BotoCoreError) as exc:
        raise TokenError(
            f"cannot read app client {app.client_id} of user pool {app.user_pool_id} "
            f"(cognito-idp:DescribeUserPoolClient): {exc}"
        ) from None
    secret = described["UserPoolClient"].get("ClientSecret")
    if not secret:
        raise TokenError(f"app client {app.client_id} has no secret; it cannot get tokens")
    return str(secret)


def fetch_token(app: AppClient, scopes: Sequence[str] = ()) -> str:
    """An access token for `app` (client-credentials grant) with `scopes`, or all it may have."""
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    try:
        reply = httpx.post(
            app.token_url,
            data=form,
            auth=(app.client_id, client_secret(app)),
            timeout=TOKEN_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise TokenError(f"the token endpoint {app.token_url} did not answer: {exc}") from None
    if reply.status_code != 200:
        raise TokenError(
            f"the token endpoint {app.token_url} answered {reply.status_code}: {reply.text[:200]}"
        )
    try:
        body = reply.json()
    except ValueError:  # not JSON: an HTML page, say, at a wrong --token-url
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenError(f"the token endpoint {app.token_url} sent no access_token")
    return token


def local_app_client(stack: str) -> AppClient | None:
    """The running local stack's app client; None if the stack is open (`apiAuth: none`).
    Its token endpoint is the emulator's (it serves every pool's at `/oauth2/token`)."""
    from taskctl.local.emulator import LocalStackError
    from taskctl.local.stack import running_stack

    try:
        running, outputs = running_stack(stack)
    except LocalStackError as exc:
        raise TokenError(str(exc)) from None
    return emulator_app_client(stack, outputs, running)


def emulator_app_client(
    stack: str, outputs: Mapping[str, Any], running: RunningEmulator
) -> AppClient | None:
    """The app client a local stack's `outputs` name, on its emulator; None if it is open."""
    if outputs.get("apiAuth") == "none":
        return None
    if "appClientId" not in outputs:
        raise TokenError(
            f"stack {stack!r} accepts tokens of the external issuer {outputs.get('authIssuer')}; "
            "get one from it"
        )
    return AppClient(
        user_pool_id=outputs["userPoolId"],
        client_id=outputs["appClientId"],
        token_url=f"{running.endpoint_url}/oauth2/token",
        cognito=running.client("cognito-idp"),
    )


def deployed_app_client(user_pool_id: str, client_id: str, token_url: str) -> AppClient:
    """A deployed stack's app client, described with the standard AWS environment."""
    import boto3

    session = boto3.Session()
    if session.region_name is None:
        raise TokenError("no AWS region configured: set AWS_DEFAULT_REGION (or AWS_PROFILE)")
    return AppClient(
        user_pool_id=user_pool_id,
        client_id=client_id,
        token_url=token_url,
        cognito=session.client("cognito-idp"),
    )
