"""The worker function: the seed's scenarios, real backoff, duplicates, partial batches, and the
faults around a retry's delayed re-send.

The table is moto's; messages travel through the simulated queues on the fake clock: the api
handler enqueues them, `Pipeline` receives them and invokes the worker as Lambda's event source
mapping would, deleting what the worker acknowledged. A retry's delayed copy (or a message the
worker hid) becomes visible when the clock reaches its time; `run_until_idle` moves it there.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from aws_faults import fail_calls, lose_response
from aws_harness import (
    Pipeline,
    raw_item,
    submit,
)
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from botocore.exceptions import ClientError

from functions import worker
from functions.lifecycle import backoff_ceiling_s, from_iso, retry_delay_s, to_iso
from functions.policy import SDK_MAX_ATTEMPTS, TaskPolicy
from functions.queue import REASON_ATTRIBUTE, task_message_body
from functions.runtime import Runtime
from functions.store import StoredTask


def task(rt: Runtime, task_id: str) -> StoredTask:
    stored = rt.store.get(task_id)
    assert stored is not None
    return stored


def duplicate(pipeline: Pipeline, task_id: str) -> None:
    """At-least-once delivery: another copy of the task's message."""
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=task_message_body(task_id))


# -- the seed's scenarios ---------------------------------------------------------------------


def test_success_task_ends_completed_after_one_attempt(rt: Runtime, pipeline: Pipeline) -> None:
    task_id = submit("SUCCESS")

    pipeline.run_until_idle()

    record = task(rt, task_id).record
    assert record.status == "COMPLETED"
    assert record.attempts == 1
    assert [(h.attempt, h.outcome) for h in record.history] == [(1, "SUCCEEDED")]
    assert record.completedAt is not None and record.failedAt is None
    assert record.nextAttemptAt is None
    assert pipeline.receive() == [] and pipeline.receive(pipeline.dlq_url) == []


def test_error_task_ends_failed_after_max_attempts_with_its_message_in_the_dlq(
    rt: Runtime, pipeline: Pipeline
) -> None:
    assert rt.settings.policy.maxAttempts == 2  # the dev stack's value, as the seed says

    task_id = submit("ERROR")
    pipeline.run_until_idle()

    record = task(rt, task_id).record
    assert record.status == "FAILED"
    assert record.attempts == 2
    assert [(h.attempt, h.outcome) for h in record.history] == [(1, "FAILED"), (2, "FAILED")]
    assert record.history[0].retryDelaySeconds == backoff_ceiling_s(1, rt.settings.policy)
    assert record.history[1].retryDelaySeconds is None  # no retry after the last attempt
    assert record.failedAt is not None and record.completedAt is None
    assert "simulated error" in (record.lastError or "")
    (dead,) = pipeline.receive(pipeline.dlq_url)
    assert json.loads(dead["Body"]) == {"taskId": task_id}
    assert "FAILED after 2 attempts" in dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert pipeline.receive() == []


def test_random_errors_with_a_seeded_source_split_as_the_error_rate_predicts(
    make_runtime: Any, pipeline: Pipeline
) -> None:
    # GIVEN the dev policy (errorRate 0.3, 2 attempts) and many ordinary tasks
    rt = make_runtime(seed=7)
    policy = rt.settings.policy
    count = 100  # moto is ~20 ms a call; the tight statistical check is in tests/unit
    task_ids: list[str] = []
    for first in range(0, count, 10):  # in waves, as traffic arrives (and moto stays quick)
        task_ids += [submit(f"task {n}") for n in range(first, first + 10)]
        pipeline.run_until_idle()

    records = [task(rt, task_id).record for task_id in task_ids]
    statuses = Counter(record.status for record in records)
    assert set(statuses) <= {"COMPLETED", "FAILED"}
    # THEN each outcome's share is within 4 standard deviations of its binomial expectation:
    # a task needs a 2nd attempt with p = errorRate and FAILS with p = errorRate ** maxAttempts.
    retried = sum(record.attempts == 2 for record in records)
    for observed, p in (
        (retried, policy.errorRate),
        (statuses["FAILED"], policy.errorRate**policy.maxAttempts),
    ):
        tolerance = 4 * math.sqrt(count * p * (1 - p))
        assert abs(observed - count * p) <= tolerance, (observed, count * p, tolerance)
    # AND every FAILED task, and only those, reached the DLQ
    dead = {json.loads(m["Body"])["taskId"] for m in pipeline.drain_dead_letters()}
    assert dead == {record.taskId for record in records if record.status == "FAILED"}


# -- backoff really happens -------------------------------------------------------------------


def test_a_failed_attempt_re_sends_its_message_delayed_by_exactly_the_computed_delay(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN an ERROR task's message
    task_id = submit("ERROR")
    (message,) = pipeline.receive()

    # WHEN its first attempt fails
    delivery = pipeline.deliver([message])

    # THEN the record waits RETRYING until the computed time
    record = task(rt, task_id).record
    expected_delay_s = retry_delay_s(1, rt.settings.policy, rt.rng)  # no jitter in dev
    assert record.status == "RETRYING"
    assert record.history[0].retryDelaySeconds == expected_delay_s
    assert from_iso(record.nextAttemptAt or "") == pipeline.clock.now + timedelta(
        seconds=expected_delay_s
    )
    # AND a copy of the message was sent delayed by it, so the original was acknowledged
    assert pipeline.delays_sent() == [expected_delay_s]
    assert json.loads(pipeline.send_spy.calls[0]["MessageBody"]) == {"taskId": task_id}
    assert delivery.failed_ids == set()
    assert pipeline.visibility_spy.calls == []
    # AND the waiting retry is not in flight (SQS's in-flight quota does not count it)...
    assert pipeline.main_queue.in_flight(pipeline.clock()) == 0
    assert pipeline.main_queue.delayed(pipeline.clock()) == 1
    # ...and SQS does not hand it out before the delay, and does then
    pipeline.clock.advance(expected_delay_s - 0.001)
    assert pipeline.receive() == []
    pipeline.clock.advance(0.001)
    (retry,) = pipeline.receive()
    assert json.loads(retry["Body"]) == {"taskId": task_id}


def test_many_waiting_retries_leave_nothing_in_flight(rt: Runtime, pipeline: Pipeline) -> None:
    # GIVEN a batch of ERROR tasks
    task_ids = [submit("ERROR") for _ in range(10)]

    # WHEN their first attempts fail in one invocation
    delivery = pipeline.deliver(pipeline.receive())

    # THEN every retry waits as a delayed message, none in flight, and all are acknowledged
    assert delivery.failed_ids == set() and len(delivery.message_ids) == len(task_ids)
    now = pipeline.clock()
    assert (pipeline.main_queue.in_flight(now), pipeline.main_queue.delayed(now)) == (0, 10)
    assert pipeline.main_queue.peak_in_flight == 10  # the batch while it was processed


def test_delays_double_per_attempt_and_are_capped(make_runtime: Any, pipeline: Pipeline) -> None:
    policy = TaskPolicy(maxAttempts=6, errorRate=0.3, backoffBaseSeconds=5, maxDelaySeconds=30)
    rt = make_runtime(policy=policy)
    task_id = submit("ERROR")

    pipeline.run_until_idle()

    record = task(rt, task_id).record
    assert record.attempts == 6 and record.status == "FAILED"
    applied = pipeline.delays_sent()
    assert applied == [5, 10, 20, 30, 30]
    assert applied == [h.retryDelaySeconds for h in record.history[:-1]]
    # the gap between an attempt's end and the next one's start is the delay, measured
    for before, after in zip(record.history, record.history[1:], strict=False):
        gap_s = (from_iso(after.startedAt) - from_iso(before.finishedAt or "")).total_seconds()
        assert gap_s >= before.retryDelaySeconds


def test_with_jitter_the_applied_delay_is_the_recorded_one_within_the_ceiling(
    make_runtime: Any, pipeline: Pipeline
) -> None:
    policy = TaskPolicy(maxAttempts=8, backoffBaseSeconds=10, maxDelaySeconds=900, jitter=True)
    rt = make_runtime(policy=policy, seed=3)
    task_id = submit("ERROR")

    pipeline.run_until_idle()

    history = task(rt, task_id).record.history
    applied = pipeline.delays_sent()
    assert applied == [h.retryDelaySeconds for h in history[:-1]]
    assert all(0 <= d <= backoff_ceiling_s(n, policy) for n, d in enumerate(applied, start=1))
    assert len(set(applied)) > 1  # jittered, not the fixed ladder


# -- duplicates change nothing ----------------------------------------------------------------


@pytest.mark.parametrize("message", ["SUCCESS", "ERROR"])
def test_a_late_duplicate_after_the_task_is_terminal_is_acknowledged_and_changes_nothing(
    rt: Runtime, pipeline: Pipeline, message: str
) -> None:
    task_id = submit(message)
    pipeline.run_until_idle()
    before = raw_item(rt, task_id)
    # the worker dead-lettered the message of the task it failed, and only that one
    assert len(pipeline.dead_letter_queue) == int(message == "ERROR")

    duplicate(pipeline, task_id)
    delivery = pipeline.deliver(pipeline.receive())

    assert delivery.failed_ids == set()
    assert raw_item(rt, task_id) == before
    assert pipeline.receive() == []
    assert len(pipeline.main_queue) == 0  # acknowledged: deleted, not hidden
    assert len(pipeline.dead_letter_queue) == int(message == "ERROR")  # no copy added


def test_two_copies_in_one_batch_run_the_task_once(rt: Runtime, pipeline: Pipeline) -> None:
    task_id = submit("SUCCESS")
    duplicate(pipeline, task_id)
    messages = pipeline.receive()
    assert len(messages) == 2

    delivery = pipeline.deliver(messages)

    assert delivery.failed_ids == set()
    record = task(rt, task_id).record
    assert (record.status, record.attempts, len(record.history)) == ("COMPLETED", 1, 1)


def test_a_delivery_during_another_workers_live_lease_is_kept_hidden_until_the_lease_ends(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN another worker claimed attempt 1 and is still running (lease in the future)
    task_id = submit("SUCCESS")
    lease_s = 30
    rt.store.claim(task(rt, task_id).record, 1, rt.clock(), rt.clock() + timedelta(seconds=lease_s))
    before = raw_item(rt, task_id)

    # WHEN a duplicate arrives
    delivery = pipeline.deliver(pipeline.receive())

    # THEN the running attempt is left alone, and the message is not deleted: it is hidden until
    # the lease has run out (if that worker dies, this copy is the task's only message)
    assert delivery.failed_ids == set(delivery.message_ids)
    assert raw_item(rt, task_id) == before
    assert pipeline.visibility_spy.calls[-1]["VisibilityTimeout"] == lease_s + 1


# The second copy runs nested inside the first's UpdateItem, in one process. Powertools' metric
# set is shared by every Metrics instance, so the inner invocation's flush also takes the outer's
# metrics and the outer then warns that it has none; a Lambda sandbox runs one at a time.
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_two_copies_of_one_message_at_once_never_strand_the_task(
    rt: Runtime, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an ERROR task (its first attempt fails and needs a retry) whose message SQS hands
    # out twice at the same time, the second time with the newer receipt handle
    task_id = submit("ERROR")
    (first,) = pipeline.receive()
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    (second,) = pipeline.receive()
    assert second["MessageId"] == first["MessageId"]
    inner: list[Any] = []

    def second_copy_arrives_mid_attempt(**_: Any) -> None:
        rt.dynamodb.meta.events.unregister(
            "after-call.dynamodb.UpdateItem", second_copy_arrives_mid_attempt
        )
        with monkeypatch.context() as patch:  # a second invocation has its own batch processor
            patch.setattr(worker, "processor", BatchProcessor(EventType.SQS, None, False))
            inner.append(pipeline.deliver([second]))

    rt.dynamodb.meta.events.register(
        "after-call.dynamodb.UpdateItem", second_copy_arrives_mid_attempt
    )

    # WHEN the first copy claims attempt 1 and the second arrives right then
    pipeline.deliver([first])

    # THEN the second copy was not acknowledged (the message lives on), and the task still gets
    # its retry: FAILED after 2 attempts, not RETRYING forever with no message
    assert inner[0].failed_ids == {second["MessageId"]}
    pipeline.run_until_idle()
    record = task(rt, task_id).record
    assert (record.status, record.attempts) == ("FAILED", 2)
    assert [h.outcome for h in record.history] == ["FAILED", "FAILED"]


def test_a_claim_whose_reply_was_lost_still_runs_the_attempt(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN the claim is applied but its reply is lost (botocore retries it)
    task_id = submit("SUCCESS")
    lose_response(rt.dynamodb, "UpdateItem", nth=1)

    # WHEN the worker runs
    pipeline.run_until_idle()

    # THEN it recognises its own claim and completes the task (not PROCESSING forever)
    record = task(rt, task_id).record
    assert (record.status, record.attempts) == ("COMPLETED", 1)


def test_a_retry_whose_reply_was_lost_still_delays_the_message_by_the_delay(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN the RETRYING write (the 2nd UpdateItem: claim, then retry) loses its reply
    task_id = submit("ERROR")
    lose_response(rt.dynamodb, "UpdateItem", nth=2)

    # WHEN the first attempt fails
    delivery = pipeline.deliver(pipeline.receive())

    # THEN the message is replaced by one delayed for the promised delay, and the retry happens
    assert delivery.failed_ids == set()
    assert pipeline.delays_sent() == [2]
    pipeline.run_until_idle()
    assert (task(rt, task_id).record.status, task(rt, task_id).record.attempts) == ("FAILED", 2)


def test_an_early_duplicate_of_a_retrying_task_is_delayed_until_the_retry_is_due(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN an ERROR task waiting for its retry, and a duplicate of its message arriving now
    task_id = submit("ERROR")
    pipeline.deliver(pipeline.receive())
    pipeline.clock.advance(0.5)
    before = raw_item(rt, task_id)
    duplicate(pipeline, task_id)
    (early,) = pipeline.receive()

    # WHEN the worker gets it
    delivery = pipeline.deliver([early])

    # THEN nothing runs, and the copy is replaced by one delayed until nextAttemptAt (rounded up)
    assert raw_item(rt, task_id) == before
    assert delivery.failed_ids == set()
    due = from_iso(task(rt, task_id).record.nextAttemptAt or "")
    wait_s = math.ceil((due - pipeline.clock.now).total_seconds())
    assert pipeline.delays_sent()[-1] == wait_s
    assert pipeline.visibility_spy.calls == []
    # AND once due, both copies together still make exactly one more attempt
    pipeline.run_until_idle()
    record = task(rt, task_id).record
    assert (record.status, record.attempts) == ("FAILED", 2)


# -- the delayed re-send under faults ---------------------------------------------------------


class Died(BaseException):
    """The worker's process stops here (no handler may catch it)."""


def ends_after_exactly_one_more_attempt_on_time(
    rt: Runtime, pipeline: Pipeline, task_id: str
) -> None:
    """Run the queue dry: the ERROR task makes its 2nd and last attempt, once, and no earlier
    than its 1st attempt's finish plus the promised delay."""
    pipeline.run_until_idle()
    record = task(rt, task_id).record
    assert (record.status, record.attempts, len(record.history)) == ("FAILED", 2, 2)
    first, second = record.history
    waited_s = (from_iso(second.startedAt) - from_iso(first.finishedAt or "")).total_seconds()
    assert waited_s >= (first.retryDelaySeconds or 0)


def test_a_delayed_send_whose_reply_was_lost_leaves_a_harmless_duplicate(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN an ERROR task whose re-send is applied but its reply lost (botocore sends it again)
    task_id = submit("ERROR")
    lost = lose_response(rt.sqs, "SendMessage", nth=1)

    # WHEN its first attempt fails
    delivery = pipeline.deliver(pipeline.receive())

    # THEN two delayed copies wait, and the original is acknowledged
    assert lost.lost == [{"status": 200}]
    assert delivery.failed_ids == set()
    assert pipeline.main_queue.delayed(pipeline.clock()) == 2
    # AND together they make exactly one more attempt, no earlier than promised
    ends_after_exactly_one_more_attempt_on_time(rt, pipeline, task_id)
    assert len(pipeline.receive(pipeline.dlq_url)) == 1
    assert len(pipeline.main_queue) == 0


def test_a_worker_dying_between_the_delayed_send_and_the_acknowledgement_retries_on_time(
    make_runtime: Any, pipeline: Pipeline
) -> None:
    # GIVEN a retry delay (600 s) longer than the queue's visibility timeout (180 s), and a
    # worker that dies right after its delayed re-send, before Lambda deletes the original
    rt = make_runtime(policy=TaskPolicy(maxAttempts=2, backoffBaseSeconds=600))
    task_id = submit("ERROR")

    def die(**_: Any) -> None:
        raise Died("the worker process stopped after SendMessage")

    rt.sqs.meta.events.register_first("after-call.sqs.SendMessage", die)
    with pytest.raises(Died):
        pipeline.deliver(pipeline.receive())
    rt.sqs.meta.events.unregister("after-call.sqs.SendMessage", die)
    assert task(rt, task_id).record.status == "RETRYING"

    # WHEN the original comes back after its visibility timeout, long before the retry is due
    pipeline.clock.advance(180)
    (original,) = pipeline.receive()
    delivery = pipeline.deliver([original])

    # THEN it starts nothing: it is replaced by a copy delayed until the retry is due
    assert delivery.failed_ids == set()
    assert task(rt, task_id).record.attempts == 1
    assert pipeline.delays_sent() == [600, 420]
    # AND the task makes exactly one more attempt, no earlier than promised
    ends_after_exactly_one_more_attempt_on_time(rt, pipeline, task_id)


def test_when_the_delayed_send_fails_the_original_is_hidden_until_the_retry_instead(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN SQS refuses every SendMessage try after the submit
    task_id = submit("ERROR")
    outage = fail_calls(rt.sqs, "SendMessage")

    # WHEN the first attempt fails
    (message,) = pipeline.receive()
    delivery = pipeline.deliver([message])

    # THEN the original is kept: hidden until the retry is due and reported failed
    outage.stop()
    assert outage.count == SDK_MAX_ATTEMPTS  # the SDK tried, then the worker fell back
    assert delivery.failed_ids == {message["MessageId"]}
    (hide,) = pipeline.visibility_spy.calls
    assert (hide["ReceiptHandle"], hide["VisibilityTimeout"]) == (message["ReceiptHandle"], 2)
    assert pipeline.main_queue.in_flight(pipeline.clock()) == 1
    assert len(pipeline.main_queue) == 1  # no delayed copy got through: the original is all
    pipeline.clock.advance(1.999)
    assert pipeline.receive() == []
    # AND the retry happens once, on time
    ends_after_exactly_one_more_attempt_on_time(rt, pipeline, task_id)


def test_a_message_for_a_task_that_does_not_exist_is_acknowledged(
    rt: Runtime, pipeline: Pipeline
) -> None:
    duplicate(pipeline, "3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b")

    delivery = pipeline.deliver(pipeline.receive())

    assert delivery.failed_ids == set()
    assert pipeline.receive() == []


def test_a_duplicate_that_loses_the_claim_race_is_hidden_not_acknowledged(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN another delivery claims attempt 1 between this worker's read and its claim
    task_id = submit("SUCCESS")
    seen = task(rt, task_id).record

    def rival_claims_first(**_: Any) -> None:
        rt.dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", rival_claims_first)
        rt.store.claim(seen, 1, rt.clock(), rt.clock() + timedelta(seconds=30))

    rt.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", rival_claims_first)

    # WHEN this worker tries
    delivery = pipeline.deliver(pipeline.receive())

    # THEN its conditional claim fails and it runs nothing; it reads the task again, finds the
    # rival's live lease, and keeps the message hidden until that lease ends
    assert delivery.failed_ids == set(delivery.message_ids)
    record = task(rt, task_id).record
    assert (record.status, record.attempts, len(record.history)) == ("PROCESSING", 1, 1)
    assert pipeline.visibility_spy.calls[-1]["VisibilityTimeout"] == 31


# -- partial batches --------------------------------------------------------------------------


def test_a_mixed_batch_reports_exactly_the_failed_messages_and_never_reruns_the_others(
    rt: Runtime, pipeline: Pipeline
) -> None:
    ids = {name: submit(name) for name in ("SUCCESS", "ERROR")}
    ids["SUCCESS-2"] = submit("SUCCESS")
    messages = pipeline.receive()
    assert len(messages) == 3

    delivery = pipeline.deliver(messages)

    # every record is acknowledged: the failed one's retry waits as a delayed copy
    assert delivery.failed_ids == set()
    assert pipeline.delays_sent() == [2]
    # the retry delivers only the failed task's message; the successes ran once
    pipeline.run_until_idle()
    assert len(pipeline.runs) == 2
    assert [json.loads(body)["taskId"] for body in pipeline.runs[1].bodies] == [ids["ERROR"]]
    for name in ("SUCCESS", "SUCCESS-2"):
        record = task(rt, ids[name]).record
        assert (record.status, record.attempts) == ("COMPLETED", 1)
    assert task(rt, ids["ERROR"]).record.status == "FAILED"


# -- lost attempts and failures of AWS --------------------------------------------------------


def test_an_attempt_whose_lease_ran_out_is_recorded_lost_and_the_next_one_runs(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN a worker claimed attempt 1 and died: its lease ends in 30 s and it never reports
    task_id = submit("SUCCESS")
    rt.store.claim(task(rt, task_id).record, 1, rt.clock(), rt.clock() + timedelta(seconds=30))
    # WHEN the message comes back after the queue's visibility timeout
    pipeline.clock.advance(180)
    pipeline.deliver(pipeline.receive())

    # THEN attempt 1 is closed LOST (it counts), and attempt 2 succeeds
    record = task(rt, task_id).record
    assert [(h.attempt, h.outcome) for h in record.history] == [(1, "LOST"), (2, "SUCCEEDED")]
    assert (record.status, record.attempts) == ("COMPLETED", 2)


def test_a_lost_last_attempt_fails_the_task_and_dead_letters_it(
    rt: Runtime, pipeline: Pipeline
) -> None:
    task_id = submit("SUCCESS")
    for attempt in (1, 2):  # both attempts claimed by workers that died
        seen = task(rt, task_id).record
        lost = attempt - 1 or None
        rt.store.claim(seen, attempt, rt.clock(), rt.clock() + timedelta(seconds=30), lost)
        pipeline.clock.advance(180)

    pipeline.deliver(pipeline.receive())

    record = task(rt, task_id).record
    assert (record.status, record.attempts) == ("FAILED", 2)
    assert [h.outcome for h in record.history] == ["LOST", "LOST"]
    assert "lost" in (record.lastError or "")
    assert len(pipeline.receive(pipeline.dlq_url)) == 1


def test_an_aws_error_reports_the_record_failed_and_changes_nothing(
    rt: Runtime, pipeline: Pipeline
) -> None:
    # GIVEN DynamoDB throttles the worker's claim
    task_id = submit("SUCCESS")
    before = raw_item(rt, task_id)

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "UpdateItem",
        )

    rt.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", throttled)
    (message,) = pipeline.receive()

    delivery = pipeline.deliver([message])

    # THEN the error is not swallowed: the message is reported failed for SQS to redeliver
    assert delivery.failed_ids == {message["MessageId"]}
    assert raw_item(rt, task_id) == before
    # AND once DynamoDB recovers, the redelivery runs the task normally
    rt.dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", throttled)
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    pipeline.run_until_idle()
    assert task(rt, task_id).record.status == "COMPLETED"


def test_an_unreadable_message_is_parked_on_the_dlq_and_acknowledged(
    rt: Runtime, pipeline: Pipeline
) -> None:
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="not json at all")

    delivery = pipeline.deliver(pipeline.receive())

    assert delivery.failed_ids == set()
    (parked,) = pipeline.receive(pipeline.dlq_url)
    assert parked["Body"] == "not json at all"
    assert "taskId" in parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]


@pytest.mark.parametrize("read_s", [0, 10], ids=["quick read", "slow read"])
def test_the_lease_is_the_invocations_remaining_time(
    rt: Runtime, pipeline: Pipeline, read_s: float
) -> None:
    task_id = submit("SUCCESS")
    pipeline.context.remaining_ms = 12_345
    claimed_leases: list[int] = []

    def slow_read(**_: Any) -> None:  # e.g. the SDK retrying a throttled GetItem
        rt.dynamodb.meta.events.unregister("before-call.dynamodb.GetItem", slow_read)
        pipeline.clock.advance(read_s)

    rt.dynamodb.meta.events.register("before-call.dynamodb.GetItem", slow_read)

    def capture(params: dict[str, Any], **_: Any) -> None:
        lease = params.get("ExpressionAttributeValues", {}).get(":lease")
        if lease:
            claimed_leases.append(int(lease["N"]))

    rt.dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", capture)

    pipeline.deliver(pipeline.receive())

    # The lease runs from the clock after the read (the fake context's remaining time stays
    # fixed while the clock moves, so a lease from before the read would come out short).
    expected = rt.clock() + timedelta(milliseconds=12_345)
    assert claimed_leases == [int(expected.timestamp() * 1000)]
    assert to_iso(rt.clock()) == task(rt, task_id).record.history[0].startedAt
