"""The task queues: the main queue the worker consumes and the dead-letter queue behind it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# 14 days, SQS's maximum, for both. The main queue: no message of an unfinished task may expire
# before the reconciler can act (it re-enqueues any overdue task anyway, so even an expired message
# strands nothing). The DLQ: time for the dead-letter function to work through an outage. A message
# keeps its original enqueue time when it moves to the DLQ, so the DLQ cannot keep it longer.
MAIN_QUEUE_RETENTION_S = 1_209_600
DLQ_RETENTION_S = 1_209_600


@dataclass(frozen=True, kw_only=True)
class TaskQueuesArgs:
    """Derived from the stack settings (`StackSettings.visibility_timeout_s` and friends).

    `visibility_timeout_s` applies to both queues: each one feeds a Lambda function.
    """

    visibility_timeout_s: int
    max_receive_count: int

    def __post_init__(self) -> None:
        if not 0 <= self.visibility_timeout_s <= 43_200:
            raise ValueError(
                f"visibility_timeout_s={self.visibility_timeout_s} is outside SQS's 0..43200 s"
            )
        if not 1 <= self.max_receive_count <= 1000:
            raise ValueError(f"max_receive_count={self.max_receive_count} is outside SQS's 1..1000")


class TaskQueues(pulumi.ComponentResource):
    """Main queue with a redrive policy into a dead-letter queue; both encrypted at rest."""

    queue: aws.sqs.Queue
    dead_letter_queue: aws.sqs.Queue
    # What callers use; the queues themselves stay the component's business.
    url: pulumi.Output[str]
    arn: pulumi.Output[str]
    name: pulumi.Output[str]
    dlq_url: pulumi.Output[str]
    dlq_arn: pulumi.Output[str]
    dlq_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: TaskQueuesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fault-tolerant-tasks:task_queues:TaskQueues", name, None, opts)
        self.dead_letter_queue = self._dead_letter_queue(name, args)
        self.queue = self._main_queue(name, args)
        self._allow_redrive_only_from_main_queue(name)
        self.url, self.arn, self.name = self.queue.url, self.queue.arn, self.queue.name
        self.dlq_url = self.dead_letter_queue.url
        self.dlq_arn = self.dead_letter_queue.arn
        self.dlq_name = self.dead_letter_queue.name
        self.register_outputs(
            {
                "queueUrl": self.url,
                "queueArn": self.arn,
                "dlqUrl": self.dlq_url,
                "dlqArn": self.dlq_arn,
            }
        )

    def _dead_letter_queue(self, name: str, args: TaskQueuesArgs) -> aws.sqs.Queue:
        return aws.sqs.Queue(
            f"{name}-dlq",
            # The DLQ feeds a function too: Lambda refuses a queue whose visibility timeout is
            # shorter than the function's timeout, and a batch must not be served twice.
            visibility_timeout_seconds=args.visibility_timeout_s,
            message_retention_seconds=DLQ_RETENTION_S,
            sqs_managed_sse_enabled=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _main_queue(self, name: str, args: TaskQueuesArgs) -> aws.sqs.Queue:
        # The worker delays a retry itself (a copy re-sent with DelaySeconds) and
        # dead-letters a task's last failed attempt itself. The redrive policy is the safety net
        # for messages that crash the worker; its threshold is the attempts plus a margin for
        # receives that are not attempts (see StackSettings.max_receive_count), so it never
        # dead-letters a task that still has attempts left.
        redrive_policy = pulumi.Output.json_dumps(
            {
                "deadLetterTargetArn": self.dead_letter_queue.arn,
                "maxReceiveCount": args.max_receive_count,
            }
        )
        return aws.sqs.Queue(
            f"{name}-main",
            # At least 6 x the worker's timeout (AWS's guidance for Lambda event sources), so a
            # batch still running is never served to a second worker.
            visibility_timeout_seconds=args.visibility_timeout_s,
            message_retention_seconds=MAIN_QUEUE_RETENTION_S,
            sqs_managed_sse_enabled=True,
            redrive_policy=redrive_policy,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _allow_redrive_only_from_main_queue(self, name: str) -> None:
        # A separate resource, not an input of the DLQ: the DLQ would otherwise need the main
        # queue's ARN while the main queue needs the DLQ's, a cycle.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=self.dead_letter_queue.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
