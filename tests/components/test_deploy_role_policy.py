"""The CI deploy role's policy (deploy/deploy-role-policy.json) grants exactly what `pulumi up`,
`preview`, `refresh` and `destroy` need for the resource types the program declares: nothing
missing (a deploy would fail half-way), nothing extra (least privilege).

`TYPE_ACTIONS` is the contract: for each resource type, the IAM actions the AWS provider calls to
create, read, update, tag and delete it. A new resource type in the program fails
`test_every_declared_type_has_its_iam_actions_and_no_other_type_has_any` until it is added here
and to the policy.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

from taskctl.program import CreatedResource, RecordingMocks, project_name, run_program

POLICY_FILE = Path(__file__).resolve().parents[2] / "deploy" / "deploy-role-policy.json"

# Every stack, and the branch a stack file can switch on (an alarm e-mail adds its subscription),
# so a type only one configuration declares is still covered.
VARIANTS = {
    "dev": {},
    "prod": {},
    "dev with alarmEmail": {"alarmEmail": "ops@example.com"},
}

_SQS_QUEUE_ATTRIBUTES = frozenset({"sqs:GetQueueAttributes", "sqs:SetQueueAttributes"})
_HTTP_API = frozenset(
    {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"}
)

TYPE_ACTIONS: dict[str, frozenset[str]] = {
    # The explicit provider checks its credentials with sts:GetCallerIdentity, which needs no
    # permission; it creates nothing.
    "pulumi:providers:aws": frozenset(),
    "aws:sqs/queue:Queue": _SQS_QUEUE_ATTRIBUTES
    | {
        "sqs:CreateQueue",
        "sqs:ListQueueTags",
        "sqs:TagQueue",
        "sqs:UntagQueue",
        "sqs:DeleteQueue",
    },
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": _SQS_QUEUE_ATTRIBUTES,
    "aws:dynamodb/table:Table": frozenset(
        {
            "dynamodb:CreateTable",
            "dynamodb:DescribeTable",
            "dynamodb:UpdateTable",
            "dynamodb:DeleteTable",
            "dynamodb:DescribeTimeToLive",
            "dynamodb:UpdateTimeToLive",
            "dynamodb:DescribeContinuousBackups",
            "dynamodb:UpdateContinuousBackups",
            "dynamodb:ListTagsOfResource",
            "dynamodb:TagResource",
            "dynamodb:UntagResource",
        }
    ),
    "aws:iam/role:Role": frozenset(
        {
            "iam:CreateRole",
            "iam:GetRole",
            "iam:UpdateRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:DeleteRole",
            "iam:TagRole",
            "iam:UntagRole",
            # read, and checked empty before a delete
            "iam:ListRolePolicies",
            "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole",
        }
    ),
    "aws:iam/rolePolicy:RolePolicy": frozenset(
        {"iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"}
    ),
    "aws:lambda/function:Function": frozenset(
        {
            "lambda:CreateFunction",
            "lambda:GetFunction",
            "lambda:GetFunctionConfiguration",
            "lambda:GetFunctionCodeSigningConfig",
            "lambda:ListVersionsByFunction",
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "lambda:DeleteFunction",
            "lambda:ListTags",
            "lambda:TagResource",
            "lambda:UntagResource",
            # the api function's reserved concurrency (apiReservedConcurrency)
            "lambda:PutFunctionConcurrency",
            "lambda:GetFunctionConcurrency",
            "lambda:DeleteFunctionConcurrency",
            "iam:PassRole",  # a function is created with its role
        }
    ),
    "aws:lambda/permission:Permission": frozenset(
        {"lambda:AddPermission", "lambda:GetPolicy", "lambda:RemovePermission"}
    ),
    "aws:lambda/eventSourceMapping:EventSourceMapping": frozenset(
        {
            "lambda:CreateEventSourceMapping",
            "lambda:GetEventSourceMapping",
            "lambda:UpdateEventSourceMapping",
            "lambda:DeleteEventSourceMapping",
            # the provider's default tags: set on create, read back, changed on the mapping
            "lambda:TagResource",
            "lambda:ListTags",
            "lambda:UntagResource",
        }
    ),
    "aws:cloudwatch/logGroup:LogGroup": frozenset(
        {
            "logs:CreateLogGroup",
            "logs:DescribeLogGroups",
            "logs:PutRetentionPolicy",
            "logs:DeleteRetentionPolicy",
            "logs:DeleteLogGroup",
            "logs:ListTagsForResource",
            "logs:TagResource",
            "logs:UntagResource",
        }
    ),
    "aws:apigatewayv2/api:Api": _HTTP_API,
    "aws:apigatewayv2/integration:Integration": _HTTP_API,
    "aws:apigatewayv2/route:Route": _HTTP_API,
    "aws:apigatewayv2/authorizer:Authorizer": _HTTP_API,
    # The callers' user pool (apiAuth: jwt), its scopes, machine client and token domain.
    "aws:cognito/userPool:UserPool": frozenset(
        {
            "cognito-idp:CreateUserPool",
            "cognito-idp:DescribeUserPool",
            "cognito-idp:UpdateUserPool",
            "cognito-idp:DeleteUserPool",
            "cognito-idp:GetUserPoolMfaConfig",
            "cognito-idp:SetUserPoolMfaConfig",
            "cognito-idp:TagResource",
            "cognito-idp:UntagResource",
        }
    ),
    "aws:cognito/resourceServer:ResourceServer": frozenset(
        {
            "cognito-idp:CreateResourceServer",
            "cognito-idp:DescribeResourceServer",
            "cognito-idp:UpdateResourceServer",
            "cognito-idp:DeleteResourceServer",
        }
    ),
    "aws:cognito/userPoolClient:UserPoolClient": frozenset(
        {
            "cognito-idp:CreateUserPoolClient",
            "cognito-idp:DescribeUserPoolClient",
            "cognito-idp:UpdateUserPoolClient",
            "cognito-idp:DeleteUserPoolClient",
        }
    ),
    "aws:cognito/userPoolDomain:UserPoolDomain": frozenset(
        {
            "cognito-idp:CreateUserPoolDomain",
            "cognito-idp:DescribeUserPoolDomain",
            "cognito-idp:UpdateUserPoolDomain",
            "cognito-idp:DeleteUserPoolDomain",
        }
    ),
    # A stage with access logs sets up a CloudWatch Logs delivery (AWS's "Configuring logging
    # for an HTTP API": the caller needs these log-delivery permissions).
    "aws:apigatewayv2/stage:Stage": _HTTP_API
    | {
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
    },
    "aws:cloudwatch/eventRule:EventRule": frozenset(
        {
            "events:PutRule",
            "events:DescribeRule",
            "events:DeleteRule",
            "events:ListTagsForResource",
            "events:TagResource",
            "events:UntagResource",
        }
    ),
    "aws:cloudwatch/eventTarget:EventTarget": frozenset(
        {"events:PutTargets", "events:ListTargetsByRule", "events:RemoveTargets"}
    ),
    "aws:sns/topic:Topic": frozenset(
        {
            "sns:CreateTopic",
            "sns:GetTopicAttributes",
            "sns:SetTopicAttributes",
            "sns:DeleteTopic",
            "sns:ListTagsForResource",
            "sns:TagResource",
            "sns:UntagResource",
        }
    ),
    "aws:sns/topicSubscription:TopicSubscription": frozenset(
        {
            "sns:Subscribe",
            "sns:Unsubscribe",
            "sns:GetSubscriptionAttributes",
            "sns:SetSubscriptionAttributes",
        }
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": frozenset(
        {
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DescribeAlarms",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:ListTagsForResource",
            "cloudwatch:TagResource",
            "cloudwatch:UntagResource",
        }
    ),
    "aws:cloudwatch/dashboard:Dashboard": frozenset(
        {"cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"}
    ),
}

# The self-managed state backend (README "Deploy from CI"): the state objects in the S3 bucket,
# and the KMS key that encrypts the stacks' secrets. Not resources of the program.
STATE_BACKEND_STATEMENTS = {
    "PulumiStateBucket": {"s3:ListBucket", "s3:GetBucketLocation"},
    "PulumiStateObjects": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
    "PulumiSecretsKey": {"kms:Encrypt", "kms:Decrypt"},
}
# Statements on `Resource: "*"`, each for a documented reason: event source mappings are created
# before they have an ARN (scoped by a condition on the function instead), CloudWatch Logs'
# log-delivery actions support no resource-level permission, and neither do Cognito's
# CreateUserPool (scoped by a condition on the project tag the provider sets) and
# DescribeUserPoolDomain (a domain is no ARN).
UNSCOPED_STATEMENTS = {
    "QueueTriggers",
    "ApiAccessLogDelivery",
    "CreateCallerPool",
    "DescribeCallerPoolDomain",
}


@cache
def _declared() -> tuple[CreatedResource, ...]:
    resources: list[CreatedResource] = []
    for variant, overrides in VARIANTS.items():
        mocks = RecordingMocks()
        namespaced = {f"{project_name()}:{key}": value for key, value in overrides.items()}
        run_program(variant.split()[0], mocks, config_overrides=namespaced)
        resources += [r for r in mocks.resources if not r.type_token.startswith(project_name())]
    return tuple(resources)


def _statements() -> list[dict[str, Any]]:
    return json.loads(POLICY_FILE.read_text())["Statement"]


def _program_statements() -> list[dict[str, Any]]:
    return [s for s in _statements() if s["Sid"] not in STATE_BACKEND_STATEMENTS]


def test_every_declared_type_has_its_iam_actions_and_no_other_type_has_any() -> None:
    declared_types = {resource.type_token for resource in _declared()}
    assert declared_types - set(TYPE_ACTIONS) == set(), "add the new types' actions here"
    assert set(TYPE_ACTIONS) - declared_types == set(), "the program no longer declares these"


def test_policy_grants_exactly_the_actions_of_the_declared_types() -> None:
    needed = set().union(*TYPE_ACTIONS.values())
    granted = {action for s in _program_statements() for action in s["Action"]}
    assert needed - granted == set(), "missing: a deploy would fail on these calls"
    assert granted - needed == set(), "extra: no declared resource type needs these"


def test_state_backend_statements_grant_only_the_state_bucket_and_secrets_key() -> None:
    by_sid = {s["Sid"]: set(s["Action"]) for s in _statements()}
    assert {sid: by_sid.get(sid) for sid in STATE_BACKEND_STATEMENTS} == STATE_BACKEND_STATEMENTS


def test_every_statement_allows_exact_actions_and_names_its_resources() -> None:
    statements = _statements()
    assert len({s["Sid"] for s in statements}) == len(statements)
    for statement in statements:
        assert statement["Effect"] == "Allow", statement["Sid"]
        for action in statement["Action"]:
            service, _, name = action.partition(":")
            assert service and name and "*" not in action, (statement["Sid"], action)
        unscoped = "*" in statement["Resource"]
        assert unscoped == (statement["Sid"] in UNSCOPED_STATEMENTS), statement["Sid"]


def test_event_source_mappings_only_for_this_projects_functions() -> None:
    (statement,) = [s for s in _statements() if s["Sid"] == "QueueTriggers"]
    assert statement["Condition"] == {
        "ArnLike": {"lambda:FunctionArn": f"arn:aws:lambda:*:*:function:{project_name()}-*"}
    }


def test_function_roles_may_be_passed_to_lambda_only() -> None:
    passing = [s for s in _statements() if "iam:PassRole" in s["Action"]]
    assert [s["Action"] for s in passing] == [["iam:PassRole"]]
    assert passing[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }


def test_each_declared_resource_arn_is_within_the_statements_granting_its_actions() -> None:
    # GIVEN the ARNs the program's resources get (names as Pulumi auto-names them)
    with_arn = [r for r in _declared() if "arn" in r.outputs]
    assert len(with_arn) >= 10
    for resource in with_arn:
        arn = resource.outputs["arn"]
        service = arn.split(":")[2]
        # THEN every action of its type on its own service is allowed on exactly that ARN
        for action in TYPE_ACTIONS[resource.type_token]:
            if action.split(":")[0] != service:
                continue  # e.g. iam:PassRole for a function acts on the role
            assert any(
                action in s["Action"]
                and any(fnmatchcase(arn, pattern) for pattern in s["Resource"])
                for s in _statements()
            ), (resource.type_token, resource.name, action, arn)


# -- the preview role (pull requests) --------------------------------------------------------

PREVIEW_POLICY_FILE = POLICY_FILE.with_name("preview-role-policy.json")


def test_the_preview_role_reads_state_and_changes_nothing_in_the_stack() -> None:
    # A pull request runs unreviewed code with this role: `pulumi preview` reads the state and
    # decrypts its secrets, and may take the stack's lock; nothing else.
    statements = json.loads(PREVIEW_POLICY_FILE.read_text())["Statement"]
    grants = {
        (action, resource)
        for statement in statements
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
    bucket = "arn:aws:s3:::fault-tolerant-tasks-state-*"
    assert grants == {
        ("s3:ListBucket", bucket),
        ("s3:GetBucketLocation", bucket),
        ("s3:GetObject", f"{bucket}/*"),
        ("s3:PutObject", f"{bucket}/.pulumi/locks/*"),
        ("s3:DeleteObject", f"{bucket}/.pulumi/locks/*"),
        ("kms:Decrypt", "arn:aws:kms:*:*:key/*"),
    }
    program_actions = set().union(*TYPE_ACTIONS.values())
    assert program_actions.isdisjoint(action for action, _ in grants)


def test_a_caller_pool_may_be_created_only_tagged_as_this_projects() -> None:
    (statement,) = [s for s in _statements() if s["Sid"] == "CreateCallerPool"]
    assert statement["Action"] == ["cognito-idp:CreateUserPool"]
    assert statement["Condition"] == {"StringEquals": {"aws:RequestTag/project": project_name()}}


# IAM counts a policy's characters without whitespace: an inline role policy may hold 10,240
# (README: both files are attached inline), a managed policy only 6,144.
INLINE_POLICY_MAX_CHARS = 10_240


def test_each_role_policy_fits_in_an_inline_policy() -> None:
    for path in (POLICY_FILE, PREVIEW_POLICY_FILE):
        compact = json.dumps(json.loads(path.read_text()), separators=(",", ":"))
        assert len(compact) <= INLINE_POLICY_MAX_CHARS, (path.name, len(compact))
