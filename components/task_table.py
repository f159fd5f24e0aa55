"""The task table: one item per task, the source of truth for its status and attempts."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

HASH_KEY = "taskId"
TTL_ATTRIBUTE = "expiresAt"  # epoch seconds; the functions set it when a task is written


@dataclass(frozen=True, kw_only=True)
class TaskTableArgs:
    point_in_time_recovery: bool = False
    deletion_protection: bool = False


class TaskTable(pulumi.ComponentResource):
    """On-demand DynamoDB table keyed by `taskId`, with TTL on `expiresAt`."""

    table: aws.dynamodb.Table

    def __init__(
        self, name: str, args: TaskTableArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_table:TaskTable", name, None, opts)
        self.table = aws.dynamodb.Table(
            f"{name}-table",
            # On demand: task traffic is bursty and small, and there is no capacity to tune.
            billing_mode="PAY_PER_REQUEST",
            hash_key=HASH_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=HASH_KEY, type="S")],
            # Expired records are deleted by DynamoDB at no cost, so finished tasks age out.
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=TTL_ATTRIBUTE, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(
                enabled=args.point_in_time_recovery
            ),
            deletion_protection_enabled=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"tableName": self.table.name, "tableArn": self.table.arn})
