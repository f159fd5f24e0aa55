"""Who may call the API: the stack's own Cognito user pool, issuing tokens to machine clients.

`TaskAuth` creates a user pool, a resource server `tasks` with the scopes `tasks/write` (submit)
and `tasks/read` (read a task), one app client that may use the client-credentials grant for
both scopes, and a Cognito domain that serves the pool's token endpoint. `TaskApi` checks the
tokens with API Gateway's JWT authorizer against `issuer` and `audiences` (a `JwtIssuer`), which
can also name an external OIDC issuer instead (then no `TaskAuth` is created).

The app client's secret stays in Cognito: it is neither exported nor written anywhere;
`python -m taskctl token` reads it with DescribeUserPoolClient when it needs a token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

RESOURCE_SERVER = "tasks"
# Scope name -> what it allows; the routes require `<RESOURCE_SERVER>/<name>`.
SCOPES = {
    "write": "Submit tasks (POST /tasks)",
    "read": "Read tasks (GET /tasks/{taskId})",
}
WRITE_SCOPE = f"{RESOURCE_SERVER}/write"
READ_SCOPE = f"{RESOURCE_SERVER}/read"
ACCESS_TOKEN_VALIDITY_MINUTES = 60  # Cognito's default; the client fetches a new one after
# A Cognito domain prefix: lowercase letters, digits and hyphens, at most 63 characters.
DOMAIN_PREFIX_MAX = 63
DOMAIN_RESERVED_WORDS = ("aws", "amazon", "cognito")


@dataclass(frozen=True, kw_only=True)
class JwtIssuer:
    """Whose tokens the API accepts: `issuer` (the `iss` claim, an https URL) and the
    `audiences`, one of which a token must name in `aud` (or `client_id`, for Cognito's access
    tokens, which have no `aud`)."""

    issuer: pulumi.Input[str]
    audiences: pulumi.Input[list[str]] | list[pulumi.Input[str]]


@dataclass(frozen=True, kw_only=True)
class TaskAuthArgs:
    """`name_prefix` (`<project>-<stack>`) names the pool and starts the domain prefix, which
    must be unique in the region across all AWS accounts: the pool id's random part ends it."""

    name_prefix: str
    region: str

    def __post_init__(self) -> None:
        # It starts the domain prefix: Cognito's alphabet, room for the pool id's suffix, and
        # none of the words Cognito reserves.
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?", self.name_prefix):
            raise ValueError(
                f"name_prefix={self.name_prefix!r} must be 1..40 lowercase letters, digits and "
                "inner hyphens (it starts the Cognito domain prefix)"
            )
        reserved = [word for word in DOMAIN_RESERVED_WORDS if word in self.name_prefix]
        if reserved:
            raise ValueError(
                f"name_prefix={self.name_prefix!r} contains {reserved[0]!r}, which a Cognito "
                "domain prefix may not"
            )


class TaskAuth(pulumi.ComponentResource):
    """A user pool that issues client-credentials tokens with the task scopes."""

    user_pool: aws.cognito.UserPool
    client: aws.cognito.UserPoolClient
    domain: aws.cognito.UserPoolDomain
    user_pool_id: pulumi.Output[str]
    client_id: pulumi.Output[str]
    token_url: pulumi.Output[str]
    jwt_issuer: JwtIssuer

    def __init__(
        self, name: str, args: TaskAuthArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_auth:TaskAuth", name, None, opts)
        self.user_pool = aws.cognito.UserPool(
            f"{name}-pool",
            name=f"{args.name_prefix}-callers",
            # No one signs up: the pool only issues tokens to the app clients made here.
            admin_create_user_config=aws.cognito.UserPoolAdminCreateUserConfigArgs(
                allow_admin_create_user_only=True
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        resource_server = aws.cognito.ResourceServer(
            f"{name}-scopes",
            user_pool_id=self.user_pool.id,
            identifier=RESOURCE_SERVER,
            name="Task API",
            scopes=[
                aws.cognito.ResourceServerScopeArgs(scope_name=scope, scope_description=text)
                for scope, text in SCOPES.items()
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.client = aws.cognito.UserPoolClient(
            f"{name}-client",
            name=f"{args.name_prefix}-machine-client",
            user_pool_id=self.user_pool.id,
            # Machine to machine: the client proves itself with its secret and gets an access
            # token for the scopes it asks for (all of them by default), no user involved.
            generate_secret=True,
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_flows=["client_credentials"],
            allowed_oauth_scopes=[WRITE_SCOPE, READ_SCOPE],
            supported_identity_providers=["COGNITO"],
            access_token_validity=ACCESS_TOKEN_VALIDITY_MINUTES,
            token_validity_units=aws.cognito.UserPoolClientTokenValidityUnitsArgs(
                access_token="minutes"
            ),
            # The scopes must exist before a client may be granted them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[resource_server]),
        )
        self.domain = aws.cognito.UserPoolDomain(
            f"{name}-domain",
            domain=self.user_pool.id.apply(
                lambda pool_id: domain_prefix(args.name_prefix, pool_id)
            ),
            user_pool_id=self.user_pool.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.user_pool_id = self.user_pool.id
        self.client_id = self.client.id
        self.token_url = pulumi.Output.format(
            "https://{0}.auth.{1}.amazoncognito.com/oauth2/token", self.domain.domain, args.region
        )
        self.jwt_issuer = JwtIssuer(
            issuer=pulumi.Output.format(
                "https://cognito-idp.{0}.amazonaws.com/{1}", args.region, self.user_pool.id
            ),
            audiences=[self.client.id],
        )
        self.register_outputs(
            {
                "userPoolId": self.user_pool_id,
                "clientId": self.client_id,
                "tokenUrl": self.token_url,
                "issuer": self.jwt_issuer.issuer,
            }
        )


def domain_prefix(name_prefix: str, pool_id: str) -> str:
    """`<name_prefix>-<pool id's random part, lowercased>`: unique per pool, in Cognito's
    alphabet (`eu-west-1_AbC123` -> `...-abc123`)."""
    suffix = pool_id.rsplit("_", 1)[-1].lower()
    head = name_prefix.lower()[: DOMAIN_PREFIX_MAX - len(suffix) - 1]
    return f"{head}-{suffix}"
