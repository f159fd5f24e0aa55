"""The dead-letter function: every message on the DLQ ends with its task finished or running.

A message gets to the DLQ two ways:
- the worker sends it after the last attempt failed (the task is already FAILED; the `reason`
  attribute says why): it is counted and acknowledged;
- the main queue's redrive policy moves it after `maxReceiveCount` receives. Receives are not
  attempts (throttling, an outage, deferred duplicates), and DynamoDB keeps the attempt budget, so
  while the task is unfinished its message goes back to the main queue. Only a message that comes
  back `MAX_DEAD_LETTER_RETURNS` times in a row without a new attempt is poisonous (it stops the
  worker before any claim): its task is made FAILED so that it ends.
`lifecycle.plan_dead_letter` decides; this handler carries it out.

Metrics (`functions.metrics`; only the service and the stack as dimensions, never the task id):
the worker's own dead letters are its FAILED tasks, a business outcome it has already counted, so
they count nothing here. Every task this function has to make FAILED itself, and every unreadable
message, is a `PoisonMessages` fault: in a healthy system the worker ends every task. Returned
messages are counted in `ReturnedDeadLetters`.

The message is then deleted from the DLQ (acknowledged): DynamoDB is the source of truth, and a
FAILED task can be redriven from its record. An unreadable message is logged loudly with its
body, counted, and acknowledged too: there is no task to fail.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import runtime
from functions.lifecycle import (
    Acknowledge,
    FailDeadLettered,
    ReturnToQueue,
    plan_dead_letter,
)
from functions.metrics import (
    COUNT_UNIT,
    DEAD_LETTER_COUNTS,
    POISON_MESSAGES_METRIC,
    RETURNED_DEAD_LETTERS_METRIC,
    UNREADABLE_DEAD_LETTERS_METRIC,
    start_invocation,
)
from functions.queue import REASON_ATTRIBUTE, UnreadableMessage, parse_task_message
from functions.store import TaskChanged

# A task that keeps changing under us is retried through SQS (the record is reported failed).
MAX_WRITE_TRIES = 3

logger = Logger()
metrics = Metrics()  # namespace and service: set per invocation from the runtime settings
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> str:
    """Handle one DLQ message; returns what happened. Raising reports it failed (redelivered)."""
    try:
        return _handle(record)
    except Exception:
        logger.exception("dead-letter handling failed; SQS will deliver it again")
        raise


def _handle(record: SQSRecord) -> str:
    rt = runtime.current()
    try:
        task_id = parse_task_message(record.body)
    except UnreadableMessage as error:
        logger.error(
            "unreadable message on the DLQ",
            extra={
                "reason": str(error),
                "body": record.body[:2000],
                "messageId": record.message_id,
            },
        )
        metrics.add_metric(name=UNREADABLE_DEAD_LETTERS_METRIC, unit=COUNT_UNIT, value=1)
        metrics.add_metric(name=POISON_MESSAGES_METRIC, unit=COUNT_UNIT, value=1)
        return "unreadable"

    with logger.append_context_keys(taskId=task_id, messageId=record.message_id):
        reason = _reason(record)
        for _ in range(MAX_WRITE_TRIES):
            stored = rt.store.get(task_id)
            action = plan_dead_letter(
                stored.record if stored else None,
                stored.returns_without_progress if stored else 0,
                _sent_by_worker(record),
                reason,
            )
            try:
                match action:
                    case Acknowledge(reason=why):
                        logger.info("dead letter acknowledged", extra={"why": why})
                        return "acknowledged"
                    case ReturnToQueue(returns=returns):
                        assert stored is not None
                        # Send first: a crash after it leaves a duplicate (harmless), whereas
                        # counting first could make a task look poisonous when it is not.
                        rt.queue.enqueue(task_id)
                        rt.store.count_dead_letter_return(stored, returns, rt.clock())
                        metrics.add_metric(
                            name=RETURNED_DEAD_LETTERS_METRIC, unit=COUNT_UNIT, value=1
                        )
                        logger.warning(
                            "task unfinished with attempts left; message returned to the queue",
                            extra={"returns": returns, "reason": reason},
                        )
                        return "returned"
                    case FailDeadLettered(reason=why):
                        assert stored is not None
                        rt.store.fail_dead_lettered(stored, why, rt.clock())
                        metrics.add_metric(name=POISON_MESSAGES_METRIC, unit=COUNT_UNIT, value=1)
                        logger.error(
                            "task FAILED by the dead-letter function",
                            extra={"previousStatus": stored.record.status, "reason": why},
                        )
                        return "failed"
            except TaskChanged:
                continue  # a worker moved it on between our read and write: look again
        raise TaskChanged(task_id, f"still changing after {MAX_WRITE_TRIES} tries")


def _sent_by_worker(record: SQSRecord) -> bool:
    """The worker states a reason; the queue's redrive policy moves messages without one."""
    return record.message_attributes[REASON_ATTRIBUTE] is not None


def _reason(record: SQSRecord) -> str:
    """Why the message is here: the worker's stated reason, else the redrive's receive count."""
    attribute = record.message_attributes[REASON_ATTRIBUTE]  # None if absent
    stated = attribute.string_value if attribute else None
    receives = record.attributes.get("ApproximateReceiveCount", "?")
    return stated or f"dead-lettered after {receives} receives without finishing"


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start_invocation(metrics, runtime.current().settings, DEAD_LETTER_COUNTS)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
