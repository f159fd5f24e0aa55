"""The reconciler on moto: every unfinished task whose message is gone is found through the check
index (never a scan), re-enqueued once it is overdue, and then finishes; finished and on-schedule
tasks are left alone; the pass emits its metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_faults import lose_response
from aws_harness import FakeLambdaContext, Pipeline, raw_item, record_of, submit
from emf import emf_blobs, metric_total

from functions import reconciler
from functions.runtime import Runtime
from taskctl.chaos.clock import SimClock


def lose_message(pipeline: Pipeline) -> None:
    """The task's message disappears (deleted by hand, expired, never sent)."""
    for message in pipeline.receive():
        pipeline.sqs.delete_message(
            QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )


def queued(pipeline: Pipeline) -> list[str]:
    return [json.loads(message["Body"])["taskId"] for message in pipeline.receive()]


def test_a_pending_task_without_a_message_is_requeued_once_overdue_and_completes(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    # GIVEN a submitted task whose message is gone
    task_id = submit("SUCCESS")
    lose_message(pipeline)
    grace_s = rt.settings.policy.recoveryGraceSeconds

    # WHEN the reconciler runs before the grace is over, THEN it leaves the task alone
    clock.advance(grace_s - 1)
    assert reconciler.reconcile(rt).recovered == 0
    assert queued(pipeline) == []

    # WHEN it runs after the grace, THEN the task's message is back and the task runs
    clock.advance(2)
    sweep = reconciler.reconcile(rt)
    assert (sweep.recovered, sweep.oldest_overdue_s) == (1, grace_s + 1)
    pipeline.run_until_idle()
    assert record_of(rt, task_id).status == "COMPLETED"


def test_a_retrying_task_whose_message_was_deleted_is_recovered_after_its_retry_time(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    task_id = submit("ERROR")
    pipeline.deliver(pipeline.receive())  # attempt 1 fails: RETRYING, due in 2 s
    pipeline.sqs.purge_queue(QueueUrl=pipeline.queue_url)

    clock.advance(rt.settings.policy.recoveryGraceSeconds + 3)
    reconciler.reconcile(rt)
    pipeline.run_until_idle()

    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("FAILED", 2)


def test_a_task_whose_worker_died_mid_attempt_is_recovered_after_its_lease(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    task_id = submit("SUCCESS")
    rt.store.claim(record_of(rt, task_id), 1, rt.clock(), rt.clock())  # ... and died
    lose_message(pipeline)

    clock.advance(rt.settings.policy.recoveryGraceSeconds + 1)
    reconciler.reconcile(rt)
    pipeline.run_until_idle()

    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("COMPLETED", 2)
    assert [h.outcome for h in record.history] == ["LOST", "SUCCEEDED"]


def test_after_recoveries_a_claim_restores_the_bound_for_the_next_lost_message(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    # GIVEN a task recovered 5 times while a backlog kept its message from the worker, so the
    # reconciler looks at it less and less often (grace x 2^recoveries)
    grace_s = rt.settings.policy.recoveryGraceSeconds
    task_id = submit("ERROR")
    for _ in range(5):
        clock.advance(grace_s * 40)
        assert reconciler.reconcile(rt).recovered == 1
    assert raw_item(rt, task_id)["recoveries"] == {"N": "5"}

    # WHEN a worker at last runs attempt 1 (it fails: RETRYING, due in 2 s), and then every
    # message of the task is lost
    pipeline.deliver(pipeline.receive(max_messages=1))
    pipeline.sqs.purge_queue(QueueUrl=pipeline.queue_url)
    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("RETRYING", 1)

    # THEN the task runs again within the bound (grace + one reconciler interval after it was
    # due), not grace x 2^5 later
    interval_s = 60
    for _ in range((grace_s + 2) // interval_s + 2):
        clock.advance(interval_s)
        reconciler.reconcile(rt)
    pipeline.run_until_idle()
    record = record_of(rt, task_id)
    assert (record.status, record.attempts) == ("FAILED", 2)
    assert "recoveries" not in raw_item(rt, task_id)


def test_finished_and_on_schedule_tasks_are_left_alone_and_each_entry_is_read_once(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    finished = submit("SUCCESS")
    pipeline.run_until_idle()
    waiting = submit("SUCCESS")  # still PENDING with its message on the queue
    clock.advance(rt.settings.policy.recoveryGraceSeconds - 1)
    late = submit("SUCCESS")

    clock.advance(2)
    first = reconciler.reconcile(rt)
    second = reconciler.reconcile(rt)

    assert (first.checked, first.recovered) == (2, 1)  # `late` is not due for a check yet
    assert record_of(rt, finished).status == "COMPLETED"
    assert second.checked == 0  # the cursor moved past both entries
    assert sorted(queued(pipeline)) == sorted([waiting, late, waiting])


def test_a_recovery_whose_reschedule_reply_was_lost_still_requeues(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    task_id = submit("SUCCESS")
    lose_message(pipeline)
    clock.advance(rt.settings.policy.recoveryGraceSeconds + 1)
    lose_response(rt.dynamodb, "UpdateItem")

    assert reconciler.reconcile(rt).recovered == 1
    assert queued(pipeline) == [task_id]


def test_the_handler_emits_recovered_tasks_and_the_oldest_overdue_age(
    rt: Runtime, pipeline: Pipeline, clock: SimClock, capsys: pytest.CaptureFixture[str]
) -> None:
    submit("SUCCESS")
    lose_message(pipeline)
    clock.advance(rt.settings.policy.recoveryGraceSeconds + 10)
    capsys.readouterr()

    result: dict[str, Any] = reconciler.handler({"source": "aws.events"}, FakeLambdaContext())

    assert result["recovered"] == 1
    blobs = emf_blobs(capsys.readouterr().out)
    assert metric_total(blobs, reconciler.RECOVERED_TASKS_METRIC) == 1
    assert metric_total(blobs, reconciler.OLDEST_OVERDUE_METRIC) == (
        rt.settings.policy.recoveryGraceSeconds + 10
    )
    directive = blobs[0]["_aws"]["CloudWatchMetrics"][0]
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["service", "stack"]]


def test_a_stale_read_of_a_finished_task_neither_moves_its_check_nor_requeues_it(
    rt: Runtime, pipeline: Pipeline, clock: SimClock
) -> None:
    # GIVEN a task that finished, but that the reconciler's eventually consistent read still
    # shows PENDING (as it was before the worker's writes)
    task_id = submit("SUCCESS")
    stale = rt.store.get(task_id)
    assert stale is not None
    pipeline.run_until_idle()
    before = raw_item(rt, task_id)
    clock.advance(rt.settings.policy.recoveryGraceSeconds + 1)
    rt.store.get_many = lambda task_ids: [stale]  # type: ignore[method-assign]

    # WHEN the reconciler acts on that read
    sweep = reconciler.reconcile(rt)

    # THEN its conditional reschedule refuses the finished task, and nothing is queued
    assert (sweep.checked, sweep.recovered) == (1, 0)
    assert raw_item(rt, task_id) == before
    assert queued(pipeline) == []
