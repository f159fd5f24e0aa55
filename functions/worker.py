"""The worker: runs one attempt per SQS delivery and reports partial batch failures.

Per message (`record_handler`): read the task, let `lifecycle.plan_delivery` decide, claim the
attempt with a conditional write (so the attempt counter is exact and a duplicate delivery
changes nothing), run the simulated work, and record the outcome:

- success -> COMPLETED; the message is acknowledged (deleted by Lambda);
- failure with attempts left -> RETRYING, then ChangeMessageVisibility(retry delay) on this very
  message and the record is reported as a batch item failure: SQS redelivers it no earlier than
  the delay. (Returning success here would delete the message: no retry at all.)
- last failure -> FAILED, then the message is sent to the DLQ and acknowledged.

Errors from AWS propagate: the record is reported failed and SQS redelivers it after the queue's
visibility timeout; the conditional writes make that replay safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
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
    AttemptOutcome,
    Claim,
    Completed,
    Defer,
    FailedForGood,
    FailLost,
    RetryLater,
    TaskRecord,
    decide_after_attempt,
    plan_delivery,
    simulate_work,
)
from functions.queue import UnreadableMessage, parse_task_message
from functions.store import AttemptSuperseded, StaleClaim

# Without a Lambda context (a direct call), a claim's lease lasts this long.
DEFAULT_LEASE_S = 60

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RetryScheduled(Exception):
    """Reported as a batch item failure on purpose: the message stays, hidden until its retry."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    """Handle one delivery; returns what happened (for logs and tests). Raising reports the
    record as failed, so SQS delivers it again later."""
    try:
        return _handle_delivery(record, lambda_context)
    except RetryScheduled:
        raise
    except Exception:
        logger.exception("delivery failed; SQS will deliver it again")
        raise


def _handle_delivery(record: SQSRecord, lambda_context: LambdaContext | None) -> str:
    rt = runtime.current()
    try:
        task_id = parse_task_message(record.body)
    except UnreadableMessage as error:
        # Nothing can ever process it: park it on the DLQ now instead of after maxReceiveCount
        # futile receives. The dead-letter function logs and counts it.
        logger.error("unreadable message sent to the DLQ", extra={"reason": str(error)})
        rt.queue.dead_letter(record.body, str(error))
        return "unreadable"

    with logger.append_context_keys(taskId=task_id, messageId=record.message_id):
        now = rt.clock()
        stored = rt.store.get(task_id)
        action = plan_delivery(
            stored.record if stored else None, now, stored.lease_expires_at if stored else None
        )
        match action:
            case Acknowledge(reason=reason):
                logger.info("acknowledged without running", extra={"reason": reason})
                return "acknowledged"
            case Defer(delay_s=delay_s):
                # An early duplicate of a retrying task: hide it until the retry is due.
                rt.queue.hide(record.receipt_handle, delay_s)
                logger.info("early delivery deferred", extra={"delaySeconds": delay_s})
                raise RetryScheduled(f"task {task_id} is not due for {delay_s} s")
            case FailLost(lost_attempt=attempt):
                return _fail_lost_task(rt, task_id, attempt, now, record.body)
            case Claim():
                assert stored is not None  # plan_delivery claims only stored tasks
                with logger.append_context_keys(attempt=action.attempt):
                    return _claim_and_run(rt, record, stored.record, action, now, lambda_context)
    raise AssertionError(f"unplanned action {action!r}")


def _claim_and_run(
    rt: runtime.Runtime,
    record: SQSRecord,
    task: TaskRecord,
    claim: Claim,
    now: datetime,
    lambda_context: LambdaContext | None,
) -> str:
    """Claim the attempt by conditional write; only the delivery that wins runs it."""
    lease_expires_at = now + _lease(lambda_context)
    try:
        rt.store.claim(task, claim.attempt, now, lease_expires_at, claim.lost_attempt)
    except StaleClaim:
        logger.info("another delivery claimed this attempt first; acknowledged")
        return "acknowledged"
    if claim.lost_attempt is not None:
        logger.warning("previous attempt was lost", extra={"lost": claim.lost_attempt})
    return _run_attempt(rt, record, task, claim.attempt)


def _run_attempt(rt: runtime.Runtime, record: SQSRecord, task: TaskRecord, attempt: int) -> str:
    """Run claimed attempt `attempt` of `task` and record its outcome."""
    task_id = task.taskId
    policy = rt.settings.policy
    result = simulate_work(task.message, policy.errorRate, rt.rng)
    finished = rt.clock()
    decision = decide_after_attempt(attempt, task.maxAttempts, result, policy, rt.rng, finished)
    try:
        match decision:
            case Completed():
                rt.store.complete(task_id, attempt, finished)
                logger.info("attempt succeeded; task COMPLETED")
                return "completed"
            case RetryLater(retry_delay_s=delay_s, next_attempt_at=next_attempt_at):
                error = result.error or "attempt failed"
                rt.store.schedule_retry(task_id, attempt, finished, error, delay_s, next_attempt_at)
                rt.queue.hide(record.receipt_handle, delay_s)
                logger.info(
                    "attempt failed; retry scheduled",
                    extra={"error": error, "retryDelaySeconds": delay_s},
                )
                raise RetryScheduled(f"task {task_id} retries in {delay_s} s")
            case FailedForGood():
                error = result.error or "attempt failed"
                rt.store.fail(task_id, attempt, finished, error)
                rt.queue.dead_letter(record.body, f"FAILED after {attempt} attempts: {error}")
                logger.warning("last attempt failed; task FAILED and sent to the DLQ")
                return "failed"
    except AttemptSuperseded:
        # The dead-letter function (or a reclaim after our lease) moved the task on; our
        # result is void and the task's record already says what happened.
        logger.warning("attempt superseded while running; result discarded")
        return "superseded"
    raise AssertionError(f"unplanned decision {decision!r}")


def _fail_lost_task(
    rt: runtime.Runtime, task_id: str, attempt: int, now: datetime, body: str
) -> str:
    error = f"attempt {attempt} was lost (worker crash or timeout) and no attempts remain"
    try:
        rt.store.fail(task_id, attempt, now, error, outcome=AttemptOutcome.LOST)
    except AttemptSuperseded:
        logger.info("lost attempt already handled by another delivery; acknowledged")
        return "acknowledged"
    rt.queue.dead_letter(body, f"FAILED: {error}")
    logger.warning("last attempt was lost; task FAILED and sent to the DLQ")
    return "failed"


def _lease(lambda_context: LambdaContext | None) -> timedelta:
    """How long this invocation may still run: no other delivery takes the task before."""
    if lambda_context is None:
        return timedelta(seconds=DEFAULT_LEASE_S)
    return timedelta(milliseconds=lambda_context.get_remaining_time_in_millis())


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
