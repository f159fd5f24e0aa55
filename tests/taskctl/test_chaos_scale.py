"""`taskctl chaos --scale`: the queue model enforces SQS's in-flight quota, retry waits as delayed
re-sends never stall the queue at a rate that stalls waits kept in flight, and sampled tasks keep
the lifecycle's promises."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from functions.settings import StackSettings
from taskctl.capacity.quotas import Quotas
from taskctl.chaos.cli import chaos
from taskctl.chaos.scale import (
    DELAYED,
    IN_FLIGHT,
    OverLimit,
    QuotaQueue,
    ScaleConfig,
    run_scale,
    scale_report,
)

# 3 attempts, waits of 10 s then 20 s (no jitter): an ERROR task waits 30 s in all.
SETTINGS = StackSettings(
    maxAttempts=3,
    errorRate=0.3,
    backoffBaseSeconds=10,
    jitter=False,
    workerBatchSize=10,
    workerMaxConcurrency=50,
)
QUOTA = 5_000  # a small in-flight quota, so a short run meets it


@pytest.fixture(scope="module")
def quotas() -> Quotas:
    return dataclasses.replace(Quotas.load(), sqs_in_flight=QUOTA)


def test_the_queue_refuses_receives_at_its_in_flight_quota():
    # GIVEN a queue with a quota of 10 and 15 visible messages
    queue = QuotaQueue(in_flight_quota=10)
    queue.send((True, 1), 15, due_s=0, now_s=0)
    # WHEN 8 are hidden in flight, a receive gets only the 2 left under the quota
    queue.hide((True, 2), 8, until_s=30)
    got = queue.receive(wanted=100, in_flight_now=queue.hidden_count)
    assert sum(got.values()) == 2
    # AND at the quota, ReceiveMessage fails with OverLimit
    with pytest.raises(OverLimit):
        queue.receive(wanted=1, in_flight_now=10)


def test_delayed_messages_are_not_in_flight_and_come_back_when_due():
    queue = QuotaQueue(in_flight_quota=10)
    queue.send((True, 2), 50, due_s=30, now_s=0)
    assert (queue.delayed_count, queue.hidden_count, queue.visible_count) == (50, 0, 0)
    queue.release(30)
    assert (queue.delayed_count, queue.visible_count) == (0, 50)


def test_at_a_rate_that_stalls_waits_kept_in_flight_delayed_re_sends_never_stall(quotas):
    # GIVEN 200 ERROR tasks a second for 60 s: kept in flight, their waits would hold
    # 200 x 30 s = 6,000 messages, over the quota of 5,000
    config = ScaleConfig(settings=SETTINGS, rate_per_s=200, duration_s=60, quotas=quotas)
    # WHEN both designs run the same minute
    report = scale_report(config, "test")
    ours, old = report.ours, report.old
    # THEN the design before issue 13 fills the quota and holds messages back behind it
    assert old.peak_in_flight == QUOTA
    assert old.stalled_s > 0
    # AND with delayed re-sends the queue never stalls: in flight stays at what the workers
    # process in a second (50 batches / 0.06 s a record = 833), the waits are delayed
    assert ours.stalled_s == 0 and ours.over_limit_receives == 0
    assert ours.peak_in_flight <= 833
    assert ours.peak_delayed > QUOTA
    # AND every task ends FAILED after its 3 attempts, the sampled ones within the rules
    assert ours.settled and ours.failed == ours.submitted == 12_000
    assert ours.sampled == 12 and not ours.violations
    assert report.passed and report.in_flight_ratio > 5


def test_issue_13s_example_stalls_waits_kept_in_flight_at_the_real_quota_and_not_re_sends():
    # GIVEN issue 13's example: maxAttempts 8, base 10 s, no jitter (waits of 1,270 s in all),
    # and 200 ERROR submits a second for 25 minutes, with SQS's own quota of ~120,000
    settings = StackSettings(
        maxAttempts=8, backoffBaseSeconds=10, jitter=False, workerMaxConcurrency=100
    )
    config = ScaleConfig(settings=settings, rate_per_s=200, duration_s=1500)
    # WHEN both designs run it
    report = scale_report(config, "issue 13")
    # THEN waits kept in flight reach the quota: a task spends nearly all its first 1,270 s
    # waiting, so in flight grows by 200 a second and meets 120,000 at second 600. The queue
    # stalls there, and tasks are still unfinished when the run ends.
    assert report.old.peak_in_flight == config.quotas.sqs_in_flight == 120_000
    assert report.old.first_stall_s == 600
    assert not report.old.settled and report.old.unfinished > 0
    # AND as delayed re-sends more than the quota's worth wait, yet nothing stalls and all end
    assert report.ours.peak_delayed > 120_000
    assert report.ours.stalled_s == 0 and report.ours.settled
    assert report.ours.failed == report.ours.submitted == 300_000
    assert report.passed


def test_ordinary_tasks_complete_and_sampled_ones_follow_the_lifecycle(quotas):
    # errorRate 0.3 and no ERROR tasks: most complete at once, some on a retry, 0.3^3 = 2.7 %
    # fail; the sampled tasks' attempts are decided by lifecycle.decide_after_attempt.
    config = ScaleConfig(
        settings=SETTINGS, rate_per_s=100, duration_s=60, error_share=0.0, quotas=quotas
    )
    result = run_scale(config, DELAYED)
    assert result.settled and result.completed + result.failed == result.submitted == 6000
    assert result.failed == pytest.approx(6000 * 0.3**3, abs=2)
    assert result.sampled == 6 and not result.violations


def test_a_worker_too_slow_for_the_rate_leaves_tasks_unfinished_but_does_not_stall(quotas):
    # 5 workers at 0.06 s a record handle 83 records/s; 100 ERROR tasks a second need 300: the
    # 36,000 attempts of 2 minutes take 432 s, longer than the run lasts (120 + 30 + 120 s).
    config = ScaleConfig(
        settings=SETTINGS, rate_per_s=100, duration_s=120, worker_concurrency=5, quotas=quotas
    )
    result = run_scale(config, IN_FLIGHT)
    assert not result.settled and result.unfinished > 0
    assert result.stalled_s == 0


@pytest.fixture
def run():
    app = typer.Typer(add_completion=False)
    app.command()(chaos)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["chaos", *args])


def test_the_scale_mode_reports_both_designs_and_exits_0_when_the_queue_never_stalls(run):
    result = run("--scale", "--stack", "dev", "--rate", "20", "--duration", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["designs"]) == {DELAYED, IN_FLIGHT}
    assert report["designs"][DELAYED]["stalledSeconds"] == 0
    assert report["passed"] is True


def test_the_scale_mode_defaults_to_the_stacks_declared_peak(run):
    # dev admits 20/s with a burst of 40: 60 submits a second at most.
    result = run("--scale", "--stack", "dev", "--duration", "5", "--json")
    assert json.loads(result.output)["ratePerSecond"] == 60


def test_the_scale_mode_refuses_an_unknown_stack(run):
    result = run("--scale", "--stack", "nosuch")
    assert result.exit_code == 2


def test_the_scale_mode_prints_both_designs_and_the_ratio(run):
    result = run("--scale", "--stack", "dev", "--rate", "20", "--duration", "20")
    assert result.exit_code == 0, result.output
    assert "waits kept in flight (before #13)" in result.output
    assert "as many messages in flight" in result.output and "Passed" in result.output


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--tasks", "5"], "--tasks applies"), (["--tasks", "500", "--jobs", "3"], "--tasks, --jobs")],
    ids=["tasks", "tasks-and-jobs"],
)
def test_an_option_of_the_campaign_with_scale_is_a_usage_error(run, monkeypatch, args, named):
    def runs(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the scale run ran, the campaign's options ignored")

    monkeypatch.setattr("taskctl.chaos.scale.scale_report", runs)
    # --tasks 500 is the campaign's default, given: refused too
    result = run("--scale", "--duration", "5", *args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {named}")
    assert line.endswith("only to the fault campaign (chaos without --scale)")
    assert result.stdout == ""
