"""`taskctl bench`: the cost model's arithmetic and the metering harness (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from functions.policy import TaskPolicy
from taskctl.bench import coldstart, harness, throughput
from taskctl.bench.cost import BYTES_PER_GB, Prices, TaskUsage, cost_per_million
from taskctl.bench.requests import (
    Design,
    ScenarioMeasurement,
    cost_table,
    measure,
    scenario_weights,
    scenarios,
    status_index_writes,
    usage,
)

ROUND_PRICES = Prices(
    http_api_per_million=1.0,
    rest_api_per_million=3.5,
    lambda_per_million_requests=0.2,
    lambda_per_gb_s={"arm64": 0.00001, "x86_64": 0.00002},
    sqs_per_million=0.4,
    dynamodb_per_million_wru=0.5,
    dynamodb_per_million_rru=0.1,
    dynamodb_per_gb_month=0.25,
    logs_per_gb=0.5,
    recorded="test",
    region="test",
)


def _usage(**overrides) -> TaskUsage:
    values = dict(
        api_kind="http",
        api_requests=1.0,
        lambda_invocations={"api": 1.0, "worker": 1.0},
        lambda_billed_ms={"api": 100.0, "worker": 900.0},
        memory_mb=1024,
        architecture="arm64",
        sqs_handler_requests=3.0,
        sqs_event_source_requests=2.0,
        dynamodb_wru=4.0,
        dynamodb_rru=2.0,
        log_bytes=BYTES_PER_GB / 1_000_000,
        stored_bytes=0.0,
        stored_days=1.0,
    )
    values.update(overrides)
    return TaskUsage(**values)


def test_cost_per_million_tasks_prices_each_line_by_hand():
    cost = cost_per_million(_usage(), ROUND_PRICES)
    assert cost["apiGatewayRequests"] == pytest.approx(1.0)  # 1 request x $1/M
    assert cost["lambdaRequests"] == pytest.approx(0.4)  # 2 invocations x $0.20/M
    # 1000 ms at 1 GB = 1 GB-s per task, a million tasks at $0.00001
    assert cost["lambdaDuration"] == pytest.approx(10.0)
    assert cost["sqsHandlerRequests"] == pytest.approx(1.2)
    assert cost["sqsEventSourceRequests"] == pytest.approx(0.8)
    assert cost["dynamodbWrites"] == pytest.approx(2.0)
    assert cost["dynamodbReads"] == pytest.approx(0.2)
    assert cost["logsIngestion"] == pytest.approx(0.5)  # 1 GB in total
    assert cost["total"] == pytest.approx(1.0 + 0.4 + 10.0 + 1.2 + 0.8 + 2.0 + 0.2 + 0.5)


def test_rest_api_and_x86_are_priced_at_their_own_rates():
    cost = cost_per_million(_usage(api_kind="rest", architecture="x86_64"), ROUND_PRICES)
    assert cost["apiGatewayRequests"] == pytest.approx(3.5)
    assert cost["lambdaDuration"] == pytest.approx(20.0)


def test_storage_is_priced_for_the_days_an_item_is_kept():
    # A million 1 KiB items kept 30 days = 1e6 KiB for a month at $0.25 per GiB-month
    cost = cost_per_million(_usage(stored_bytes=1024.0, stored_days=30.0), ROUND_PRICES)
    assert cost["dynamodbStorage"] == pytest.approx(1_000_000 * 1024 / BYTES_PER_GB * 0.25)


def test_the_prices_file_loads_and_names_its_sources_and_date():
    prices = Prices.load()
    assert prices.recorded and prices.region
    assert set(prices.lambda_per_gb_s) == {"arm64", "x86_64"}
    assert prices.rest_api_per_million > prices.http_api_per_million


def test_scenario_weights_follow_the_policy():
    weights = scenario_weights(0.3, 2)
    assert weights["fails"] == pytest.approx(0.09)
    assert weights["succeedsFirstTime"] == pytest.approx(0.7)
    assert sum(weights.values()) == pytest.approx(1.0)


def _measurement(**overrides) -> ScenarioMeasurement:
    values = dict(
        name="succeedsOnRetry",
        description="",
        final_status="COMPLETED",
        attempts=2,
        calls={
            "api": {"sqs": {"SendMessage": 1}},
            "worker": {"sqs": {"SendMessage": 1}},
        },
        wru={"api": 1, "worker": 4},
        rru={"worker": 2},
        invocations={"api": 1, "worker": 2, "dead-letter": 0},
        duration_ms={"api": 10.4, "worker": 20.0, "dead-letter": 0.0},
        log_bytes={"api": 100, "worker": 200, "dead-letter": 0},
        worker_acknowledged=1,
        item_bytes=500,
    )
    values.update(overrides)
    return ScenarioMeasurement(**values)


def test_batching_divides_invocations_and_event_source_requests_by_the_batch_size():
    batched, single = (
        Design(name=n, api_kind=k, batch_size=b, memory_mb=mb, architecture=a, original_writes=o)
        for n, k, b, mb, a, o in (
            ("b", "http", 5, 256, "arm64", False),
            ("s", "rest", 1, 1024, "x86_64", True),
        )
    )
    m = _measurement()
    ours, original = usage(m, batched, ttl_days=1), usage(m, single, ttl_days=1)
    assert ours.lambda_invocations["worker"] == pytest.approx(2 / 5)
    assert original.lambda_invocations["worker"] == 2
    # 2 receives + 1 delete, per batch
    assert ours.sqs_event_source_requests == pytest.approx(3 / 5)
    assert original.sqs_event_source_requests == 3
    # the api's 10.4 ms bills as 11; 2 deliveries of 10 ms each: one 5-record batch of 50 ms
    assert ours.lambda_billed_ms["api"] == 11
    assert ours.lambda_billed_ms["worker"] == pytest.approx(2 / 5 * 50)
    # the original writes status twice per attempt (1 WRU each) plus the submit's write
    assert original.dynamodb_wru == 1 + 2 * 2
    assert ours.dynamodb_wru == 5
    assert ours.sqs_handler_requests == original.sqs_handler_requests == 2


@pytest.mark.parametrize(
    ("final_status", "writes"),
    [
        # put (OPEN); the claims and retries leave the entry; COMPLETED removes it (delete)
        ("COMPLETED", 1 + 1),
        # ... or the last failure moves the entry to FAILED instead (delete + put)
        ("FAILED", 1 + 2),
    ],
)
def test_status_index_writes_count_the_entrys_put_and_its_end(
    final_status: str, writes: int
) -> None:
    assert status_index_writes(final_status) == writes


def test_the_status_index_adds_its_writes_and_a_failed_tasks_entry_to_a_tasks_usage():
    plain = Design(
        name="p",
        api_kind="http",
        batch_size=1,
        memory_mb=256,
        architecture="arm64",
        original_writes=False,
    )
    indexed = Design(**{**plain.__dict__, "name": "i", "status_index": True})
    completed = _measurement()
    failed = _measurement(final_status="FAILED")

    assert usage(completed, indexed, ttl_days=1).dynamodb_wru == 5 + 2
    assert usage(completed, indexed, ttl_days=1).stored_bytes == 500  # its entry is gone
    assert usage(failed, indexed, ttl_days=1).dynamodb_wru == 5 + 3
    assert usage(failed, indexed, ttl_days=1).stored_bytes == 500 + 195
    assert usage(failed, plain, ttl_days=1).dynamodb_wru == 5


def test_item_size_follows_dynamodbs_rules():
    # name bytes + value bytes: "taskId"(6) + "abc"(3); "n"(1) + 3 digits -> 3; "ok"(2) + 1
    item = {"taskId": {"S": "abc"}, "n": {"N": "123"}, "ok": {"BOOL": True}}
    assert harness.item_size(item) == 6 + 3 + 1 + 3 + 2 + 1
    # a list: 3 bytes overhead plus 1 per element
    assert harness.attribute_value_size({"L": [{"S": "ab"}, {"S": "c"}]}) == 3 + (2 + 1) + (1 + 1)


def test_metering_the_real_handlers_follows_each_task_to_its_end():
    # GIVEN the dev policy (2 attempts), each scenario metered once
    policy = TaskPolicy(maxAttempts=2, errorRate=0.3, backoffBaseSeconds=2, maxDelaySeconds=60)
    environment = dict(os.environ)
    measurements = {m.name: m for m in measure(policy, 256, repetitions=1)}
    first, retry, fails = (
        measurements[n] for n in ("succeedsFirstTime", "succeedsOnRetry", "fails")
    )
    # THEN the process's environment is as it was (the functions' variables were set inside)
    assert dict(os.environ) == environment
    # THEN each task ends as its scenario says
    assert (first.final_status, first.attempts) == ("COMPLETED", 1)
    assert (retry.final_status, retry.attempts) == ("COMPLETED", 2)
    assert (fails.final_status, fails.attempts) == ("FAILED", 2)
    assert tuple(m.invocations["worker"] for m in (first, retry, fails)) == (1, 2, 2)
    # AND a submit enqueues exactly one message; only the failed task reaches the DLQ
    for m in (first, retry, fails):
        assert m.calls["api"]["sqs"] == {"SendMessage": 1}
    # AND each retry is one delayed SendMessage of the worker's, and every delivery is
    # acknowledged (the retried one once its delayed copy was sent)
    assert "worker" not in first.calls or "sqs" not in first.calls["worker"]
    assert retry.calls["worker"]["sqs"] == {"SendMessage": 1}
    assert fails.calls["worker"]["sqs"] == {"SendMessage": 2}  # the retry, then the DLQ
    assert (retry.worker_acknowledged, fails.worker_acknowledged) == (2, 2)
    assert (first.invocations["dead-letter"], fails.invocations["dead-letter"]) == (0, 1)
    # AND more attempts cost more writes
    assert sum(fails.wru.values()) > sum(first.wru.values())
    # AND the cost table prices both designs
    designs = [
        Design(name=n, api_kind=k, batch_size=b, memory_mb=mb, architecture=a, original_writes=o)
        for n, k, b, mb, a, o in (
            ("ours", "http", 5, 256, "arm64", False),
            ("original", "rest", 1, 1024, "x86_64", True),
        )
    ]
    table = cost_table(
        list(measurements.values()),
        designs,
        Prices.load(),
        ttl_days=1,
        error_rate=0.3,
        max_attempts=2,
    )
    for design in ("ours", "original"):
        assert table[design]["mix"]["costPerMillionTasks"]["total"] > 0
        assert set(table[design]["scenarios"]) == set(measurements)


def test_with_jittered_backoff_each_scenario_still_ends_as_scripted():
    # GIVEN prod's policy: 5 attempts, full jitter (each retry draws its delay from the rng)
    policy = TaskPolicy(
        maxAttempts=5, errorRate=0.05, backoffBaseSeconds=2, maxDelaySeconds=900, jitter=True
    )
    measurements = {m.name: m for m in measure(policy, 256, repetitions=1)}
    # THEN the jitter took none of the scripted draws: the failing task failed all 5 attempts
    # (it completed after 4 when each jittered retry used one up)
    assert [(m.name, m.final_status, m.attempts) for m in measurements.values()] == [
        ("succeedsFirstTime", "COMPLETED", 1),
        ("succeedsOnRetry", "COMPLETED", 2),
        ("fails", "FAILED", 5),
    ]
    assert measurements["fails"].invocations["dead-letter"] == 1


def test_a_stack_with_a_single_attempt_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"needs maxAttempts >= 2 \(the stack has 1\)"):
        scenarios(1)


def test_a_hung_taskctl_step_ends_the_throughput_run_with_a_reason_and_still_stops_the_stack(
    monkeypatch,
):
    """`local outputs` hangs past its timeout: bench reports why, and `local down` still runs."""
    calls: list[list[str]] = []

    def fake_run(command, **kwargs):
        args = command[3:]  # python -m taskctl ...
        calls.append(args)
        if args[:2] == ["local", "outputs"]:
            raise subprocess.TimeoutExpired(command, kwargs["timeout"])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    result = throughput.measure_throughput("dev", tasks=5, concurrency=1, progress=lambda _m: None)

    assert result == {"measured": False, "reason": "no apiUrl output: timed out after 60 s"}
    assert calls[-1][:2] == ["local", "down"]


def test_an_import_that_fails_is_reported_with_the_interpreters_last_line(tmp_path):
    (tmp_path / "broken_handler.py").write_text("import no_such_dependency\n")

    with pytest.raises(RuntimeError) as failed:
        coldstart.import_seconds("broken_handler", [str(tmp_path)], sys.executable)

    assert str(failed.value) == (
        "import broken_handler failed: ModuleNotFoundError: No module named 'no_such_dependency'"
    )


# -- what `taskctl bench` refuses before it measures -------------------------------------------


def _bench(*args: str):
    from typer.testing import CliRunner

    from taskctl.cli import app

    return CliRunner().invoke(app, ["bench", "--throughput-tasks", "0", *args])


def _one_error_line(result) -> str:
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    return line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--import-python", "3.11"], "--import-python '3.11' is not a Lambda Python runtime"),
        (["--import-python", "abc"], "--import-python 'abc' is not a Lambda Python runtime"),
    ],
)
def test_an_import_python_that_cannot_run_is_refused_before_measuring(args, says, tmp_path):
    output = tmp_path / "results.json"
    result = _bench(*args, "--output", str(output))
    assert result.exit_code == 2
    assert says in _one_error_line(result)
    assert not output.exists()


def test_an_output_that_cannot_be_written_is_refused_before_measuring(tmp_path, monkeypatch):
    def no_measuring(*_args, **_kwargs):
        raise AssertionError("measured before checking --output")

    monkeypatch.setattr("taskctl.bench.cli.measure", no_measuring)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for output, says in (
        (a_file / "results.json", f"{a_file} is a file"),
        (tmp_path, "it is a directory"),
    ):
        result = _bench("--output", str(output))
        assert result.exit_code == 2
        assert _one_error_line(result) == f"error: cannot write the results to {output}: {says}"


def test_a_stack_with_one_attempt_is_refused_before_measuring(monkeypatch, tmp_path):
    from functions.settings import StackSettings

    monkeypatch.setattr(
        "taskctl.program.load_stack_settings", lambda _stack: StackSettings(maxAttempts=1)
    )
    result = _bench("--output", str(tmp_path / "results.json"))
    assert result.exit_code == 2
    assert _one_error_line(result) == (
        "error: stack dev: the benchmark prices a task that succeeds on a retry, so it needs "
        "maxAttempts >= 2 (the stack has 1)"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read {file}: No such file or directory"),
        ('{"lambda": ', "{file} is not valid JSON: "),
        ('{"apiGateway": {}}', "{file} has no apiGateway.httpApiPerMillionRequests"),
    ],
    ids=["missing", "not-json", "incomplete"],
)
def test_a_broken_prices_file_is_one_line_naming_it(monkeypatch, tmp_path, content, says):
    file = tmp_path / "prices.json"
    if content is not None:
        file.write_text(content)
    monkeypatch.setattr("taskctl.bench.cost.PRICES_FILE", file)
    result = _bench("--output", str(tmp_path / "results.json"))
    assert result.exit_code == 2
    assert _one_error_line(result).startswith("error: " + says.format(file=file))
