"""`taskctl capacity`: its arithmetic against cases worked by hand, its quota flags, and its exit
codes. Every expected number below is worked in the comment above it from the module's formulas,
not copied from a run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from functions.settings import StackSettings
from taskctl.bench.cost import Prices
from taskctl.capacity.cli import capacity
from taskctl.capacity.model import Assumptions, plan, task_flow
from taskctl.capacity.quotas import QUOTAS_FILE, Quotas

# A small, clear stack: 3 attempts, waits of 10 s then 20 s (base 10, no jitter), batches of 10,
# at most 20 concurrent workers, a 30 s timeout, a 150/s API, a reconciler every minute.
SETTINGS = StackSettings(
    maxAttempts=3,
    errorRate=0.5,
    backoffBaseSeconds=10,
    maxDelaySeconds=900,
    jitter=False,
    workerBatchSize=10,
    workerMaxConcurrency=20,
    functionTimeoutSeconds=30,
    apiThrottleRateLimit=150,
    apiThrottleBurstLimit=300,
    reconcileIntervalMinutes=1,
    functionArchitecture="arm64",
    functionMemoryMb=1024,
    taskTtlDays=30,
)
# Round durations: api 50 ms, worker 100 ms per record, dead letter 40 ms; items under 1 KB.
ASSUMPTIONS = Assumptions(
    api_ms=50.0,
    worker_record_ms=100.0,
    dead_letter_record_ms=40.0,
    item_bytes=500,
    deferred_share=0.01,
)
# Round prices, so that cost lines can be worked by hand too.
PRICES = Prices(
    http_api_per_million=1.0,
    rest_api_per_million=3.5,
    lambda_per_million_requests=0.2,
    lambda_per_gb_s={"arm64": 0.00001, "x86_64": 0.00002},
    sqs_per_million=0.4,
    dynamodb_per_million_wru=1.0,
    dynamodb_per_million_rru=0.25,
    dynamodb_per_gb_month=0.25,
    logs_per_gb=0.5,
    recorded="test",
    region="test",
)


@pytest.fixture(scope="module")
def quotas() -> Quotas:
    return Quotas.load()


def planned(rate: float, quotas: Quotas, settings: StackSettings = SETTINGS, **changes):
    return plan(
        settings,
        rate,
        stack="test",
        quotas=quotas,
        prices=PRICES,
        backlog_tasks=10_000,
        assumptions=ASSUMPTIONS,
        **changes,
    )


def test_a_task_expected_life_is_worked_from_its_failure_probability():
    # p = 0.5, 3 attempts: A = 1 + 0.5 + 0.25 = 1.75 attempts, 0.75 retries,
    # FAILED share 0.5^3 = 0.125, waiting 0.5 x 10 s + 0.25 x 20 s = 10 s.
    flow = task_flow(SETTINGS.policy, 0.5)
    assert flow.attempts == pytest.approx(1.75)
    assert flow.retries == pytest.approx(0.75)
    assert flow.failed_share == pytest.approx(0.125)
    assert flow.retry_wait_s == pytest.approx(10.0)
    # p = 0: one attempt, no wait; p = 1: every attempt, every wait at its ceiling (10 + 20).
    assert task_flow(SETTINGS.policy, 0.0).attempts == 1.0
    assert task_flow(SETTINGS.policy, 0.0).retry_wait_s == 0.0
    always = task_flow(SETTINGS.policy, 1.0)
    assert (always.attempts, always.failed_share, always.retry_wait_s) == (3.0, 1.0, 30.0)


def test_lambda_concurrency_and_mapping_batches_at_100_per_second(quotas):
    report = planned(100, quotas)
    # api: 100/s x 0.05 s = 5; worker: 100 x 1.75 attempts x 0.1 s = 17.5;
    # dead letter: 100 x 0.125 x 0.04 s = 0.5; reconciler 1; in all 24.
    assert report.api_concurrency == pytest.approx(5.0)
    assert report.worker_concurrency == pytest.approx(17.5)
    assert report.dead_letter_concurrency == pytest.approx(0.5)
    assert report.total_concurrency == pytest.approx(24.0)
    # 18 batches at once; from the mapping's first 5 at 300 more a minute: 13 / 300 x 60 = 2.6 s.
    assert report.esm_batches_needed == 18
    assert report.esm_ramp_s == pytest.approx(2.6)


def test_queue_in_flight_and_delayed_messages_at_100_per_second(quotas):
    report = planned(100, quotas)
    # Processing: 175 attempts/s (under the workers' pace of 20 / 0.1 s = 200/s), each record in
    # flight for its batch of 10 x 0.1 s: 175 x 1 s = 175. Deferrals: 1 % of 175/s, each hidden
    # for the 30 s timeout + 1 s: 54.25. In flight: 229.25.
    assert report.in_flight_processing == pytest.approx(175.0)
    assert report.in_flight_deferred == pytest.approx(54.25)
    assert report.in_flight == pytest.approx(229.25)
    # The bound: 20 workers x 10 records + deferrals = 254.25.
    assert report.in_flight_bound == pytest.approx(254.25)
    # Retry waits are delayed re-sends: 100/s x 10 s = 1,000 delayed, none of them in flight.
    # Kept in flight (the design before issue 13) they would add to it: 1,229.25.
    assert report.delayed == pytest.approx(1000.0)
    assert report.in_flight_if_waits_in_flight == pytest.approx(1229.25)


def test_issue_13s_example_would_stall_the_old_design_and_not_this_one(quotas):
    # maxAttempts 8, base 10 s, cap 900 s: waits 10+20+40+80+160+320+640 = 1,270 s. At 200/s of
    # ERROR tasks that is 254,000 messages waiting, over the 120,000 in-flight quota if they were
    # in flight; delayed, they are not, and in flight stays within 20 x 10 + deferrals.
    settings = SETTINGS.model_copy(update={"maxAttempts": 8, "apiThrottleRateLimit": 1000})
    report = planned(200, quotas, settings=settings, failure_p=1.0)
    assert report.delayed == pytest.approx(254_000)
    assert report.in_flight_if_waits_in_flight > quotas.sqs_in_flight
    assert report.in_flight <= report.in_flight_bound < quotas.sqs_in_flight
    assert not [f for f in report.findings if f.quota.startswith("SQS")]


def test_dynamodb_units_per_table_and_index_at_100_per_second(quotas):
    table, check, status = planned(100, quotas).key_spaces
    # Table, 1 unit per write of a 500-byte item: per task 1 put + 2 writes x 1.75 attempts =
    # 4.5, plus the reconciler's cursor 0.01: 100 x 4.51 = 451 WRU/s. Reads: the worker's 1.75
    # and the dead-letter function's 0.125 (1 RRU each) and the reconciler's 0.5: 237.5 RRU/s.
    assert table.write_units_s == pytest.approx(451.0)
    assert table.read_units_s == pytest.approx(237.5)
    # Its busiest key: one task's claim and outcome, 2 WCU in a second (the cursor gets 1/s).
    assert (table.busiest_key, table.busiest_key_write_units_s) == ("one task", 2.0)
    # Check index: 1 entry per task = 100 WRU/s, over 16 shards = 6.25 on the busiest (1/16).
    assert check.write_units_s == pytest.approx(100.0)
    assert check.busiest_key_write_units_s == pytest.approx(6.25)
    assert check.busiest_key_write_share == pytest.approx(1 / 16)
    # Status index: the OPEN entry's put and delete 2 (claims and retries leave it alone), the
    # FAILED put 0.125: 2.125 per task, 212.5 WRU/s. Busiest: OPEN#<shard>, 100 x 2 / 16.
    assert status.write_units_s == pytest.approx(212.5)
    assert status.busiest_key == "OPEN#<shard>"
    assert status.busiest_key_write_units_s == pytest.approx(12.5)


def test_api_reconciler_backlog_and_cost_at_100_per_second(quotas):
    report = planned(100, quotas)
    # API: 150/s admitted, 50/s to spare.
    assert report.api_headroom_s == pytest.approx(50.0)
    # Reconciler: 100/s x 60 s = 6,000 tasks a pass; (30,000 ms - 10,000 ms margin) / 0.2 ms
    # per task = 100,000 it can read.
    assert report.reconciler_tasks_per_pass == pytest.approx(6000)
    assert report.reconciler_pass_capacity == pytest.approx(100_000)
    # Backlog: 20 workers / 0.1 s = 200 records/s, 25/s over the steady 175: 10,000 tasks x
    # 1.75 attempts / 25 = 700 s.
    assert report.worker_records_s_max == pytest.approx(200.0)
    assert report.drain_s == pytest.approx(700.0)
    costs = report.cost_per_million
    # Per task: SQS calls 1 submit + 0.75 re-sends + 0.125 DLQ sends = 1.875 x $0.4 = $0.75;
    # mappings 2 x (1.75 + 0.125) / 10 = 0.375 x $0.4 = $0.15 per million tasks.
    assert costs["sqsHandlerRequests"] == pytest.approx(0.75)
    assert costs["sqsEventSourceRequests"] == pytest.approx(0.15)
    # DynamoDB writes: (451 + 100 + 212.5) / 100 = 7.635 units x $1 = $7.635.
    assert costs["dynamodbWrites"] == pytest.approx(7.635)
    # Lambda duration at 1 GB: 0.05 + 1.75 x 0.1 + 0.125 x 0.04 + 0.0002 s = 0.2302 GB-s x
    # $0.00001 x 1e6 = $2.302.
    assert costs["lambdaDuration"] == pytest.approx(2.302)
    # Per hour: total per million x 100/s x 3,600 s / 1e6.
    assert report.cost_per_hour == pytest.approx(costs["total"] * 0.36)
    assert not report.findings


def test_each_quota_crossed_is_flagged_with_the_setting_to_change(quotas):
    # 200/s: the API admits 150/s; the worker needs 200 x 1.75 x 0.1 = 35 > 20; the backlog
    # never drains (the workers' 200 records/s are under the 350 needed).
    report = planned(200, quotas)
    settings = {finding.setting for finding in report.findings}
    assert settings == {"apiThrottleRateLimit", "workerMaxConcurrency"}
    worker = next(f for f in report.findings if f.quota.startswith("worker"))
    assert (worker.needed, worker.limit) == (pytest.approx(35.0), 20)
    assert "at least 35" in worker.advice
    assert report.drain_s is None


def test_in_flight_partition_and_reconciler_limits_are_flagged(quotas):
    # Against smaller limits the same 100/s crosses them: 229.25 in flight over 200, the status
    # index's busiest key at 12.5 WCU/s over 12, and a reconciler every 20 min (120,000 tasks
    # a pass) over the 100,000 a run gets through.
    tight = dataclasses.replace(quotas, sqs_in_flight=200, partition_wcu=12)
    settings = SETTINGS.model_copy(update={"reconcileIntervalMinutes": 20})
    report = planned(100, tight, settings=settings)
    by_quota = {finding.quota: finding for finding in report.findings}
    assert by_quota["SQS in-flight messages (main queue)"].setting == (
        "workerMaxConcurrency x workerBatchSize"
    )
    status = by_quota["DynamoDB by-status: busiest key (OPEN#<shard>) write units/s"]
    assert "shards" in status.setting
    reconciler = by_quota["reconciler pass (tasks per run within its timeout)"]
    assert reconciler.setting.startswith("reconcileIntervalMinutes")
    assert len(report.findings) == 3


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def run():
    app = typer.Typer(add_completion=False)
    app.command()(capacity)
    app.command("noop")(lambda: None)  # keeps Typer from collapsing the app into its command
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["capacity", *args])


def test_a_rate_within_every_quota_exits_0(run):
    # dev at 10/s: 10 < 20 admitted, worker 10 x 1.3 x 0.06 s = 0.78 < 5.
    result = run("--stack", "dev", "--rate", "10")
    assert result.exit_code == 0, result.output
    assert "No quota crossed" in result.output


def test_a_quotas_file_without_a_figure_is_one_line_naming_the_file_and_the_figure(
    run, monkeypatch, tmp_path
):
    quotas = json.loads(QUOTAS_FILE.read_text())
    del quotas["quotas"]["sqsInFlightPerStandardQueue"]
    broken = tmp_path / "quotas.json"
    broken.write_text(json.dumps(quotas))
    monkeypatch.setattr("taskctl.capacity.quotas.QUOTAS_FILE", broken)

    result = run("--stack", "dev", "--rate", "10")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {broken} has no quotas.sqsInFlightPerStandardQueue.value"
    )


def test_a_rate_that_crosses_a_quota_exits_1_and_names_the_setting(run):
    result = run("--stack", "dev", "--rate", "100", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["crossed"] is True
    assert "apiThrottleRateLimit" in {finding["setting"] for finding in report["findings"]}
    assert report["ratePerSecond"] == 100


def test_a_rate_whose_api_takes_the_whole_account_says_why_the_backlog_never_drains(run):
    # dev at 50,000/s: the API alone needs 50,000 x 0.04 s = 2,000 executions of the
    # account's 1,000, so the workers get none; "at most 0 records/s" would not say why.
    result = run("--stack", "dev", "--rate", "50000")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "never drains" in text
    assert "the API and dead-letter functions alone need all the account's 1,000" in text
    assert "at most 0 records/s" not in text


def test_error_rate_overrides_the_stacks(run):
    result = run("--stack", "prod", "--rate", "10", "--error-rate", "1", "--json")
    report = json.loads(result.output)
    # prod: 5 attempts, all failing: 5 attempts per task, all FAILED.
    assert report["perTask"]["attempts"] == 5 and report["perTask"]["failedShare"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ("--stack", "nosuch", "--rate", "10"),
        ("--stack", "dev", "--rate", "0"),
        ("--stack", "dev", "--rate", "10", "--error-rate", "2"),
        ("--stack", "dev"),
    ],
)
def test_usage_errors_exit_2(run, args):
    assert run(*args).exit_code == 2


def test_every_quota_in_the_quotas_file_cites_its_page_and_date():
    entries = json.loads(QUOTAS_FILE.read_text())["quotas"]
    for name, entry in entries.items():
        assert entry["source"].startswith("https://docs.aws.amazon.com/"), name
        assert entry["taken"] and entry["says"], name
