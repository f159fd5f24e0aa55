"""Who may call the API, as the program declares it: the JWT authorizer, the route scopes, the
stack's own user pool (only with `apiAuth: jwt` and no external issuer), the api function's
reserved concurrency and its knowledge of the auth mode."""

from __future__ import annotations

import functools

import pytest
from stack_runs import ProgramRun, run_stack

from functions.policy import API_AUTH_ENV
from taskctl.program import RecordingMocks, load_stack_settings, project_name, run_program

AUTHORIZER = "aws:apigatewayv2/authorizer:Authorizer"
ROUTE = "aws:apigatewayv2/route:Route"
COGNITO_TYPES = (
    "aws:cognito/userPool:UserPool",
    "aws:cognito/resourceServer:ResourceServer",
    "aws:cognito/userPoolClient:UserPoolClient",
    "aws:cognito/userPoolDomain:UserPoolDomain",
)
EXTERNAL_ISSUER = "https://login.example.com/"


@functools.cache
def _run_with(**settings: str) -> ProgramRun:
    """The dev stack's program with some settings overridden (each variant run once)."""
    namespace = project_name()
    overrides = {f"{namespace}:{key}": value for key, value in settings.items()}
    mocks = RecordingMocks()
    outputs = run_program("dev", mocks, config_overrides=overrides)
    return ProgramRun("dev", load_stack_settings("dev", overrides), mocks, outputs)


def _routes(run: ProgramRun) -> dict[str, dict]:
    return {route.inputs["routeKey"]: route.inputs for route in run.created(ROUTE)}


def test_jwt_guards_each_task_route_with_its_scope_and_leaves_the_fallback_open(program_run):
    (authorizer,) = program_run.created(AUTHORIZER)
    routes = _routes(program_run)

    assert routes["POST /tasks"]["authorizationType"] == "JWT"
    assert routes["POST /tasks"]["authorizationScopes"] == ["tasks/write"]
    assert routes["GET /tasks/{taskId}"]["authorizationType"] == "JWT"
    assert routes["GET /tasks/{taskId}"]["authorizationScopes"] == ["tasks/read"]
    for key in ("POST /tasks", "GET /tasks/{taskId}"):
        assert routes[key]["authorizerId"] == authorizer.resource_id
    # The fallback serves GET /openapi.json and the API's own 404/405: no token needed.
    assert "authorizationType" not in routes["$default"]


def test_the_authorizer_checks_tokens_of_the_stacks_own_pool_for_its_app_client(program_run):
    (authorizer,) = program_run.created(AUTHORIZER)
    (pool,) = program_run.created("aws:cognito/userPool:UserPool")
    (client,) = program_run.created("aws:cognito/userPoolClient:UserPoolClient")
    (api,) = program_run.created("aws:apigatewayv2/api:Api")

    assert authorizer.inputs["apiId"] == api.resource_id
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    jwt = authorizer.inputs["jwtConfiguration"]
    assert jwt["issuer"] == f"https://cognito-idp.eu-west-1.amazonaws.com/{pool.resource_id}"
    assert jwt["audiences"] == [client.resource_id]
    assert program_run.outputs["authIssuer"] == jwt["issuer"]


def test_the_pool_issues_machine_tokens_with_both_scopes_through_its_own_domain(program_run):
    (pool,) = program_run.created("aws:cognito/userPool:UserPool")
    (server,) = program_run.created("aws:cognito/resourceServer:ResourceServer")
    (client,) = program_run.created("aws:cognito/userPoolClient:UserPoolClient")
    (domain,) = program_run.created("aws:cognito/userPoolDomain:UserPoolDomain")

    assert pool.inputs["adminCreateUserConfig"]["allowAdminCreateUserOnly"] is True
    assert server.inputs["userPoolId"] == pool.resource_id
    assert server.inputs["identifier"] == "tasks"
    assert sorted(scope["scopeName"] for scope in server.inputs["scopes"]) == ["read", "write"]
    assert client.inputs["userPoolId"] == pool.resource_id
    assert client.inputs["generateSecret"] is True
    assert client.inputs["allowedOauthFlows"] == ["client_credentials"]
    assert client.inputs["allowedOauthFlowsUserPoolClient"] is True
    assert sorted(client.inputs["allowedOauthScopes"]) == ["tasks/read", "tasks/write"]
    assert domain.inputs["userPoolId"] == pool.resource_id
    assert program_run.outputs["authTokenUrl"] == (
        f"https://{domain.inputs['domain']}.auth.eu-west-1.amazoncognito.com/oauth2/token"
    )
    assert program_run.outputs["appClientId"] == client.resource_id
    # The secret stays in Cognito: no output carries it.
    assert not any("secret" in key.lower() for key in program_run.outputs)


def test_the_api_function_knows_the_mode_and_has_its_reserved_concurrency(program_run):
    function = program_run.function("api")

    assert function.inputs["environment"]["variables"][API_AUTH_ENV] == "jwt"
    assert (
        function.inputs["reservedConcurrentExecutions"]
        == program_run.settings.apiReservedConcurrency
    )
    for service in ("worker", "dead-letter", "reconciler"):
        assert "reservedConcurrentExecutions" not in program_run.function(service).inputs


def test_prod_reserves_more_api_concurrency_than_dev():
    assert (
        run_stack("prod").settings.apiReservedConcurrency
        > run_stack("dev").settings.apiReservedConcurrency
    )


def test_an_open_stack_has_no_authorizer_no_pool_and_says_it_is_open():
    run = _run_with(apiAuth="none")

    assert run.created(AUTHORIZER) == []
    for type_token in COGNITO_TYPES:
        assert run.created(type_token) == []
    assert all("authorizationType" not in route for route in _routes(run).values())
    assert run.function("api").inputs["environment"]["variables"][API_AUTH_ENV] == "none"
    assert run.outputs["apiAuth"] == "none"
    assert not {"authIssuer", "userPoolId", "appClientId", "authTokenUrl"} & set(run.outputs)


def test_an_external_issuer_replaces_the_pool():
    run = _run_with(apiJwtIssuer=EXTERNAL_ISSUER, apiJwtAudience="tasks-api,ops")

    (authorizer,) = run.created(AUTHORIZER)
    assert authorizer.inputs["jwtConfiguration"] == {
        "issuer": EXTERNAL_ISSUER,
        "audiences": ["tasks-api", "ops"],
    }
    for type_token in COGNITO_TYPES:
        assert run.created(type_token) == []
    assert _routes(run)["POST /tasks"]["authorizationScopes"] == ["tasks/write"]
    assert run.outputs["authIssuer"] == EXTERNAL_ISSUER
    assert "authTokenUrl" not in run.outputs


def test_the_program_refuses_an_open_protected_stack():
    with pytest.raises(Exception, match=r"apiAuth='none' with deletionProtection=true"):
        _run_with(apiAuth="none", deletionProtection="true")
