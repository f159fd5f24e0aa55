"""The HTTP API: API Gateway v2 routes `POST /tasks`, `GET /tasks/{taskId}` (and, for JSON errors
and the OpenAPI document, everything else) to one function.

With a `JwtIssuer` (`apiAuth: jwt`) a JWT authorizer guards the two task routes: API Gateway
answers 401 for a missing, malformed, badly signed, expired or foreign (issuer, audience) token
and 403 for a token without the route's scope, before the function runs. The `$default` route
stays open: it serves the OpenAPI document and the API's own 404/405 replies, and the function
refuses to run a task route for a request that carries no verified claims.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.task_auth import READ_SCOPE, WRITE_SCOPE, JwtIssuer

# Route key -> child resource suffix. Renaming a child replaces it, so these names are final.
ROUTES = {
    "POST /tasks": "submit-task",
    "GET /tasks/{taskId}": "get-task",
    # Everything else reaches the function too, so an unknown route or a wrong method is answered
    # in the API's own JSON error shape (404/405 with a hint), not API Gateway's bare
    # `{"message":"Not Found"}`, and the OpenAPI document is served at `GET /openapi.json`.
    "$default": "default",
}
# The scope a token needs for each guarded route (a route not listed here is open).
ROUTE_SCOPES = {"POST /tasks": WRITE_SCOPE, "GET /tasks/{taskId}": READ_SCOPE}
# Where the authorizer finds the token: `Authorization: Bearer <token>`.
TOKEN_SOURCE = "$request.header.Authorization"
PAYLOAD_FORMAT_VERSION = "2.0"  # what functions.api parses (HTTP API event, version 2.0)
# One JSON line per request: enough to trace a client's complaint to the function's logs.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "sourceIp": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
    },
    separators=(",", ":"),
)


@dataclass(frozen=True, kw_only=True)
class TaskApiArgs:
    """`stage_name` is the stack name, so the URL ends in `/dev` like the original system's."""

    stage_name: str
    function_name: pulumi.Input[str]
    function_arn: pulumi.Input[str]
    throttle_rate_limit: float
    throttle_burst_limit: int
    access_log_group_name: str
    log_retention_days: int
    # Whose tokens the task routes accept; None leaves them open (`apiAuth: none`).
    auth: JwtIssuer | None = None

    def __post_init__(self) -> None:
        if not self.stage_name or "/" in self.stage_name or len(self.stage_name) > 128:
            raise ValueError(f"stage_name={self.stage_name!r} must be 1..128 characters, no '/'")
        if self.throttle_rate_limit <= 0 or self.throttle_burst_limit < 1:
            raise ValueError(
                f"throttling rate={self.throttle_rate_limit} burst={self.throttle_burst_limit} "
                "must both be positive"
            )


class TaskApi(pulumi.ComponentResource):
    """HTTP API with a Lambda proxy integration, a throttled stage and access logging."""

    api: aws.apigatewayv2.Api
    stage: aws.apigatewayv2.Stage
    authorizer: aws.apigatewayv2.Authorizer | None
    access_log_group: aws.cloudwatch.LogGroup
    url: pulumi.Output[str]
    api_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: TaskApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_api:TaskApi", name, None, opts)
        self.api = aws.apigatewayv2.Api(
            f"{name}-http",
            protocol_type="HTTP",
            description="Submit tasks and read their status",
            opts=pulumi.ResourceOptions(parent=self),
        )
        integration = self._lambda_integration(name, args)
        self.authorizer = self._authorizer(name, args.auth) if args.auth is not None else None
        routes = [self._route(name, key, suffix, integration) for key, suffix in ROUTES.items()]
        self.access_log_group = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=args.access_log_group_name,
            retention_in_days=args.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.stage = self._stage(name, args, routes)
        self._allow_api_to_invoke(name, args)
        # The stage's own URL: the API endpoint plus the stage name (`https://<id>.execute-api.
        # <region>.amazonaws.com/dev`), the base the clients append `/tasks` to.
        self.url = pulumi.Output.format("{0}/{1}", self.api.api_endpoint, self.stage.name)
        self.api_id = self.api.id
        self.register_outputs({"apiUrl": self.url, "apiId": self.api_id})

    def _lambda_integration(self, name: str, args: TaskApiArgs) -> aws.apigatewayv2.Integration:
        return aws.apigatewayv2.Integration(
            f"{name}-lambda",
            api_id=self.api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=args.function_arn,
            payload_format_version=PAYLOAD_FORMAT_VERSION,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _authorizer(self, name: str, auth: JwtIssuer) -> aws.apigatewayv2.Authorizer:
        return aws.apigatewayv2.Authorizer(
            f"{name}-jwt",
            api_id=self.api.id,
            name=f"{name}-jwt",
            authorizer_type="JWT",
            identity_sources=[TOKEN_SOURCE],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
                issuer=auth.issuer, audiences=auth.audiences
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _route(
        self, name: str, route_key: str, suffix: str, integration: aws.apigatewayv2.Integration
    ) -> aws.apigatewayv2.Route:
        guard: dict[str, object] = {}
        if self.authorizer is not None and route_key in ROUTE_SCOPES:
            guard = {
                "authorization_type": "JWT",
                "authorizer_id": self.authorizer.id,
                "authorization_scopes": [ROUTE_SCOPES[route_key]],
            }
        return aws.apigatewayv2.Route(
            f"{name}-{suffix}",
            api_id=self.api.id,
            route_key=route_key,
            target=integration.id.apply(lambda integration_id: f"integrations/{integration_id}"),
            **guard,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _stage(
        self, name: str, args: TaskApiArgs, routes: list[aws.apigatewayv2.Route]
    ) -> aws.apigatewayv2.Stage:
        return aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=self.api.id,
            name=args.stage_name,
            # Every route change is live without a separate deployment resource.
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_rate_limit=args.throttle_rate_limit,
                throttling_burst_limit=args.throttle_burst_limit,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=self.access_log_group.arn,
                format=ACCESS_LOG_FORMAT,
            ),
            # Deployed after the routes, so the first auto-deployment already serves them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=routes),
        )

    def _allow_api_to_invoke(self, name: str, args: TaskApiArgs) -> None:
        # Scoped to this API's stage: no other API (and no other stage) may invoke the function.
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=args.function_name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.format("{0}/{1}/*", self.api.execution_arn, args.stage_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
