"""Redriving a FAILED task on moto: the record write, the enqueue, the reconciler behind a failed
or interrupted enqueue, and the worker that then runs the task again (DESIGN §3: "a FAILED task
can be redriven from its record").

Tasks are submitted through the api handler and run by the worker through `Pipeline` (Lambda's
event source mapping played on the simulated queues), so a redriven task meets the real claim
conditions. The command itself is run through Typer's runner against the same moto table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_faults import lose_response
from aws_harness import (
    FakeLambdaContext,
    Pipeline,
    http_event,
    json_body,
    raw_item,
    record_of,
    submit,
)
from typer.testing import CliRunner

from functions import api, reconciler
from functions.lifecycle import TaskRecord, from_iso
from functions.policy import TaskPolicy
from functions.queue import TaskQueue
from functions.runtime import Runtime
from functions.store import StoredTask, TaskChanged, TaskStore
from taskctl.chaos.clock import SimClock
from taskctl.ops import cli
from taskctl.ops.redrive import RedriveOutcome, RedriveResult, redrive_task

ALWAYS_FAILS = TaskPolicy(maxAttempts=2, errorRate=1.0, backoffBaseSeconds=2, maxDelaySeconds=900)
NEVER_FAILS = replace(ALWAYS_FAILS, errorRate=0.0)
GRACE = timedelta(seconds=ALWAYS_FAILS.recoveryGraceSeconds)


def redrive(rt: Runtime, task_id: str, extra_attempts: int = 1, **kwargs: Any) -> RedriveResult:
    store = kwargs.pop("store", rt.store)
    enqueue = kwargs.pop("enqueue", rt.queue.enqueue)
    return redrive_task(store, enqueue, task_id, extra_attempts, rt.clock(), rt.settings.policy)


def queued_task_ids(pipeline: Pipeline) -> list[str]:
    """Task ids of the messages now visible on the main queue (they become invisible)."""
    return [json.loads(m["Body"])["taskId"] for m in pipeline.receive()]


@pytest.fixture
def failed_task(make_runtime: Callable[..., Runtime], pipeline: Pipeline) -> str:
    """An ordinary task that FAILED after its 2 attempts, its DLQ message handled; the runtime
    installed afterwards never fails an attempt (the cause was fixed)."""
    make_runtime(policy=ALWAYS_FAILS)
    task_id = submit("resize image 42")
    pipeline.run_until_idle()
    assert len(pipeline.drain_dead_letters()) == 1
    make_runtime(policy=NEVER_FAILS)
    return task_id


# -- a redriven task runs again ---------------------------------------------------------------


def test_a_redriven_failed_task_runs_again_and_completes_keeping_its_history(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline, failed_task: str
) -> None:
    rt = make_runtime(policy=NEVER_FAILS)
    before = record_of(rt, failed_task)
    assert (before.status, before.attempts) == ("FAILED", 2)

    # WHEN an operator redrives it with one more attempt
    result = redrive(rt, failed_task, extra_attempts=1)

    # THEN its message is back on the main queue, and the worker's third attempt completes it
    assert result.outcome == RedriveOutcome.REDRIVEN, result.detail
    pipeline.run_until_idle()
    after = record_of(rt, failed_task)
    assert after.status == "COMPLETED"
    assert after.attempts == 3
    assert [(h.attempt, h.outcome) for h in after.history] == [
        (1, "FAILED"),
        (2, "FAILED"),
        (3, "SUCCEEDED"),
    ]
    assert after.history[:2] == before.history
    assert after.redriveCount == 1 and after.redrivenAt is not None
    assert after.failedAt is None and after.completedAt is not None
    assert pipeline.receive() == [] and pipeline.receive(pipeline.dlq_url) == []


def test_get_shows_a_redriven_task_as_retrying_and_due(rt: Runtime, failed_task: str) -> None:
    redrive(rt, failed_task, extra_attempts=2)

    response = api.handler(http_event("GET", f"/tasks/{failed_task}"), FakeLambdaContext())

    assert response["statusCode"] == 200
    shown = json_body(response)
    assert shown["status"] == "RETRYING"
    assert (shown["attempts"], shown["maxAttempts"]) == (2, 4)
    assert from_iso(shown["nextAttemptAt"]) == rt.clock()
    assert shown["redriveCount"] == 1 and shown["redrivenAt"] == shown["nextAttemptAt"]
    assert shown.get("failedAt") is None and shown["lastError"]
    TaskRecord.from_json(shown)  # the documented shape, nothing more


def test_a_redriven_task_that_fails_again_uses_every_extra_attempt_with_backoff(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline, failed_task: str
) -> None:
    rt = make_runtime(policy=ALWAYS_FAILS)  # the cause was not fixed after all
    redrive(rt, failed_task, extra_attempts=2)
    redriven_at = rt.clock()

    pipeline.run_until_idle()
    dead = pipeline.drain_dead_letters()

    after = record_of(rt, failed_task)
    assert (after.status, after.attempts, after.maxAttempts) == ("FAILED", 4, 4)
    assert [h.attempt for h in after.history] == [1, 2, 3, 4]
    # attempt 3 ran as soon as it was redriven; attempt 4 waited for attempt 3's backoff
    assert from_iso(after.history[2].startedAt) == redriven_at
    gap_s = (from_iso(after.history[3].startedAt) - from_iso(after.history[2].finishedAt)).seconds
    assert gap_s == after.history[2].retryDelaySeconds > 0
    assert [json.loads(m["Body"])["taskId"] for m in dead] == [failed_task]


# -- refusals ---------------------------------------------------------------------------------


def test_a_task_that_is_not_failed_is_refused_and_left_unchanged(
    rt: Runtime, pipeline: Pipeline
) -> None:
    completed = submit("SUCCESS")
    pipeline.run_until_idle()
    pending = submit("SUCCESS")  # its message stays queued: nobody runs the worker now
    items_before = {task_id: raw_item(rt, task_id) for task_id in (completed, pending)}
    enqueued: list[str] = []

    results = [redrive(rt, task_id, enqueue=enqueued.append) for task_id in items_before]

    assert [(r.outcome, r.before.status) for r in results] == [
        (RedriveOutcome.REFUSED, "COMPLETED"),
        (RedriveOutcome.REFUSED, "PENDING"),
    ]
    assert all("only a FAILED task can be redriven" in r.detail for r in results)
    assert {task_id: raw_item(rt, task_id) for task_id in items_before} == items_before
    assert enqueued == []


def test_an_unknown_or_malformed_id_is_reported_not_found(rt: Runtime) -> None:
    enqueued: list[str] = []

    unknown = redrive(rt, "0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a", enqueue=enqueued.append)
    malformed = redrive(rt, "not-a-uuid", enqueue=enqueued.append)

    assert (unknown.outcome, unknown.detail) == (RedriveOutcome.NOT_FOUND, "not found")
    assert malformed.outcome == RedriveOutcome.NOT_FOUND and "UUID" in malformed.detail
    assert enqueued == []


# -- races ------------------------------------------------------------------------------------


class RivalAfterRead(TaskStore):
    """A store whose first read lets a rival operator act right after it (the race window)."""

    def __init__(self, rt: Runtime, rival: Callable[[], object]) -> None:
        super().__init__(rt.dynamodb, rt.settings.table_name, rt.settings.policy.taskTtlDays)
        self._rival: Callable[[], object] | None = rival

    def get(self, task_id: str) -> StoredTask | None:
        seen = super().get(task_id)
        if self._rival is not None:
            rival, self._rival = self._rival, None
            rival()
        return seen


def test_two_operators_racing_redrive_a_task_once(
    rt: Runtime, pipeline: Pipeline, failed_task: str
) -> None:
    # GIVEN operator B reads the FAILED task, then operator A redrives it before B writes
    rival_results: list[RedriveResult] = []
    racing_store = RivalAfterRead(
        rt, lambda: rival_results.append(redrive(rt, failed_task, extra_attempts=1))
    )

    # WHEN B's redrive goes on with what it read
    ours = redrive(rt, failed_task, extra_attempts=5, store=racing_store)

    # THEN A's redrive stands, B's is refused naming the status, and one message was queued
    assert [r.outcome for r in rival_results] == [RedriveOutcome.REDRIVEN]
    assert ours.outcome == RedriveOutcome.REFUSED
    assert "RETRYING" in ours.detail
    after = record_of(rt, failed_task)
    assert (after.redriveCount, after.maxAttempts) == (1, 3)
    assert queued_task_ids(pipeline) == [failed_task]


def test_a_redrive_planned_on_an_older_failure_is_refused(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline, failed_task: str
) -> None:
    from functions.lifecycle import Redrive, plan_redrive

    rt = make_runtime(policy=ALWAYS_FAILS)
    stale = plan_redrive(record_of(rt, failed_task), 1, rt.clock())
    assert isinstance(stale, Redrive)
    # the task is redriven, runs, and FAILS again (attempts 3) before the stale write lands
    redrive(rt, failed_task, extra_attempts=1)
    pipeline.run_until_idle()
    failed_again = raw_item(rt, failed_task)
    assert record_of(rt, failed_task).status == "FAILED"

    with pytest.raises(TaskChanged):
        rt.store.redrive(stale.failed, stale.redriven, rt.clock(), rt.clock() + GRACE)

    assert raw_item(rt, failed_task) == failed_again


# -- enqueue failure --------------------------------------------------------------------------


def test_an_enqueue_failure_leaves_the_task_redriven_and_the_reconciler_queues_it(
    rt: Runtime, pipeline: Pipeline, clock: SimClock, failed_task: str
) -> None:
    gone = TaskQueue(rt.sqs, rt.settings.queue_url + "-deleted", rt.settings.dead_letter_queue_url)

    result = redrive(rt, failed_task, enqueue=gone.enqueue)

    assert result.outcome == RedriveOutcome.ENQUEUE_FAILED
    assert "the reconciler queues it" in result.detail
    assert record_of(rt, failed_task).status == "RETRYING"
    assert pipeline.receive() == []
    clock.advance(rt.settings.policy.recoveryGraceSeconds + 1)
    reconciler.reconcile(rt)
    pipeline.run_until_idle()
    after = record_of(rt, failed_task)
    assert (after.status, after.attempts, after.redriveCount) == ("COMPLETED", 3, 1)


def test_a_redrive_from_a_machine_whose_clock_is_behind_is_still_queued_by_the_reconciler(
    rt: Runtime, pipeline: Pipeline, clock: SimClock, failed_task: str
) -> None:
    # GIVEN the reconciler has walked up to now, and the operator's clock is behind by more
    # than the grace period
    reconciler.reconcile(rt)
    operator_now = clock() - GRACE - timedelta(minutes=5)
    gone = TaskQueue(rt.sqs, rt.settings.queue_url + "-deleted", rt.settings.dead_letter_queue_url)

    # WHEN a redrive from that machine writes the task but cannot enqueue it
    result = redrive_task(rt.store, gone.enqueue, failed_task, 1, operator_now, rt.settings.policy)
    assert result.outcome == RedriveOutcome.ENQUEUE_FAILED

    # THEN the reconciler's passes (every minute) find it after the grace period, and it runs
    for _ in range(int(GRACE.total_seconds()) // 60 + 2):
        clock.advance(60)
        reconciler.reconcile(rt)
    pipeline.run_until_idle()
    assert record_of(rt, failed_task).status == "COMPLETED"


def test_a_redrive_killed_between_its_write_and_its_enqueue_still_runs(
    rt: Runtime, pipeline: Pipeline, clock: SimClock, failed_task: str
) -> None:
    class Killed(BaseException):
        pass

    def killed(task_id: str) -> None:
        raise Killed

    with pytest.raises(Killed):
        redrive(rt, failed_task, enqueue=killed)

    clock.advance(rt.settings.policy.recoveryGraceSeconds + 1)
    reconciler.reconcile(rt)
    pipeline.run_until_idle()
    assert record_of(rt, failed_task).status == "COMPLETED"


def test_a_redrive_whose_write_reply_was_lost_is_redriven_and_queued(
    rt: Runtime, pipeline: Pipeline, failed_task: str
) -> None:
    lose_response(rt.dynamodb, "UpdateItem")

    result = redrive(rt, failed_task)

    assert result.outcome == RedriveOutcome.REDRIVEN, result.detail
    assert queued_task_ids(pipeline) == [failed_task]


def test_a_redrive_grants_exactly_its_extra_attempts_however_many_receives_they_take(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline, failed_task: str
) -> None:
    # GIVEN a redrive of 10 more attempts, more than maxReceiveCount receives of one message
    rt = make_runtime(policy=ALWAYS_FAILS)
    redrive(rt, failed_task, extra_attempts=10)

    # WHEN every one of them fails
    while pipeline.run_until_idle() + len(pipeline.drain_dead_letters()):
        pass

    # THEN the task made exactly 10 more attempts (2 + 10), not as many as the receives allowed
    record = record_of(rt, failed_task)
    assert (record.status, record.attempts) == ("FAILED", 12)
    assert [h.attempt for h in record.history] == list(range(1, 13))


# -- the dead-letter function after a redrive ----------------------------------------------------


def test_the_old_failures_dead_letter_does_not_fail_the_redriven_task(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline
) -> None:
    # GIVEN a FAILED task whose DLQ message the dead-letter function has not handled yet
    make_runtime(policy=ALWAYS_FAILS)
    task_id = submit("resize image 43")
    pipeline.run_until_idle()
    rt = make_runtime(policy=NEVER_FAILS)

    # WHEN it is redriven, and only then the dead-letter function gets the old message
    redrive(rt, task_id)
    assert len(pipeline.drain_dead_letters()) == 1

    # THEN the redriven task is not failed by it, and completes
    assert record_of(rt, task_id).status == "RETRYING"
    pipeline.run_until_idle()
    assert (record_of(rt, task_id).status, record_of(rt, task_id).attempts) == ("COMPLETED", 3)


# -- the command ------------------------------------------------------------------------------


def run_command(rt: Runtime, *args: str, stack: str = "dev") -> Any:
    """The command against the runtime's table and queue, as for a deployed stack."""
    return CliRunner().invoke(
        _app(),
        [*args, *deployed(rt), "--stack", stack],
        env={"COLUMNS": "200"},
    )


def deployed(rt: Runtime) -> list[str]:
    return ["--table", rt.settings.table_name, "--queue-url", rt.settings.queue_url]


def _app() -> Any:
    import typer

    app = typer.Typer()
    app.command()(cli.redrive)
    return app


def test_the_command_redrives_every_failed_id_and_exits_0(
    rt: Runtime, pipeline: Pipeline, failed_task: str
) -> None:
    outcome = run_command(rt, failed_task, "--extra-attempts", "3")

    assert outcome.exit_code == 0, outcome.output
    assert failed_task in outcome.stdout and "redriven" in outcome.stdout
    redriven = record_of(rt, failed_task)
    assert (redriven.status, redriven.maxAttempts) == ("RETRYING", 5)
    assert queued_task_ids(pipeline) == [failed_task]


def test_the_command_redrives_a_task_named_twice_once(
    rt: Runtime, pipeline: Pipeline, failed_task: str
) -> None:
    outcome = run_command(rt, failed_task, failed_task.upper(), "--extra-attempts", "1")

    assert outcome.exit_code == 0, outcome.output
    assert record_of(rt, failed_task).redriveCount == 1
    assert queued_task_ids(pipeline) == [failed_task]


def test_the_command_defaults_to_the_stacks_max_attempts(rt: Runtime, failed_task: str) -> None:
    from taskctl.program import load_stack_settings

    outcome = run_command(rt, failed_task)

    assert outcome.exit_code == 0, outcome.output
    dev_max_attempts = load_stack_settings("dev").maxAttempts
    assert record_of(rt, failed_task).maxAttempts == 2 + dev_max_attempts


def test_the_command_exits_1_with_one_line_per_refused_id(
    rt: Runtime, pipeline: Pipeline, failed_task: str
) -> None:
    completed = submit("SUCCESS")
    pipeline.run_until_idle()
    unknown = "0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a"

    outcome = run_command(rt, completed, failed_task, unknown, "--extra-attempts", "1")

    assert outcome.exit_code == 1
    errors = outcome.stderr.strip().splitlines()
    assert len(errors) == 2
    assert completed in errors[0] and "COMPLETED" in errors[0]
    assert unknown in errors[1] and "not found" in errors[1]
    assert record_of(rt, failed_task).status == "RETRYING"  # the others did not stop it


def test_a_deployed_table_without_its_stack_is_refused_before_anything_is_read(
    rt: Runtime, failed_task: str
) -> None:
    """Without --stack the command would have to guess the policy (dev's extra attempts and
    grace on what may be a prod record): it refuses, as a usage error, and writes nothing."""
    outcome = CliRunner().invoke(_app(), [failed_task, *deployed(rt)])

    assert outcome.exit_code == cli.EXIT_ERROR
    (line,) = outcome.stderr.strip().splitlines()
    assert "--stack" in line
    assert record_of(rt, failed_task).status == "FAILED"


def test_the_command_uses_the_named_stacks_policy_for_a_deployed_table(
    rt: Runtime, failed_task: str
) -> None:
    from taskctl.program import load_stack_settings

    outcome = run_command(rt, failed_task, stack="prod")

    assert outcome.exit_code == 0, outcome.output
    prod_max_attempts = load_stack_settings("prod").maxAttempts
    assert record_of(rt, failed_task).maxAttempts == 2 + prod_max_attempts


def test_the_command_refuses_half_a_deployed_target(rt: Runtime) -> None:
    outcome = CliRunner().invoke(
        _app(),
        ["0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a", "--table", rt.settings.table_name, "-s", "dev"],
    )

    assert outcome.exit_code == cli.EXIT_ERROR
    assert "--queue-url" in outcome.stderr


def test_the_command_without_a_running_local_stack_says_how_to_start_one_or_target_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKS_LOCAL_DIR", str(tmp_path))  # a state directory with no stack

    outcome = CliRunner().invoke(_app(), ["0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a", "--local"])

    assert outcome.exit_code == cli.EXIT_ERROR
    (line,) = outcome.stderr.strip().splitlines()
    assert "not running" in line and "local up" in line and "--table" in line
