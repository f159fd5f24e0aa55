"""Typed IAM policy documents, rendered to the JSON that IAM receives.

Statements are frozen dataclasses checked at construction: an `Allow` on an SQS or DynamoDB
action must name exact resources, never `*`, and no statement may use a wildcard action. The
document is rendered here (not by the `aws.iam.getPolicyDocument` invoke) so that the role policy
input is the final JSON string in every engine: `pulumi up`, the unit-test mocks and the local
emulator's mocks all see the same document.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi

POLICY_LANGUAGE_VERSION = "2012-10-17"
LAMBDA_SERVICE_PRINCIPAL = "lambda.amazonaws.com"


class PolicyError(ValueError):
    """A statement broader than least privilege allows; the message names the bad input."""


@dataclass(frozen=True, kw_only=True)
class PolicyStatement:
    """One `Allow` statement: exact actions on exact resources (ARNs may still be unresolved)."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.actions:
            raise PolicyError(f"statement {self.sid!r} allows no action")
        for action in self.actions:
            service, _, name = action.partition(":")
            if not service or not name or "*" in action:
                raise PolicyError(
                    f"statement {self.sid!r} action {action!r} must be one exact 'service:Action'"
                )
        if not self.resources:
            raise PolicyError(f"statement {self.sid!r} names no resource")
        for resource in self.resources:
            if isinstance(resource, str) and resource.strip() == "*":
                raise PolicyError(
                    f"statement {self.sid!r} uses Resource '*'; name the exact ARNs it needs"
                )

    def to_document(self) -> dict[str, object]:
        return {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }


# -- the grants the task functions are built from ------------------------------------------------

QUEUE_CONSUMER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",  # the event source mapping reads the queue's attributes
)


def table_access(table_arn: pulumi.Input[str], *operations: str) -> PolicyStatement:
    """Exactly these DynamoDB `operations` (`"GetItem"`, ...) on task records in this table."""
    for operation in operations:
        if not operation.isalnum():
            raise PolicyError(f"operation {operation!r} must be a bare DynamoDB operation name")
    return PolicyStatement(
        sid="TaskTable",
        actions=tuple(f"dynamodb:{operation}" for operation in operations),
        resources=(table_arn,),
    )


def index_query(index_arn: pulumi.Input[str]) -> PolicyStatement:
    """Query exactly this index of the task table."""
    return PolicyStatement(sid="CheckIndex", actions=("dynamodb:Query",), resources=(index_arn,))


def queue_send(queue_arn: pulumi.Input[str], *, sid: str) -> PolicyStatement:
    """Send messages to exactly this queue."""
    return PolicyStatement(sid=sid, actions=("sqs:SendMessage",), resources=(queue_arn,))


def queue_consume(queue_arn: pulumi.Input[str], *, sid: str) -> PolicyStatement:
    """What an SQS event source mapping and its function need on exactly this queue."""
    return PolicyStatement(sid=sid, actions=QUEUE_CONSUMER_ACTIONS, resources=(queue_arn,))


def message_hiding(queue_arn: pulumi.Input[str]) -> PolicyStatement:
    """Re-hide received messages of exactly this queue: the worker's short wait for another
    delivery's lease, and its fallback when the delayed re-send of a retry fails."""
    return PolicyStatement(
        sid="HideDeferredMessages",
        actions=("sqs:ChangeMessageVisibility",),
        resources=(queue_arn,),
    )


def log_writing(log_group_arn: pulumi.Input[str]) -> PolicyStatement:
    """Write log streams of exactly this log group (the group itself is created by Pulumi)."""
    return PolicyStatement(
        sid="OwnLogGroup",
        actions=("logs:CreateLogStream", "logs:PutLogEvents"),
        resources=(pulumi.Output.format("{0}:*", log_group_arn),),
    )


def policy_json(statements: Sequence[PolicyStatement]) -> pulumi.Output[str]:
    """The IAM policy JSON for `statements`, resolved once every ARN in them is known."""
    sids = [statement.sid for statement in statements]
    if len(set(sids)) != len(sids):
        raise PolicyError(f"statement ids must be unique, got {sids}")
    return pulumi.Output.json_dumps(
        {
            "Version": POLICY_LANGUAGE_VERSION,
            "Statement": [statement.to_document() for statement in statements],
        }
    )


def lambda_trust_policy_json() -> str:
    """The role trust policy that lets the Lambda service, and nothing else, assume the role."""
    return json.dumps(
        {
            "Version": POLICY_LANGUAGE_VERSION,
            "Statement": [
                {
                    "Sid": "LambdaAssumesRole",
                    "Effect": "Allow",
                    "Principal": {"Service": LAMBDA_SERVICE_PRINCIPAL},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
