"""One creator per Pulumi resource type: a declared resource's resolved inputs -> an emulator call.

Each creator receives the resource's logical name and its inputs exactly as the Pulumi program
resolved them (camelCase property names of pulumi-aws), creates the resource in the emulator
through boto3, and returns the emulator's real id and outputs (ARNs, URLs, names) so that every
cross-reference in the program wires up for real. Settings the emulator accepts but does not act
on, and settings it cannot take, are returned as `notes`, which the deployer prints: nothing is
skipped silently.

Input names follow pulumi-aws 7.x; outputs include the attributes the program reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pulumi

LAMBDA_ACTIVE_TIMEOUT_S = 20.0


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
    stack: str
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        return self._clients[service]

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account_id}:{resource}"


Creator = Callable[[EmulatorContext, str, Mapping[str, Any]], Created]
CREATORS: dict[str, Creator] = {}


def creates(type_token: str) -> Callable[[Creator], Creator]:
    def register(creator: Creator) -> Creator:
        CREATORS[type_token] = creator
        return creator

    return register


def physical_name(
    logical: str, inputs: Mapping[str, Any], key: str = "name", max_len: int = 64
) -> str:
    """The name the program chose, or an auto-name like Pulumi's (`<logical>-<7 hex>`)."""
    chosen = inputs.get(key)
    if chosen:
        return str(chosen)
    if inputs.get("namePrefix"):
        logical = str(inputs["namePrefix"]).rstrip("-")
    suffix = hashlib.sha1(logical.encode()).hexdigest()[:7]
    return f"{logical[: max_len - 8]}-{suffix}"


def _tags(inputs: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (inputs.get("tags") or {}).items()}


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- SQS -----------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = {
    "visibilityTimeoutSeconds": "VisibilityTimeout",
    "messageRetentionSeconds": "MessageRetentionPeriod",
    "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "delaySeconds": "DelaySeconds",
    "maxMessageSize": "MaximumMessageSize",
    "sqsManagedSseEnabled": "SqsManagedSseEnabled",
    "fifoQueue": "FifoQueue",
    "contentBasedDeduplication": "ContentBasedDeduplication",
}


def _sqs_bool_or_str(value: Any) -> str:
    """An SQS attribute value. Pulumi hands numbers over as floats (`30.0`); SQS wants `30`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@creates("aws:sqs/queue:Queue")
def create_queue(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=80)
    attributes = {
        aws: _sqs_bool_or_str(inputs[key])
        for key, aws in _QUEUE_ATTRIBUTES.items()
        if inputs.get(key) is not None
    }
    for key, aws in (("redrivePolicy", "RedrivePolicy"), ("policy", "Policy")):
        if inputs.get(key):
            attributes[aws] = _json_text(inputs[key])
    notes = []
    if inputs.get("redriveAllowPolicy"):
        attributes["RedriveAllowPolicy"] = _json_text(inputs["redriveAllowPolicy"])
    if inputs.get("kmsMasterKeyId"):
        notes.append("kmsMasterKeyId not applied: the emulator does not encrypt queues")
    sqs = ctx.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes, tags=_tags(inputs))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Created(id=url, outputs={"name": name, "arn": arn, "url": url}, notes=notes)


@creates("aws:sqs/redrivePolicy:RedrivePolicy")
def create_redrive_policy(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    ctx.client("sqs").set_queue_attributes(
        QueueUrl=inputs["queueUrl"],
        Attributes={"RedrivePolicy": _json_text(inputs["redrivePolicy"])},
    )
    return Created(id=str(inputs["queueUrl"]), outputs={})


@creates("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
def create_redrive_allow_policy(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    ctx.client("sqs").set_queue_attributes(
        QueueUrl=inputs["queueUrl"],
        Attributes={"RedriveAllowPolicy": _json_text(inputs["redriveAllowPolicy"])},
    )
    return Created(id=str(inputs["queueUrl"]), outputs={})


@creates("aws:sqs/queuePolicy:QueuePolicy")
def create_queue_policy(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    ctx.client("sqs").set_queue_attributes(
        QueueUrl=inputs["queueUrl"], Attributes={"Policy": _json_text(inputs["policy"])}
    )
    return Created(
        id=str(inputs["queueUrl"]),
        outputs={},
        notes=["queue policy stored but not enforced (the emulator runs without IAM checks)"],
    )


# -- DynamoDB --------------------------------------------------------------------------------


@creates("aws:dynamodb/table:Table")
def create_table(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=255)
    key_schema = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
    if inputs.get("rangeKey"):
        key_schema.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]}
            for a in inputs.get("attributes") or []
        ],
        "KeySchema": key_schema,
        "BillingMode": inputs.get("billingMode") or "PROVISIONED",
        "DeletionProtectionEnabled": bool(inputs.get("deletionProtectionEnabled")),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = {
            "ReadCapacityUnits": int(inputs.get("readCapacity") or 1),
            "WriteCapacityUnits": int(inputs.get("writeCapacity") or 1),
        }
    if inputs.get("globalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            _gsi(index) for index in inputs["globalSecondaryIndexes"]
        ]
    if _tags(inputs):
        request["Tags"] = [{"Key": k, "Value": v} for k, v in _tags(inputs).items()]
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
    if (inputs.get("serverSideEncryption") or {}).get("enabled"):
        notes.append("serverSideEncryption not applied: the emulator does not encrypt tables")
    return Created(
        id=name,
        outputs={"name": name, "arn": arn, "streamArn": "", "hashKey": inputs["hashKey"]},
        notes=notes,
    )


def _gsi(index: Mapping[str, Any]) -> dict[str, Any]:
    if not index.get("hashKey"):  # e.g. the newer `keySchemas` form, which nothing declares yet
        raise ValueError(
            f"global secondary index {index.get('name')!r} has no hashKey; the local stack "
            "reads an index's keys from hashKey/rangeKey (see _gsi in taskctl/local/creators.py)"
        )
    key_schema = [{"AttributeName": index["hashKey"], "KeyType": "HASH"}]
    if index.get("rangeKey"):
        key_schema.append({"AttributeName": index["rangeKey"], "KeyType": "RANGE"})
    projection: dict[str, Any] = {"ProjectionType": index.get("projectionType") or "ALL"}
    if index.get("nonKeyAttributes"):
        projection["NonKeyAttributes"] = list(index["nonKeyAttributes"])
    return {"IndexName": index["name"], "KeySchema": key_schema, "Projection": projection}


# -- IAM ---------------------------------------------------------------------------------------

IAM_NOT_ENFORCED = "IAM is stored but not enforced: the emulator runs without permission checks"


@creates("aws:iam/role:Role")
def create_role(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs)
    role = ctx.client("iam").create_role(
        RoleName=name,
        Path=inputs.get("path") or "/",
        AssumeRolePolicyDocument=_json_text(inputs["assumeRolePolicy"]),
        Description=inputs.get("description") or "",
    )["Role"]
    return Created(
        id=name,
        outputs={"name": name, "arn": role["Arn"], "uniqueId": role["RoleId"]},
        notes=[IAM_NOT_ENFORCED],
    )


@creates("aws:iam/rolePolicy:RolePolicy")
def create_role_policy(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs)
    role = _role_name(inputs["role"])
    ctx.client("iam").put_role_policy(
        RoleName=role, PolicyName=name, PolicyDocument=_json_text(inputs["policy"])
    )
    return Created(id=f"{role}:{name}", outputs={"name": name})


@creates("aws:iam/policy:Policy")
def create_policy(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=128)
    policy = ctx.client("iam").create_policy(
        PolicyName=name, Path=inputs.get("path") or "/", PolicyDocument=_json_text(inputs["policy"])
    )["Policy"]
    return Created(id=policy["Arn"], outputs={"name": name, "arn": policy["Arn"]})


@creates("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
def create_role_policy_attachment(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    role = _role_name(inputs["role"])
    policy_arn = str(inputs["policyArn"])
    notes = []
    if policy_arn.startswith("arn:aws:iam::aws:policy/"):
        # An AWS-managed policy exists in every real account but not in an empty emulator.
        notes.append(f"AWS-managed policy {policy_arn} recorded only (not present in the emulator)")
    else:
        ctx.client("iam").attach_role_policy(RoleName=role, PolicyArn=policy_arn)
    return Created(
        id=f"{role}-{hashlib.sha1(policy_arn.encode()).hexdigest()[:8]}", outputs={}, notes=notes
    )


def _role_name(role: Any) -> str:
    """`role` inputs take a name or an ARN."""
    return str(role).rsplit("/", 1)[-1]


# -- CloudWatch Logs, CloudWatch, SNS ------------------------------------------------------------


@creates("aws:cloudwatch/logGroup:LogGroup")
def create_log_group(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=512)
    logs = ctx.client("logs")
    logs.create_log_group(logGroupName=name, tags=_tags(inputs))
    if inputs.get("retentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(inputs["retentionInDays"]))
    return Created(id=name, outputs={"name": name, "arn": ctx.arn("logs", f"log-group:{name}")})


@creates("aws:cloudwatch/metricAlarm:MetricAlarm")
def create_metric_alarm(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=255)
    request: dict[str, Any] = {
        "AlarmName": name,
        "AlarmDescription": inputs.get("alarmDescription") or "",
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "ComparisonOperator": inputs["comparisonOperator"],
        "ActionsEnabled": inputs.get("actionsEnabled", True) is not False,
        "AlarmActions": list(inputs.get("alarmActions") or []),
        "OKActions": list(inputs.get("okActions") or []),
        "InsufficientDataActions": list(inputs.get("insufficientDataActions") or []),
        "TreatMissingData": inputs.get("treatMissingData") or "missing",
    }
    for key, aws in (
        ("threshold", "Threshold"),
        ("datapointsToAlarm", "DatapointsToAlarm"),
        ("metricName", "MetricName"),
        ("namespace", "Namespace"),
        ("statistic", "Statistic"),
        ("extendedStatistic", "ExtendedStatistic"),
        ("period", "Period"),
        ("unit", "Unit"),
    ):
        if inputs.get(key) is not None:
            request[aws] = inputs[key]
    if inputs.get("dimensions"):
        request["Dimensions"] = [
            {"Name": k, "Value": str(v)} for k, v in inputs["dimensions"].items()
        ]
    if inputs.get("metricQueries"):
        request["Metrics"] = [_metric_query(query) for query in inputs["metricQueries"]]
    ctx.client("cloudwatch").put_metric_alarm(**request)
    # The emulator evaluates alarms only against PutMetricData: it emits no AWS/* service
    # metrics and does not turn the functions' embedded-metric log lines into metrics.
    notes = [
        "alarms are created but never fire: the emulator produces no AWS/* metrics and does "
        "not extract the functions' EMF metrics from their logs"
    ]
    if request["AlarmActions"] or request["OKActions"]:
        notes.append("alarm actions are wired to SNS, whose e-mail delivery is a stub here")
    return Created(
        id=name, outputs={"arn": ctx.arn("cloudwatch", f"alarm:{name}"), "name": name}, notes=notes
    )


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"Id": query["id"]}
    for key, aws in (("expression", "Expression"), ("label", "Label"), ("period", "Period")):
        if query.get(key) is not None:
            converted[aws] = query[key]
    converted["ReturnData"] = bool(query.get("returnData", False))
    metric = query.get("metric")
    if metric:
        converted["MetricStat"] = {
            "Metric": {
                "Namespace": metric.get("namespace"),
                "MetricName": metric.get("metricName"),
                "Dimensions": [
                    {"Name": k, "Value": str(v)}
                    for k, v in (metric.get("dimensions") or {}).items()
                ],
            },
            "Period": int(metric["period"]),
            "Stat": metric["stat"],
        }
        if metric.get("unit"):
            converted["MetricStat"]["Unit"] = metric["unit"]
    return converted


@creates("aws:cloudwatch/dashboard:Dashboard")
def create_dashboard(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs["dashboardName"])
    ctx.client("cloudwatch").put_dashboard(
        DashboardName=name, DashboardBody=_json_text(inputs["dashboardBody"])
    )
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
    name = physical_name(logical, inputs, max_len=256)
    arn = ctx.client("sns").create_topic(Name=name)["TopicArn"]
    return Created(id=arn, outputs={"name": name, "arn": arn})


@creates("aws:sns/topicSubscription:TopicSubscription")
def create_topic_subscription(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    reply = ctx.client("sns").subscribe(
        TopicArn=inputs["topic"], Protocol=inputs["protocol"], Endpoint=inputs["endpoint"]
    )
    arn = reply.get("SubscriptionArn") or f"{inputs['topic']}:{logical}"
    notes = []
    if inputs["protocol"] in ("email", "email-json", "sms"):
        notes.append(f"{inputs['protocol']} delivery is a stub: the emulator sends nothing")
    return Created(id=arn, outputs={"arn": arn}, notes=notes)


# -- Lambda ------------------------------------------------------------------------------------


def bundle_bytes(code: Any) -> bytes:
    """The zip Lambda would receive for a `code` input (FileArchive, AssetArchive, FileAsset)."""
    if isinstance(code, pulumi.FileArchive):
        path = Path(code.path)
        if path.is_dir():
            return _zip_directory(path)
        return path.read_bytes()
    if isinstance(code, pulumi.AssetArchive):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, asset in code.assets.items():
                _add_asset(archive, name, asset)
        return buffer.getvalue()
    raise TypeError(f"unsupported Lambda code input {type(code).__name__}: {code!r}")


def _add_asset(archive: zipfile.ZipFile, name: str, asset: Any) -> None:
    if isinstance(asset, pulumi.StringAsset):
        archive.writestr(name, asset.text)
    elif isinstance(asset, pulumi.FileAsset):
        archive.write(asset.path, name)
    elif isinstance(asset, pulumi.FileArchive) and Path(asset.path).is_dir():
        for file in sorted(Path(asset.path).rglob("*")):
            if file.is_file():
                archive.write(file, f"{name}/{file.relative_to(asset.path)}")
    else:
        raise TypeError(f"unsupported asset {type(asset).__name__} at {name!r} in an AssetArchive")


def _zip_directory(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(root.rglob("*")):
            if file.is_file():
                archive.write(file, str(file.relative_to(root)))
    return buffer.getvalue()


@creates("aws:lambda/function:Function")
def create_function(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs)
    request: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": inputs.get("runtime") or "python3.12",
        "Role": inputs["role"],
        "Handler": inputs["handler"],
        "Code": {"ZipFile": bundle_bytes(inputs["code"])},
        "MemorySize": int(inputs.get("memorySize") or 128),
        "Timeout": int(inputs.get("timeout") or 3),
        "Architectures": list(inputs.get("architectures") or ["x86_64"]),
        "Environment": {
            "Variables": {
                str(k): str(v)
                for k, v in ((inputs.get("environment") or {}).get("variables") or {}).items()
            }
        },
        "Description": inputs.get("description") or "",
        "Tags": _tags(inputs),
    }
    logging_config = inputs.get("loggingConfig") or {}
    if logging_config:
        request["LoggingConfig"] = {
            aws: logging_config[key]
            for key, aws in (
                ("logFormat", "LogFormat"),
                ("logGroup", "LogGroup"),
                ("applicationLogLevel", "ApplicationLogLevel"),
                ("systemLogLevel", "SystemLogLevel"),
            )
            if logging_config.get(key)
        }
    if inputs.get("reservedConcurrentExecutions") not in (None, -1):
        request_reserved = int(inputs["reservedConcurrentExecutions"])
    else:
        request_reserved = None
    lam = ctx.client("lambda")
    function = lam.create_function(**request)
    if request_reserved is not None:
        lam.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=request_reserved
        )
    _wait_active(lam, name)
    arn = function["FunctionArn"]
    notes = [
        f"{request['Runtime']}/{'+'.join(request['Architectures'])} runs here on this machine's "
        f"Python and CPU; memorySize={request['MemorySize']} is not enforced",
    ]
    if (inputs.get("tracingConfig") or {}).get("mode") == "Active":
        notes.append("X-Ray tracing not emulated")
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
            "sourceCodeHash": function.get("CodeSha256", ""),
        },
        notes=notes,
    )


def _wait_active(lam: Any, name: str) -> None:
    deadline = time.monotonic() + LAMBDA_ACTIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        state = lam.get_function_configuration(FunctionName=name).get("State", "Active")
        if state == "Active":
            return
        if state == "Failed":
            raise RuntimeError(f"Lambda function {name} failed to become active in the emulator")
        time.sleep(0.1)
    raise RuntimeError(f"Lambda function {name} still not active after {LAMBDA_ACTIVE_TIMEOUT_S} s")


@creates("aws:lambda/eventSourceMapping:EventSourceMapping")
def create_event_source_mapping(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    request: dict[str, Any] = {
        "EventSourceArn": inputs["eventSourceArn"],
        "FunctionName": inputs["functionName"],
        "Enabled": inputs.get("enabled", True) is not False,
        "FunctionResponseTypes": list(inputs.get("functionResponseTypes") or []),
    }
    if inputs.get("batchSize") is not None:
        request["BatchSize"] = int(inputs["batchSize"])
    if inputs.get("maximumBatchingWindowInSeconds") is not None:
        request["MaximumBatchingWindowInSeconds"] = int(inputs["maximumBatchingWindowInSeconds"])
    scaling = inputs.get("scalingConfig") or {}
    if scaling.get("maximumConcurrency"):
        request["ScalingConfig"] = {"MaximumConcurrency": int(scaling["maximumConcurrency"])}
    notes = []
    if inputs.get("filterCriteria"):
        request["FilterCriteria"] = {
            "Filters": [
                {"Pattern": f["pattern"]} for f in inputs["filterCriteria"].get("filters") or []
            ]
        }
    mapping = ctx.client("lambda").create_event_source_mapping(**request)
    return Created(
        id=mapping["UUID"],
        outputs={
            "uuid": mapping["UUID"],
            "arn": mapping.get("EventSourceMappingArn", ""),
            "functionArn": mapping.get("FunctionArn", ""),
        },
        notes=notes,
    )


@creates("aws:lambda/permission:Permission")
def create_permission(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    statement_id = inputs.get("statementId") or physical_name(logical, {}, max_len=100)
    request = {
        "FunctionName": inputs["function"],
        "StatementId": statement_id,
        "Action": inputs["action"],
        "Principal": inputs["principal"],
    }
    if inputs.get("sourceArn"):
        request["SourceArn"] = inputs["sourceArn"]
    ctx.client("lambda").add_permission(**request)
    return Created(id=statement_id, outputs={"statementId": statement_id}, notes=[IAM_NOT_ENFORCED])


@creates("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
def create_event_invoke_config(
    ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]
) -> Created:
    request: dict[str, Any] = {"FunctionName": inputs["functionName"]}
    if inputs.get("maximumRetryAttempts") is not None:
        request["MaximumRetryAttempts"] = int(inputs["maximumRetryAttempts"])
    if inputs.get("maximumEventAgeInSeconds") is not None:
        request["MaximumEventAgeInSeconds"] = int(inputs["maximumEventAgeInSeconds"])
    ctx.client("lambda").put_function_event_invoke_config(**request)
    return Created(id=str(inputs["functionName"]), outputs={})


# -- EventBridge (schedules) ---------------------------------------------------------------------

# How often ministack's EventBridge scheduler looks for due rules (`_SCHEDULER_TICK_INTERVAL` in
# ministack/services/eventbridge.py): a rule fires on the first look after its interval is up.
EMULATOR_SCHEDULER_TICK_S = 10


def _only(token: str, inputs: Mapping[str, Any], supported: frozenset[str]) -> None:
    """Refuse inputs this creator would otherwise drop: a rule or target half-applied behaves
    differently from the declared one without saying so."""
    unsupported = sorted(key for key, value in inputs.items() if value and key not in supported)
    if unsupported:
        raise ValueError(
            f"{token} input(s) {', '.join(unsupported)} are not supported by the local stack; "
            "add them to its creator in taskctl/local/creators.py"
        )


@creates("aws:cloudwatch/eventRule:EventRule")
def create_event_rule(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    _only(
        "aws:cloudwatch/eventRule:EventRule",
        inputs,
        frozenset({"name", "namePrefix", "scheduleExpression", "description", "state", "tags"}),
    )
    name = physical_name(logical, inputs)
    request: dict[str, Any] = {
        "Name": name,
        "ScheduleExpression": inputs["scheduleExpression"],
        "Description": inputs.get("description") or "",
        "State": inputs.get("state") or "ENABLED",
    }
    if _tags(inputs):
        request["Tags"] = [{"Key": k, "Value": v} for k, v in _tags(inputs).items()]
    arn = ctx.client("events").put_rule(**request)["RuleArn"]
    return Created(
        id=name,
        outputs={"name": name, "arn": arn},
        notes=[
            f"schedules are run by the emulator's EventBridge scheduler, which looks every "
            f"{EMULATOR_SCHEDULER_TICK_S} s: a rate(...) rule fires up to "
            f"{EMULATOR_SCHEDULER_TICK_S} s late, the first time one interval after `local up`"
        ],
    )


@creates("aws:cloudwatch/eventTarget:EventTarget")
def create_event_target(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    _only("aws:cloudwatch/eventTarget:EventTarget", inputs, frozenset({"rule", "arn", "targetId"}))
    rule = str(inputs["rule"])
    # Like the provider's: a generated id unless the program chose one.
    target_id = str(inputs.get("targetId") or physical_name(logical, {}))
    reply = ctx.client("events").put_targets(
        Rule=rule, Targets=[{"Id": target_id, "Arn": inputs["arn"]}]
    )
    if reply.get("FailedEntryCount"):
        raise RuntimeError(f"PutTargets refused the target: {reply.get('FailedEntries')}")
    return Created(id=f"{rule}-{target_id}", outputs={"targetId": target_id})


# -- API Gateway v2 (HTTP API) ------------------------------------------------------------------


def _stage_url(ctx: EmulatorContext, api_id: str, stage: str) -> str:
    """The URL curl uses: `<api id>.execute-api.localhost` resolves to 127.0.0.1."""
    base = f"http://{api_id}.execute-api.localhost:{ctx.port}"
    return base if stage == "$default" else f"{base}/{stage}"


@creates("aws:apigatewayv2/api:Api")
def create_api(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = physical_name(logical, inputs, max_len=128)
    request: dict[str, Any] = {
        "Name": name,
        "ProtocolType": inputs.get("protocolType") or "HTTP",
        "Description": inputs.get("description") or "",
        "Tags": _tags(inputs),
    }
    if inputs.get("routeSelectionExpression"):
        request["RouteSelectionExpression"] = inputs["routeSelectionExpression"]
    if inputs.get("disableExecuteApiEndpoint") is not None:
        request["DisableExecuteApiEndpoint"] = bool(inputs["disableExecuteApiEndpoint"])
    cors = inputs.get("corsConfiguration")
    if cors:
        request["CorsConfiguration"] = {
            aws: cors[key]
            for key, aws in (
                ("allowOrigins", "AllowOrigins"),
                ("allowMethods", "AllowMethods"),
                ("allowHeaders", "AllowHeaders"),
                ("exposeHeaders", "ExposeHeaders"),
                ("maxAge", "MaxAge"),
                ("allowCredentials", "AllowCredentials"),
            )
            if cors.get(key) is not None
        }
    api = ctx.client("apigatewayv2").create_api(**request)
    api_id = api["ApiId"]
    return Created(
        id=api_id,
        outputs={
            "apiEndpoint": f"http://{api_id}.execute-api.localhost:{ctx.port}",
            "executionArn": ctx.arn("execute-api", api_id),
            "arn": f"arn:aws:apigateway:{ctx.region}::/apis/{api_id}",
            "name": name,
        },
    )


@creates("aws:apigatewayv2/integration:Integration")
def create_integration(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    request: dict[str, Any] = {
        "ApiId": inputs["apiId"],
        "IntegrationType": inputs["integrationType"],
    }
    for key, aws in (
        ("integrationUri", "IntegrationUri"),
        ("integrationMethod", "IntegrationMethod"),
        ("payloadFormatVersion", "PayloadFormatVersion"),
        ("timeoutMilliseconds", "TimeoutInMillis"),
        ("description", "Description"),
    ):
        if inputs.get(key) is not None:
            request[aws] = inputs[key]
    integration = ctx.client("apigatewayv2").create_integration(**request)
    return Created(id=integration["IntegrationId"], outputs={})


@creates("aws:apigatewayv2/route:Route")
def create_route(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    request: dict[str, Any] = {"ApiId": inputs["apiId"], "RouteKey": inputs["routeKey"]}
    for key, aws in (
        ("target", "Target"),
        ("authorizationType", "AuthorizationType"),
        ("operationName", "OperationName"),
    ):
        if inputs.get(key) is not None:
            request[aws] = inputs[key]
    route = ctx.client("apigatewayv2").create_route(**request)
    return Created(id=route["RouteId"], outputs={})


@creates("aws:apigatewayv2/stage:Stage")
def create_stage(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    name = str(inputs.get("name") or logical)
    api_id = str(inputs["apiId"])
    request: dict[str, Any] = {
        "ApiId": api_id,
        "StageName": name,
        "AutoDeploy": bool(inputs.get("autoDeploy", False)),
    }
    notes = []
    route_settings = inputs.get("defaultRouteSettings") or {}
    if route_settings:
        request["DefaultRouteSettings"] = {
            aws: route_settings[key]
            for key, aws in (
                ("throttlingRateLimit", "ThrottlingRateLimit"),
                ("throttlingBurstLimit", "ThrottlingBurstLimit"),
                ("detailedMetricsEnabled", "DetailedMetricsEnabled"),
            )
            if route_settings.get(key) is not None
        }
        if "throttlingRateLimit" in route_settings or "throttlingBurstLimit" in route_settings:
            notes.append(
                "throttling (rate "
                f"{route_settings.get('throttlingRateLimit')}/s, burst "
                f"{route_settings.get('throttlingBurstLimit')}) stored but not enforced: "
                "the emulator never answers 429 for rate"
            )
    access_logs = inputs.get("accessLogSettings") or {}
    if access_logs:
        request["AccessLogSettings"] = {
            "DestinationArn": access_logs["destinationArn"],
            "Format": access_logs["format"],
        }
        notes.append("access logging stored but not written by the emulator")
    if inputs.get("deploymentId"):
        request["DeploymentId"] = inputs["deploymentId"]
    ctx.client("apigatewayv2").create_stage(**request)
    return Created(
        id=name,
        outputs={
            "name": name,
            "invokeUrl": _stage_url(ctx, api_id, name),
            "executionArn": ctx.arn("execute-api", f"{api_id}/{name}"),
            "arn": f"arn:aws:apigateway:{ctx.region}::/apis/{api_id}/stages/{name}",
        },
        notes=notes,
    )


@creates("aws:apigatewayv2/deployment:Deployment")
def create_deployment(ctx: EmulatorContext, logical: str, inputs: Mapping[str, Any]) -> Created:
    deployment = ctx.client("apigatewayv2").create_deployment(
        ApiId=inputs["apiId"], Description=inputs.get("description") or ""
    )
    return Created(id=deployment["DeploymentId"], outputs={})
