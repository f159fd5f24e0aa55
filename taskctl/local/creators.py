"""One creator per Pulumi resource type: a declared resource's resolved inputs -> an emulator call.

Each creator receives the resource's logical name and its inputs exactly as the Pulumi program
resolved them (camelCase property names of pulumi-aws 7.x), creates the resource in the emulator
through boto3, and returns the emulator's real id and outputs (ARNs, URLs, names) so that every
cross-reference in the program wires up for real. Settings the emulator accepts but does not act
on are returned as `notes`, which the deployer prints.

Exactly the types and inputs the program declares are supported. Each creator names the inputs
it applies (`creates(token, *inputs)`, dotted for nested ones), and any other input fails the
deployment naming it: an input dropped silently would make the local stack differ from the
declared one without saying so. A new type or input means a new line here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from taskctl.local import emulator

# How often ministack's EventBridge scheduler looks for due rules (`_SCHEDULER_TICK_INTERVAL` in
# ministack/services/eventbridge.py): a rule fires on the first look after its interval is up.
EMULATOR_SCHEDULER_TICK_S = 10
IAM_NOT_ENFORCED = "IAM is stored but not enforced: the emulator runs without permission checks"


@dataclass
class Created:
    """What a creator made: the physical id, the outputs Pulumi will see, and what it skipped."""

    id: str
    outputs: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class EmulatorContext:
    """boto3 clients on the emulator's endpoint, and the facts ARNs and URLs are built from."""

    endpoint_url: str
    region: str
    account_id: str
    port: int
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = emulator.client(self.endpoint_url, self.region, service)
        return self._clients[service]

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account_id}:{resource}"


Creator = Callable[[EmulatorContext, str, Mapping[str, Any]], Created]
CREATORS: dict[str, Creator] = {}
SUPPORTED_INPUTS: dict[str, frozenset[str]] = {}  # type token -> the inputs its creator applies


class UnsupportedInputs(ValueError):
    """The program declares inputs the local stack does not apply; the message names them."""


def creates(type_token: str, *inputs: str) -> Callable[[Creator], Creator]:
    """Register a creator for `type_token` that applies exactly `inputs` (`ttl.enabled` names a
    nested one; a name without a dot accepts the whole value, as for `dimensions`)."""

    def register(creator: Creator) -> Creator:
        def checked(ctx: EmulatorContext, logical: str, declared: Mapping[str, Any]) -> Created:
            unsupported = unsupported_inputs(type_token, declared)
            if unsupported:
                raise UnsupportedInputs(
                    f"{type_token} {logical!r} declares input(s) {', '.join(unsupported)}, which "
                    "the local stack does not apply; add them to its creator in "
                    "taskctl/local/creators.py"
                )
            return creator(ctx, logical, declared)

        CREATORS[type_token] = checked
        SUPPORTED_INPUTS[type_token] = frozenset(inputs)
        return creator

    return register


def unsupported_inputs(type_token: str, inputs: Mapping[str, Any]) -> list[str]:
    """The inputs of a `type_token` resource that its creator would not apply, dotted, sorted."""
    return sorted(set(_input_paths(inputs, SUPPORTED_INPUTS[type_token])))


def _input_paths(
    inputs: Mapping[str, Any], supported: frozenset[str], prefix: str = ""
) -> Iterator[str]:
    """The dotted paths of `inputs` that `supported` does not cover (list items share a path)."""
    for key, value in inputs.items():
        path = f"{prefix}{key}"
        if path in supported:
            continue
        items = value if isinstance(value, list) else [value]
        nested = [item for item in items if isinstance(item, Mapping)]
        if nested and len(nested) == len(items):
            for item in nested:
                yield from _input_paths(item, supported, f"{path}.")
        else:
            yield path


def auto_name(logical: str, max_len: int = 64) -> str:
    """A physical name like Pulumi's auto-naming (`<logical>-<7 hex>`), stable across runs."""
    suffix = hashlib.sha1(logical.encode()).hexdigest()[:7]
    return f"{logical[: max_len - 8]}-{suffix}"


def _mapped(inputs: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The `inputs` that `names` lists, under their AWS names (`{input: AwsName}`)."""
    return {aws: inputs[key] for key, aws in names.items() if key in inputs}


def _as_request(value: Any, **renamed: str) -> Any:
    """All of `value` under AWS's names, nested mappings too: `apiId` becomes `ApiId`, and
    `renamed` ({input: AwsName}) gives those that differ more. Every input may go through, as
    creates() has refused any the creator does not list; not for values with keys of the user's
    own (dimensions, environment variables), which would be capitalised too."""
    if isinstance(value, Mapping):
        return {
            renamed.get(k) or k[0].upper() + k[1:]: _as_request(v, **renamed)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_as_request(item, **renamed) for item in value]
    return value


# -- SQS -----------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = {
    "visibilityTimeoutSeconds": "VisibilityTimeout",
    "messageRetentionSeconds": "MessageRetentionPeriod",
    "sqsManagedSseEnabled": "SqsManagedSseEnabled",
    "redrivePolicy": "RedrivePolicy",
}


@creates("aws:sqs/queue:Queue", *_QUEUE_ATTRIBUTES)
def create_queue(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical, max_len=80)
    # SQS takes strings: booleans lower-case, whole numbers as the integers the deployer made.
    attributes = {
        aws: str(v).lower() if isinstance(v, bool) else str(v)
        for aws, v in _mapped(inputs, _QUEUE_ATTRIBUTES).items()
    }
    sqs = ctx.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return Created(id=url, outputs={"name": name, "arn": queue["QueueArn"], "url": url})


@creates("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "queueUrl", "redriveAllowPolicy")
def create_redrive_allow_policy(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    ctx.client("sqs").set_queue_attributes(
        QueueUrl=inputs["queueUrl"],
        Attributes={"RedriveAllowPolicy": inputs["redriveAllowPolicy"]},
    )
    return Created(id=str(inputs["queueUrl"]), outputs={})


# -- DynamoDB --------------------------------------------------------------------------------


@creates(
    "aws:dynamodb/table:Table",
    "hashKey",
    "attributes.name",
    "attributes.type",
    "billingMode",
    "deletionProtectionEnabled",
    "globalSecondaryIndexes.name",
    "globalSecondaryIndexes.keySchemas.attributeName",
    "globalSecondaryIndexes.keySchemas.keyType",
    "globalSecondaryIndexes.projectionType",
    "ttl.attributeName",
    "ttl.enabled",
    "pointInTimeRecovery.enabled",
)
def create_table(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical, max_len=255)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs["attributes"]
        ],
        "KeySchema": [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}],
        "BillingMode": inputs["billingMode"],
        "DeletionProtectionEnabled": bool(inputs.get("deletionProtectionEnabled")),
    }
    if inputs.get("globalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            _index(index) for index in inputs["globalSecondaryIndexes"]
        ]
    dynamodb = ctx.client("dynamodb")
    arn = dynamodb.create_table(**request)["TableDescription"]["TableArn"]
    ttl = inputs.get("ttl") or {}
    if ttl.get("enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]},
        )
    notes = []
    if (inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
        notes.append("point-in-time recovery is recorded but the emulator keeps no backups")
    return Created(id=name, outputs={"name": name, "arn": arn}, notes=notes)


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": index["name"],
        "KeySchema": _as_request(index["keySchemas"]),
        "Projection": {"ProjectionType": index["projectionType"]},
    }


# -- IAM ---------------------------------------------------------------------------------------


@creates("aws:iam/role:Role", "assumeRolePolicy", "description")
def create_role(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical)
    role = ctx.client("iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=inputs["assumeRolePolicy"],
        Description=inputs.get("description") or "",
    )["Role"]
    return Created(
        id=name,
        outputs={"name": name, "arn": role["Arn"], "uniqueId": role["RoleId"]},
        notes=[IAM_NOT_ENFORCED],
    )


@creates("aws:iam/rolePolicy:RolePolicy", "role", "policy")
def create_role_policy(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical)
    role = str(inputs["role"])  # the role's id, which is its name
    ctx.client("iam").put_role_policy(
        RoleName=role, PolicyName=name, PolicyDocument=inputs["policy"]
    )
    return Created(id=f"{role}:{name}", outputs={"name": name})


# -- CloudWatch Logs, CloudWatch, SNS ------------------------------------------------------------


@creates("aws:cloudwatch/logGroup:LogGroup", "name", "retentionInDays")
def create_log_group(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs["name"])
    logs = ctx.client("logs")
    logs.create_log_group(logGroupName=name)
    logs.put_retention_policy(logGroupName=name, retentionInDays=int(inputs["retentionInDays"]))
    return Created(id=name, outputs={"name": name, "arn": ctx.arn("logs", f"log-group:{name}")})


_ALARM_INPUTS = {
    "alarmDescription": "AlarmDescription",
    "namespace": "Namespace",
    "metricName": "MetricName",
    "statistic": "Statistic",
    "period": "Period",
    "evaluationPeriods": "EvaluationPeriods",
    "threshold": "Threshold",
    "comparisonOperator": "ComparisonOperator",
    "treatMissingData": "TreatMissingData",
    "alarmActions": "AlarmActions",
    "okActions": "OKActions",
}


@creates("aws:cloudwatch/metricAlarm:MetricAlarm", *_ALARM_INPUTS, "dimensions", "metricQueries")
def create_metric_alarm(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical, max_len=255)
    request = {"AlarmName": name, **_mapped(inputs, _ALARM_INPUTS)}
    if "metricQueries" in inputs:  # metric math: the queries name the metrics
        request["Metrics"] = [_metric_query(query) for query in inputs["metricQueries"]]
    else:
        request["Dimensions"] = _dimensions(inputs.get("dimensions"))
    ctx.client("cloudwatch").put_metric_alarm(**request)
    notes = [
        "alarms are created but never fire: the emulator produces no AWS/* metrics and does "
        "not extract the functions' EMF metrics from their logs"
    ]
    if request.get("AlarmActions") or request.get("OKActions"):
        notes.append("alarm actions are wired to SNS, whose e-mail delivery is a stub here")
    return Created(
        id=name, outputs={"arn": ctx.arn("cloudwatch", f"alarm:{name}"), "name": name}, notes=notes
    )


def _dimensions(dimensions: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"Name": k, "Value": str(v)} for k, v in (dimensions or {}).items()]


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """One `metricQueries` item as PutMetricAlarm's `Metrics` takes it."""
    converted: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData"))}
    if "expression" in query:
        converted["Expression"] = query["expression"]
    if "label" in query:
        converted["Label"] = query["label"]
    if "metric" in query:
        metric = query["metric"]
        converted["MetricStat"] = {
            "Metric": {
                "Namespace": metric["namespace"],
                "MetricName": metric["metricName"],
                "Dimensions": _dimensions(metric.get("dimensions")),
            },
            "Period": metric["period"],
            "Stat": metric["stat"],
        }
    return converted


@creates("aws:cloudwatch/dashboard:Dashboard", "dashboardName", "dashboardBody")
def create_dashboard(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs["dashboardName"])
    ctx.client("cloudwatch").put_dashboard(**_as_request(inputs))
    return Created(
        id=name,
        outputs={"dashboardArn": ctx.arn("cloudwatch", f"dashboard/{name}", region=False)},
        notes=[
            "dashboard stored in the emulator (GetDashboard), but there is no console: "
            "dashboardUrl points at the AWS console"
        ],
    )


@creates("aws:sns/topic:Topic")
def create_topic(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical, max_len=256)
    arn = ctx.client("sns").create_topic(Name=name)["TopicArn"]
    return Created(id=arn, outputs={"name": name, "arn": arn})


@creates("aws:sns/topicSubscription:TopicSubscription", "topic", "protocol", "endpoint")
def create_topic_subscription(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    reply = ctx.client("sns").subscribe(**_as_request(inputs, topic="TopicArn"))
    arn = reply.get("SubscriptionArn") or f"{inputs['topic']}:{logical}"
    return Created(
        id=arn,
        outputs={"arn": arn},
        notes=[f"{inputs['protocol']} delivery is a stub: the emulator sends nothing"],
    )


# -- Lambda ------------------------------------------------------------------------------------


def bundle_bytes(code: Any) -> bytes:
    """The zip Lambda would receive for a `code` input: the program's built bundle file."""
    if not isinstance(code, pulumi.FileArchive):
        raise TypeError(f"unsupported Lambda code input {type(code).__name__}: {code!r}")
    return Path(code.path).read_bytes()


@creates(
    "aws:lambda/function:Function",
    "name",
    "description",
    "role",
    "runtime",
    "handler",
    "code",
    # The provider compares it with the deployed code to decide on an update; no API takes it.
    "sourceCodeHash",
    "architectures",
    "memorySize",
    "timeout",
    "reservedConcurrentExecutions",
    "environment.variables",
)
def create_function(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs["name"])
    request: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": inputs["runtime"],
        "Role": inputs["role"],
        "Handler": inputs["handler"],
        "Code": {"ZipFile": bundle_bytes(inputs["code"])},
        "MemorySize": int(inputs["memorySize"]),
        "Timeout": int(inputs["timeout"]),
        "Architectures": list(inputs["architectures"]),
        "Environment": {
            "Variables": {
                str(k): str(v)
                for k, v in ((inputs.get("environment") or {}).get("variables") or {}).items()
            }
        },
        "Description": inputs.get("description") or "",
    }
    lam = ctx.client("lambda")
    function = lam.create_function(**request)
    # A new function starts Pending, in the emulator as in AWS; check every 0.1 s, up to 20 s.
    lam.get_waiter("function_active").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 200}
    )
    if "reservedConcurrentExecutions" in inputs:
        # The emulator enforces it: invocations beyond it are throttled, as in AWS.
        lam.put_function_concurrency(
            FunctionName=name,
            ReservedConcurrentExecutions=int(inputs["reservedConcurrentExecutions"]),
        )
    arn = function["FunctionArn"]
    return Created(
        id=name,
        outputs={
            "name": name,
            "arn": arn,
            "qualifiedArn": f"{arn}:$LATEST",
            "version": "$LATEST",
            "invokeArn": (
                f"arn:aws:apigateway:{ctx.region}:lambda:path/2015-03-31/functions/{arn}/invocations"
            ),
        },
        notes=[
            f"{request['Runtime']}/{'+'.join(request['Architectures'])} runs here on this "
            f"machine's Python and CPU; memorySize={request['MemorySize']} is not enforced"
        ],
    )


@creates(
    "aws:lambda/eventSourceMapping:EventSourceMapping",
    "eventSourceArn",
    "functionName",
    "batchSize",
    "functionResponseTypes",
    "scalingConfig.maximumConcurrency",
)
def create_event_source_mapping(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    mapping = ctx.client("lambda").create_event_source_mapping(**_as_request(inputs))
    return Created(
        id=mapping["UUID"],
        outputs={
            "uuid": mapping["UUID"],
            "arn": mapping.get("EventSourceMappingArn", ""),
            "functionArn": mapping.get("FunctionArn", ""),
        },
    )


@creates("aws:lambda/permission:Permission", "function", "action", "principal", "sourceArn")
def create_permission(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    statement_id = auto_name(logical, max_len=100)  # the provider's generated statement id
    ctx.client("lambda").add_permission(
        StatementId=statement_id, **_as_request(inputs, function="FunctionName")
    )
    return Created(id=statement_id, outputs={"statementId": statement_id}, notes=[IAM_NOT_ENFORCED])


# -- EventBridge (schedules) ---------------------------------------------------------------------


@creates("aws:cloudwatch/eventRule:EventRule", "scheduleExpression", "description")
def create_event_rule(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical)
    arn = ctx.client("events").put_rule(
        Name=name,
        ScheduleExpression=inputs["scheduleExpression"],
        Description=inputs.get("description") or "",
        State="ENABLED",
    )["RuleArn"]
    return Created(
        id=name,
        outputs={"name": name, "arn": arn},
        notes=[
            f"schedules are run by the emulator's EventBridge scheduler, which looks every "
            f"{EMULATOR_SCHEDULER_TICK_S} s: a rate(...) rule fires up to "
            f"{EMULATOR_SCHEDULER_TICK_S} s late, the first time one interval after `local up`"
        ],
    )


@creates("aws:cloudwatch/eventTarget:EventTarget", "rule", "arn")
def create_event_target(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    rule = str(inputs["rule"])
    target_id = auto_name(logical)  # like the provider's generated id
    reply = ctx.client("events").put_targets(
        Rule=rule, Targets=[{"Id": target_id, "Arn": inputs["arn"]}]
    )
    if reply.get("FailedEntryCount"):
        raise RuntimeError(f"PutTargets refused the target: {reply.get('FailedEntries')}")
    return Created(id=f"{rule}-{target_id}", outputs={"targetId": target_id})


# -- API Gateway v2 (HTTP API) ------------------------------------------------------------------


@creates("aws:apigatewayv2/api:Api", "protocolType", "description")
def create_api(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = auto_name(logical, max_len=128)
    api_id = ctx.client("apigatewayv2").create_api(
        Name=name,
        ProtocolType=inputs["protocolType"],
        Description=inputs.get("description") or "",
    )["ApiId"]
    return Created(
        id=api_id,
        outputs={
            # `<api id>.execute-api.localhost` resolves to 127.0.0.1 for curl.
            "apiEndpoint": f"http://{api_id}.execute-api.localhost:{ctx.port}",
            "executionArn": ctx.arn("execute-api", api_id),
            "arn": f"arn:aws:apigateway:{ctx.region}::/apis/{api_id}",
            "name": name,
        },
    )


@creates(
    "aws:apigatewayv2/integration:Integration",
    "apiId",
    "integrationType",
    "integrationMethod",
    "integrationUri",
    "payloadFormatVersion",
)
def create_integration(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    integration = ctx.client("apigatewayv2").create_integration(**_as_request(inputs))
    return Created(id=integration["IntegrationId"], outputs={})


@creates(
    "aws:apigatewayv2/authorizer:Authorizer",
    "apiId",
    "name",
    "authorizerType",
    "identitySources",
    "jwtConfiguration.issuer",
    "jwtConfiguration.audiences",
)
def create_authorizer(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    authorizer = ctx.client("apigatewayv2").create_authorizer(
        **_as_request(inputs, identitySources="IdentitySource", audiences="Audience")
    )
    # The emulator verifies the token as API Gateway does: RS256 signature against the issuer's
    # JWKS (a pool of its own, or the issuer's OpenID discovery), iss, exp/nbf/iat, aud (or
    # client_id), then the route's scopes (403), with API Gateway's reply bodies.
    return Created(
        id=authorizer["AuthorizerId"],
        outputs={},
        notes=[
            "JWT authorizer enforced (signature, issuer, expiry, audience, scopes) but its "
            "401s lack AWS's www-authenticate header naming the reason"
        ],
    )


@creates(
    "aws:apigatewayv2/route:Route",
    "apiId",
    "routeKey",
    "target",
    "authorizationType",
    "authorizerId",
    "authorizationScopes",
)
def create_route(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    route = ctx.client("apigatewayv2").create_route(**_as_request(inputs))
    return Created(id=route["RouteId"], outputs={})


@creates(
    "aws:apigatewayv2/stage:Stage",
    "apiId",
    "name",
    "autoDeploy",
    "defaultRouteSettings.throttlingRateLimit",
    "defaultRouteSettings.throttlingBurstLimit",
    "accessLogSettings.destinationArn",
    "accessLogSettings.format",
)
def create_stage(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs["name"])
    api_id = str(inputs["apiId"])
    throttling = inputs["defaultRouteSettings"]
    ctx.client("apigatewayv2").create_stage(**_as_request(inputs, name="StageName"))
    return Created(
        id=name,
        outputs={
            "name": name,
            "invokeUrl": f"http://{api_id}.execute-api.localhost:{ctx.port}/{name}",
            "executionArn": ctx.arn("execute-api", f"{api_id}/{name}"),
            "arn": f"arn:aws:apigateway:{ctx.region}::/apis/{api_id}/stages/{name}",
        },
        notes=[
            f"throttling (rate {throttling['throttlingRateLimit']}/s, burst "
            f"{throttling['throttlingBurstLimit']}) stored but not enforced: the emulator never "
            "answers 429 for rate",
            "access logging stored but not written by the emulator",
        ],
    )


# -- Cognito (the stack's own token issuer) ------------------------------------------------------


@creates("aws:cognito/userPool:UserPool", "name", "adminCreateUserConfig.allowAdminCreateUserOnly")
def create_user_pool(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    request = _as_request(inputs, name="PoolName")
    pool = ctx.client("cognito-idp").create_user_pool(**request)["UserPool"]
    pool_id = pool["Id"]
    return Created(
        id=pool_id,
        outputs={
            "arn": pool.get("Arn") or ctx.arn("cognito-idp", f"userpool/{pool_id}"),
            "name": pool["Name"],
            "endpoint": f"cognito-idp.{ctx.region}.amazonaws.com/{pool_id}",
        },
    )


@creates("aws:cognito/resourceServer:ResourceServer", "userPoolId", "identifier", "name", "scopes")
def create_resource_server(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    identifier = str(inputs["identifier"])
    ctx.client("cognito-idp").create_resource_server(**_as_request(inputs))
    scopes = [f"{identifier}/{scope['scopeName']}" for scope in inputs["scopes"]]
    return Created(id=f"{inputs['userPoolId']}|{identifier}", outputs={"scopeIdentifiers": scopes})


@creates(
    "aws:cognito/userPoolClient:UserPoolClient",
    "name",
    "userPoolId",
    "generateSecret",
    "allowedOauthFlowsUserPoolClient",
    "allowedOauthFlows",
    "allowedOauthScopes",
    "supportedIdentityProviders",
    "accessTokenValidity",
    "tokenValidityUnits.accessToken",
)
def create_user_pool_client(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    request = _as_request(
        inputs,
        name="ClientName",
        allowedOauthFlowsUserPoolClient="AllowedOAuthFlowsUserPoolClient",
        allowedOauthFlows="AllowedOAuthFlows",
        allowedOauthScopes="AllowedOAuthScopes",
    )
    client = ctx.client("cognito-idp").create_user_pool_client(**request)["UserPoolClient"]
    # The secret is not an output here either: `taskctl token` reads it from the emulator.
    return Created(id=client["ClientId"], outputs={"name": client["ClientName"]})


@creates("aws:cognito/userPoolDomain:UserPoolDomain", "domain", "userPoolId")
def create_user_pool_domain(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    domain = str(inputs["domain"])
    ctx.client("cognito-idp").create_user_pool_domain(
        Domain=domain, UserPoolId=inputs["userPoolId"]
    )
    return Created(
        id=domain,
        outputs={"domain": domain},
        notes=[
            f"the token endpoint is the emulator's, {ctx.endpoint_url}/oauth2/token, not the "
            "exported authTokenUrl (https://<domain>.auth.<region>.amazoncognito.com); "
            "`python -m taskctl token` uses it"
        ],
    )
