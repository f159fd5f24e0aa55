"""The task table: one item per task, the source of truth for its status and attempts."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from functions.store import CHECK_INDEX, KEY_ATTRIBUTE_TYPES, TABLE_INDEXES, TASK_KEY

HASH_KEY = TASK_KEY
TTL_ATTRIBUTE = "expiresAt"  # epoch seconds; set only when a task ends (COMPLETED or FAILED)


@dataclass(frozen=True, kw_only=True)
class TaskTableArgs:
    """`deletion_protection` guards the task records twice: DynamoDB refuses to delete the table,
    and Pulumi (`protect`) refuses any operation that would delete it, destroy or replacement.
    One knob for both: they guard the same data against the same mistake, and lifting only one
    still leaves the table undeletable, so two settings could only disagree."""

    point_in_time_recovery: bool = False
    deletion_protection: bool = False


class TaskTable(pulumi.ComponentResource):
    """On-demand DynamoDB table keyed by `taskId`, with TTL on `expiresAt`, the reconciler's
    sparse check index and the operator's sparse status index."""

    table: aws.dynamodb.Table
    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    check_index_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: TaskTableArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_table:TaskTable", name, None, opts)
        self.table = aws.dynamodb.Table(
            f"{name}-table",
            # On demand: task traffic is bursty and small, and there is no capacity to tune.
            billing_mode="PAY_PER_REQUEST",
            hash_key=HASH_KEY,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=name, type=type_)
                for name, type_ in KEY_ATTRIBUTE_TYPES.items()
            ],
            # Two sparse KEYS_ONLY indexes (functions/store.py): the reconciler's, which tasks to
            # look at when, written once per task (the worker's writes never touch its keys); and
            # the operator's (`taskctl tasks list`), OPEN or FAILED tasks newest first, written
            # when a task is created, fails, is redriven or completes. KEYS_ONLY keeps every index
            # write at 1 WRU however long the task's message and error are; finished tasks'
            # entries go with their records when TTL deletes them.
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index.name,
                    # key_schemas, not hash_key/range_key: pulumi-aws 7 deprecates those for an
                    # index, and warns on every deployment that declares them.
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=index.hash_key, key_type="HASH"
                        ),
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=index.range_key, key_type="RANGE"
                        ),
                    ],
                    projection_type="KEYS_ONLY",
                )
                for index in TABLE_INDEXES
            ],
            # Expired records are deleted by DynamoDB at no cost, so finished tasks age out; an
            # unfinished task has no expiry at all.
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=TTL_ATTRIBUTE, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(
                enabled=args.point_in_time_recovery
            ),
            deletion_protection_enabled=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        self.name = self.table.name
        self.arn = self.table.arn
        self.check_index_arn = pulumi.Output.format("{0}/index/{1}", self.table.arn, CHECK_INDEX)
        self.register_outputs({"tableName": self.name, "tableArn": self.arn})
