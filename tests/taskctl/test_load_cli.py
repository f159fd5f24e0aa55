"""`taskctl load` against a real HTTP server (the fake API on 127.0.0.1), and its error paths."""

from __future__ import annotations

import json
import socket

from fake_api import FakeApiServer, FakeTaskApi

DEV_POLICY = ("--max-attempts", "2", "--error-rate", "0.3")


def _report(tmp_path, result) -> dict:
    assert (tmp_path / "report.json").exists(), result.output
    return json.loads((tmp_path / "report.json").read_text())


def test_load_run_against_an_honest_api_passes_and_agrees_with_an_independent_count(
    fake_api, fake_server, run_load_cli, tmp_path
):
    # GIVEN an API that keeps the dev policy (seeded)
    # WHEN 200 tasks are run through it
    result = run_load_cli(
        "--url", fake_server.url, "--count", "200", "--concurrency", "8", "--timeout", "30",
        *DEV_POLICY, "--report", str(tmp_path / "report.json"),
    )  # fmt: skip
    # THEN every task is terminal, the verdict holds, and the counts are the server's own
    report = _report(tmp_path, result)
    assert result.exit_code == 0, result.output
    truth = fake_api.final_counts()
    assert report["submitted"] == len(fake_api.tasks) == 200
    # AND every message names the run, and none is a control word
    assert all(f"load {report['runId']} task" in t.message for t in fake_api.tasks.values())
    assert report["completed"] == truth["COMPLETED"]
    assert report["failed"] == truth["FAILED"]
    assert report["unfinished"] == 0
    assert report["expectedFailedFraction"] == 0.3**2
    assert report["observedFailedFraction"] == truth["FAILED"] / 200
    assert report["failedFractionConsistent"] is True
    # AND the attempts histogram counts what the server did
    true_attempts = [len(task.attempts) for task in fake_api.tasks.values()]
    assert {k: v["observed"] for k, v in report["attempts"].items()} == {
        "1": true_attempts.count(1),
        "2": true_attempts.count(2),
    }
    # AND every retry waited at least its promised delay
    gaps = report["retryGapSeconds"]
    assert gaps["count"] == true_attempts.count(2)
    assert gaps["violations"] == 0
    assert report["latencySeconds"]["p50"] <= report["latencySeconds"]["p99"]
    assert "Passed" in result.output


def test_report_has_the_documented_keys(fake_server, run_load_cli, tmp_path):
    run_load_cli("--url", fake_server.url, "--count", "5", *DEV_POLICY,
                 "--report", str(tmp_path / "report.json"))  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    documented = {
        "submitted", "completed", "failed", "unfinished", "expectedFailedFraction",
        "observedFailedFraction", "attempts", "latencySeconds", "retryGapSeconds",
    }  # fmt: skip
    assert documented <= set(report)
    assert set(report["latencySeconds"]) >= {"p50", "p95", "p99"}
    assert set(report["retryGapSeconds"]) >= {
        "promised",
        "measured",
        "minSlackSeconds",
        "violations",
    }


def test_a_failure_rate_far_above_the_policy_fails_the_run(run_load_cli, tmp_path):
    # GIVEN a deployment that fails 90 % of attempts while the policy claims 30 %
    with FakeApiServer(FakeTaskApi(error_rate=0.9, max_attempts=2, seed=3)) as server:
        result = run_load_cli("--url", server.url, "--count", "150", "--timeout", "30", *DEV_POLICY,
                              "--report", str(tmp_path / "report.json"))  # fmt: skip
    report = _report(tmp_path, result)
    assert result.exit_code == 1
    assert report["unfinished"] == 0
    assert report["failedFractionConsistent"] is False
    assert "FAILED fraction is off" in report["verdict"]


def test_tasks_that_never_finish_fail_the_run_when_the_timeout_passes(run_load_cli, tmp_path):
    with FakeApiServer(FakeTaskApi(tasks_finish=False)) as server:
        result = run_load_cli("--url", server.url, "--count", "4", "--timeout", "0.5", *DEV_POLICY,
                              "--report", str(tmp_path / "report.json"))  # fmt: skip
    report = _report(tmp_path, result)
    assert result.exit_code == 1
    assert report["unfinished"] == 4
    assert "did not finish" in report["verdict"]


def test_retries_that_start_before_their_promised_delay_are_reported(run_load_cli, tmp_path):
    # GIVEN a worker that retries 40 ms before the 50 ms it promised, and fails every attempt
    api = FakeTaskApi(error_rate=1.0, max_attempts=2, backoff_base_s=0.05, early_retry_s=0.04)
    with FakeApiServer(api) as server:
        run_load_cli("--url", server.url, "--count", "5", "--timeout", "10", *DEV_POLICY,
                     "--report", str(tmp_path / "report.json"))  # fmt: skip
    gaps = json.loads((tmp_path / "report.json").read_text())["retryGapSeconds"]
    assert gaps["count"] == 5
    assert gaps["violations"] == 5
    assert gaps["minSlackSeconds"] < -0.03


def test_an_unreachable_url_is_one_clear_line_without_a_traceback(run_load_cli):
    # A port held (bound, never listening) for the whole test: nothing else can take it and
    # answer, and a connection to it is refused.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        result = run_load_cli("--url", f"http://127.0.0.1:{port}/dev", "--count", "3", *DEV_POLICY)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach http://127.0.0.1:")
    assert "Traceback" not in result.output


def test_without_url_and_without_a_local_stack_it_says_what_to_start_or_pass(
    run_load_cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("TASKS_LOCAL_DIR", str(tmp_path))  # where no local stack runs
    result = run_load_cli("--count", "3", "--stack", "prod")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: local stack 'prod' is not running; start it with")
    assert line.endswith("or pass a deployed stack's apiUrl with --url")
    assert "Traceback" not in result.output


def test_a_refused_submit_names_the_status_and_the_apis_message(run_load_cli):
    for status in (403, 500):
        with FakeApiServer(FakeTaskApi(submit_status=status)) as server:
            result = run_load_cli("--url", server.url, "--count", "3", *DEV_POLICY)
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert f"answered {status}: submits are refused here" in line
        assert "Traceback" not in result.output


def test_conflicting_or_incomplete_policy_flags_are_refused(run_load_cli, fake_server):
    both = run_load_cli("--url", fake_server.url, "--stack", "dev", *DEV_POLICY)
    half = run_load_cli("--url", fake_server.url, "--max-attempts", "2")
    assert both.exit_code == 2 and "not both" in both.output
    assert half.exit_code == 2 and "go together" in half.output


def test_bad_flag_values_are_refused_before_anything_is_sent(run_load_cli, fake_api, fake_server):
    for args in (("--count", "0"), ("--error-rate", "1.5", "--max-attempts", "2"),
                 ("--url", ""), ("--url", "ftp://example.com/dev")):  # fmt: skip
        url_args = () if "--url" in args else ("--url", fake_server.url)
        result = run_load_cli(*url_args, *args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output
    assert fake_api.tasks == {}


def test_the_policy_comes_from_the_stack_file_when_asked(run_load_cli, fake_server, tmp_path):
    # GIVEN the dev stack file, read the way the Pulumi program reads it
    from taskctl.program import load_stack_settings

    dev = load_stack_settings("dev")
    # WHEN the run is judged against --stack dev
    run_load_cli("--url", fake_server.url, "--count", "3", "--stack", "dev",
                 "--report", str(tmp_path / "report.json"))  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    # THEN the expected fraction is the stack's own
    assert report["policy"] == {
        "maxAttempts": dev.maxAttempts, "errorRate": dev.errorRate, "source": "stack dev"
    }  # fmt: skip
    assert report["expectedFailedFraction"] == dev.errorRate**dev.maxAttempts


def test_an_unknown_stack_is_one_clear_line(run_load_cli, fake_server):
    result = run_load_cli("--url", fake_server.url, "--stack", "nosuchstack")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "nosuchstack" in line


def test_submits_that_time_out_or_meet_a_503_are_retried_without_duplicate_tasks(tmp_path):
    # GIVEN an API that answers its first 3 submits 503 and the next 3 too late (though it
    # stored those tasks)
    from taskctl.load.report import LoadPolicy
    from taskctl.load.runner import LoadOptions, run_load

    api = FakeTaskApi(unavailable_submits=3, slow_submits=3, slow_reply_s=0.6)
    with FakeApiServer(api) as server:
        options = LoadOptions(
            url=server.url, count=10, concurrency=2, timeout_s=10, request_timeout_s=0.3,
            policy=LoadPolicy(max_attempts=2, error_rate=0.3, source="test"),
        )  # fmt: skip
        report = run_load(options)
    # THEN every task was submitted exactly once (the Idempotency-Key made the retries safe)
    assert len(api.tasks) == 10
    assert report["submitted"] == 10
    assert report["unfinished"] == 0
    assert report["completed"] + report["failed"] == 10


def test_a_given_token_is_sent_with_every_request(run_load_cli, tmp_path):
    api = FakeTaskApi(error_rate=0.3, max_attempts=2, seed=3, bearer_token="t0ken")
    with FakeApiServer(api) as server:
        result = run_load_cli(
            "--url", server.url, "--count", "20", "--token", "t0ken", *DEV_POLICY,
            "--report", str(tmp_path / "report.json"),
        )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert _report(tmp_path, result)["submitted"] == len(api.tasks) == 20


def test_without_a_token_an_authenticating_api_is_one_line_saying_how_to_get_one(run_load_cli):
    with FakeApiServer(FakeTaskApi(bearer_token="t0ken")) as server:
        result = run_load_cli("--url", server.url, "--count", "3", *DEV_POLICY)

    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "answered 401: Unauthorized" in line
    assert "--token $(python -m taskctl token" in line


def test_a_token_that_may_submit_but_not_read_stops_the_run_saying_why(run_load_cli):
    # GIVEN a token with tasks/write only: API Gateway answers every read 403
    api = FakeTaskApi(bearer_token="t0ken", read_status=403)
    with FakeApiServer(api) as server:
        result = run_load_cli("--url", server.url, "--count", "3", "--token", "t0ken", *DEV_POLICY)

    # THEN one line, exit 2, long before the timeout: not "3 tasks did not finish" (exit 1)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "answered 403" in line
    assert "the token was refused: it needs the scope tasks/read" in line


def test_a_refused_token_is_not_answered_with_pass_a_token(run_load_cli):
    with FakeApiServer(FakeTaskApi(bearer_token="t0ken")) as server:
        result = run_load_cli(
            "--url", server.url, "--count", "3", "--token", "expired", *DEV_POLICY
        )  # fmt: skip

    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "answered 401" in line and "lasts 60 minutes" in line
    assert "pass --token" not in line
