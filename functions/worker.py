"""The worker: runs one attempt per SQS delivery and reports partial batch failures.

Per message (`record_handler`): read the task, let `lifecycle.plan_delivery` decide, claim the
attempt with a conditional write (so the attempt counter is exact and a duplicate delivery
changes nothing), run the simulated work, and record the outcome:

- success -> COMPLETED; the message is acknowledged (deleted by Lambda);
- failure with attempts left -> RETRYING, then the task's message is sent again with
  `DelaySeconds` = the retry delay, and only once that send succeeded is this delivery
  acknowledged. SQS delivers the new copy no earlier than the delay, and while it waits it is not
  in flight (SQS allows about 120,000 in-flight messages per queue; waiting retries kept in flight
  would stall the whole queue at scale). If the send fails, this very message is hidden until the
  retry is due (ChangeMessageVisibility) and reported as a batch item failure instead, as SQS
  then redelivers it no earlier than that. (Acknowledging without a new copy would lose the task.)
- last failure -> FAILED, then the message is sent to the DLQ and acknowledged.

The message of an unfinished task is deleted only by a delivery that finished the task, or that
first put a delayed copy on the queue. A copy that comes too early (a duplicate, or the original
when its worker died between the delayed send and the acknowledgement) reads the task again and
is re-sent delayed until the retry is due in the same way; one that meets another delivery's live
lease is hidden until the lease ends and reported failed (a short wait). Extra copies are
harmless: the claim's condition lets one delivery run each attempt, and the others wait or find
the task finished.

Errors from AWS propagate: the record is reported failed and SQS redelivers it after the queue's
visibility timeout; the conditional writes make that replay safe.

Metrics (`functions.metrics`), per invocation: `CompletedTasks` and `FailedTasks` (business
outcomes), and `WorkerRecordExceptions`, every record that raised anything but the deliberate
`RetryScheduled`. The partial batch response never raises, so Lambda's `Errors` metric cannot see
a worker that fails every record; this count does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NoReturn

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

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
    first_check_at,
    plan_delivery,
    simulate_work,
)
from functions.metrics import (
    COMPLETED_TASKS_METRIC,
    COUNT_UNIT,
    FAILED_TASKS_METRIC,
    WORKER_COUNTS,
    WORKER_RECORD_EXCEPTIONS_METRIC,
    start_invocation,
)
from functions.policy import MAX_RETRY_DELAY_S
from functions.queue import UnreadableMessage, parse_task_message
from functions.store import AttemptSuperseded, StaleClaim, StoreConflict

# Without a Lambda context (a direct call), a claim's lease lasts this long.
DEFAULT_LEASE_S = 60
# A delivery that keeps meeting conflicting writes gives up after this many reads; it is reported
# failed and SQS delivers it again later.
MAX_PLANS_PER_DELIVERY = 3

logger = Logger()
metrics = Metrics()  # namespace and service: set per invocation from the runtime settings
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RetryScheduled(Exception):
    """Reported as a batch item failure on purpose: the message stays, hidden until it is due."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    """Handle one delivery; returns what happened (for logs and tests). Raising reports the
    record as failed, so SQS delivers it again later."""
    try:
        return _handle_delivery(record, lambda_context)
    except RetryScheduled:
        raise
    except Exception:
        metrics.add_metric(name=WORKER_RECORD_EXCEPTIONS_METRIC, unit=COUNT_UNIT, value=1)
        # The task's context keys went with the block that raised: name the message (its body
        # names the task), so the line an alarm sends on-call to says which one.
        logger.exception(
            "delivery failed; SQS will deliver it again",
            extra={"messageId": record.message_id, "body": record.body[:200]},
        )
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
        for _ in range(MAX_PLANS_PER_DELIVERY):
            try:
                return _plan_and_act(rt, record, task_id, lambda_context)
            except (StaleClaim, AttemptSuperseded) as conflict:
                # Another delivery or function moved the task on: read it again and decide anew.
                logger.info(
                    "task changed under this delivery; reading it again",
                    extra={"conflict": str(conflict)},
                )
        raise StoreConflict(task_id, f"still changing after {MAX_PLANS_PER_DELIVERY} reads")


def _plan_and_act(
    rt: runtime.Runtime, record: SQSRecord, task_id: str, lambda_context: LambdaContext | None
) -> str:
    stored = rt.store.get(task_id)
    # After the read: a slow one (the SDK retrying it) must not end the lease before this
    # invocation does, nor date the attempt before its claim.
    now = rt.clock()
    action = plan_delivery(
        stored.record if stored else None, now, stored.lease_expires_at if stored else None
    )
    match action:
        case Acknowledge(reason=reason):
            logger.info("acknowledged without running", extra={"reason": reason})
            return "acknowledged"
        case Defer(delay_s=delay_s, reason=reason, keep_in_flight=keep_in_flight):
            logger.info("delivery deferred", extra={"delaySeconds": delay_s, "reason": reason})
            if keep_in_flight:
                _hide_until(rt, record, task_id, delay_s, reason)
            return _come_back_later(rt, record, task_id, delay_s, reason)
        case FailLost(lost_attempt=attempt):
            return _fail_lost_task(rt, task_id, attempt, now, record.body)
        case Claim():
            assert stored is not None  # plan_delivery claims only stored tasks
            with logger.append_context_keys(attempt=action.attempt):
                lease_expires_at = now + _lease(lambda_context)
                rt.store.claim(
                    stored.record,
                    action.attempt,
                    now,
                    lease_expires_at,
                    action.lost_attempt,
                    # A task the reconciler recovered is looked at less and less often; this
                    # claim is progress, so it is looked at again when this attempt is overdue.
                    first_check_at(lease_expires_at, rt.settings.policy)
                    if stored.recoveries
                    else None,
                )
                if action.lost_attempt is not None:
                    logger.warning("previous attempt was lost", extra={"lost": action.lost_attempt})
                return _run_attempt(rt, record, stored.record, action.attempt)
    raise AssertionError(f"unplanned action {action!r}")


def _run_attempt(rt: runtime.Runtime, record: SQSRecord, task: TaskRecord, attempt: int) -> str:
    """Run claimed attempt `attempt` of `task` and record its outcome. `AttemptSuperseded` if
    the task moved on meanwhile (our result is void; the caller reads it again)."""
    task_id = task.taskId
    policy = rt.settings.policy
    result = simulate_work(task.message, policy.errorRate, rt.rng)
    finished = rt.clock()
    decision = decide_after_attempt(attempt, task.maxAttempts, result, policy, rt.rng, finished)
    match decision:
        case Completed():
            rt.store.complete(task_id, attempt, finished)
            metrics.add_metric(name=COMPLETED_TASKS_METRIC, unit=COUNT_UNIT, value=1)
            logger.info("attempt succeeded; task COMPLETED")
            return "completed"
        case RetryLater(retry_delay_s=delay_s, next_attempt_at=next_attempt_at):
            error = result.error or "attempt failed"
            rt.store.schedule_retry(task_id, attempt, finished, error, delay_s, next_attempt_at)
            logger.info(
                "attempt failed; retry scheduled",
                extra={"error": error, "retryDelaySeconds": delay_s},
            )
            return _come_back_later(rt, record, task_id, delay_s, "retry scheduled")
        case FailedForGood():
            error = result.error or "attempt failed"
            rt.store.fail(task_id, attempt, finished, error)
            metrics.add_metric(name=FAILED_TASKS_METRIC, unit=COUNT_UNIT, value=1)
            rt.queue.dead_letter(record.body, f"FAILED after {attempt} attempts: {error}")
            logger.warning("last attempt failed; task FAILED and sent to the DLQ")
            return "failed"
    raise AssertionError(f"unplanned decision {decision!r}")


def _come_back_later(
    rt: runtime.Runtime, record: SQSRecord, task_id: str, delay_s: int, why: str
) -> str:
    """Have the unfinished task's message delivered again in `delay_s`, out of flight meanwhile:
    send a copy delayed that long, then acknowledge this delivery (returning lets Lambda delete
    it). Only after the send succeeded: if it fails, hide this message instead (`_hide_until`).

    A send applied whose reply was lost leaves two delayed copies (the SDK sent it again), and a
    process that dies before Lambda deletes this one leaves it to come back after the visibility
    timeout: extra copies, which are harmless (see the module docstring). Neither comes before
    the retry is due: the record's nextAttemptAt was written before the send.
    """
    # SQS's DelaySeconds maximum; waits are capped there (maxDelaySeconds <= 900), so only
    # rounding can exceed it, and a copy back a moment early is deferred once more.
    delay_s = min(delay_s, MAX_RETRY_DELAY_S)
    try:
        rt.queue.enqueue(task_id, delay_s=delay_s)
    except (BotoCoreError, ClientError):
        logger.warning("could not re-send the message delayed; hiding it instead", exc_info=True)
        _hide_until(rt, record, task_id, delay_s, why)
    return why


def _hide_until(
    rt: runtime.Runtime, record: SQSRecord, task_id: str, delay_s: int, why: str
) -> NoReturn:
    """Keep this very message, hidden for `delay_s`: it is reported failed, so SQS delivers it
    again then. If the hide fails too (SQS down, or the handle went stale), the error reports it
    failed and it comes back after the queue's visibility timeout: the record decides then."""
    rt.queue.hide(record.receipt_handle, delay_s)
    raise RetryScheduled(f"task {task_id}: {why}; back in {delay_s} s")


def _fail_lost_task(
    rt: runtime.Runtime, task_id: str, attempt: int, now: datetime, body: str
) -> str:
    error = f"attempt {attempt} was lost (worker crash or timeout) and no attempts remain"
    rt.store.fail(task_id, attempt, now, error, outcome=AttemptOutcome.LOST)
    metrics.add_metric(name=FAILED_TASKS_METRIC, unit=COUNT_UNIT, value=1)
    rt.queue.dead_letter(body, f"FAILED: {error}")
    logger.warning("last attempt was lost; task FAILED and sent to the DLQ")
    return "failed"


def _lease(lambda_context: LambdaContext | None) -> timedelta:
    """How long this invocation may still run: no other delivery takes the task before."""
    if lambda_context is None:
        return timedelta(seconds=DEFAULT_LEASE_S)
    return timedelta(milliseconds=lambda_context.get_remaining_time_in_millis())


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start_invocation(metrics, runtime.current().settings, WORKER_COUNTS)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
