"""The operator's commands on moto: `tasks list` and `tasks show` read the status index and the
records; `redrive --status FAILED --since ...` redrives in bulk what `tasks list` shows, each task
with the single-task guarantees.

Tasks are submitted through the api handler and run by the worker through `Pipeline`, so the
index entries are the ones the real writes leave. The commands run through Typer's runner against
the same moto table, as against a deployed stack (`--table`), with the clock they read pinned to
the tests' fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import typer
from aws_harness import Pipeline, raw_item, record_of, submit
from typer.testing import CliRunner

from functions.lifecycle import TaskStatus, from_iso, plan_redrive
from functions.policy import TaskPolicy
from functions.runtime import Runtime
from functions.store import CHECK_SHARDS
from taskctl.chaos.clock import SimClock
from taskctl.exit_codes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from taskctl.ops import cli, tasks_cli
from taskctl.ops.redrive import canonical_task_id, redrive_task
from taskctl.ops.tasks import find_tasks

ALWAYS_FAILS = TaskPolicy(maxAttempts=2, errorRate=1.0, backoffBaseSeconds=2, maxDelaySeconds=900)
NEVER_FAILS = replace(ALWAYS_FAILS, errorRate=0.0)
HOUR_S = 3_600
GRACE = timedelta(seconds=ALWAYS_FAILS.recoveryGraceSeconds)


@pytest.fixture(autouse=True)
def commands_read_the_fake_clock(monkeypatch: pytest.MonkeyPatch, clock: SimClock) -> None:
    monkeypatch.setattr(cli, "utc_now", clock)
    monkeypatch.setattr(tasks_cli, "utc_now", clock)


@pytest.fixture
def failed_tasks(
    make_runtime: Callable[..., Runtime], pipeline: Pipeline, clock: SimClock
) -> list[str]:
    """Three tasks that FAILED an hour apart (oldest first); then the cause is fixed."""
    make_runtime(policy=ALWAYS_FAILS)
    ids = []
    for n in range(3):
        ids.append(submit(f"resize image {n}"))
        pipeline.run_until_idle()
        pipeline.drain_dead_letters()
        clock.advance(HOUR_S)
    make_runtime(policy=NEVER_FAILS)
    return ids


def run(
    rt: Runtime, command: Callable[..., None], *args: str, queue: bool = False, columns: int = 200
) -> Any:
    """`command` against the runtime's table (and queue) as for a deployed stack, in a terminal
    `columns` wide."""
    app = typer.Typer()
    app.command()(command)
    target = ["--table", rt.settings.table_name]
    if queue:
        target += ["--queue-url", rt.settings.queue_url, "--stack", "dev"]
    return CliRunner().invoke(app, [*args, *target], env={"COLUMNS": str(columns)})


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# -- tasks list ---------------------------------------------------------------------------------


def test_list_shows_the_failed_tasks_newest_first_and_not_the_others(
    rt: Runtime, pipeline: Pipeline, failed_tasks: list[str]
) -> None:
    completed = submit("SUCCESS")
    pipeline.run_until_idle()
    pending = submit("still queued")

    listing = run(rt, tasks_cli.list_tasks, "--status", "FAILED", "--json")

    assert listing.exit_code == EXIT_OK, listing.output
    records = json_lines(listing.stdout)
    assert [r["taskId"] for r in records] == failed_tasks[::-1]
    assert {r["status"] for r in records} == {"FAILED"}
    assert records[0] == record_of(rt, failed_tasks[-1]).to_json()
    assert completed not in listing.stdout and pending not in listing.stdout


def test_list_without_a_status_shows_every_task_that_is_not_completed(
    rt: Runtime, pipeline: Pipeline, failed_tasks: list[str]
) -> None:
    completed = submit("SUCCESS")
    pipeline.run_until_idle()
    pending = submit("still queued")

    listing = run(rt, tasks_cli.list_tasks, "--json")

    assert listing.exit_code == EXIT_OK, listing.output
    assert [r["taskId"] for r in json_lines(listing.stdout)] == [pending, *failed_tasks[::-1]]
    assert completed not in listing.stdout


def test_list_since_and_limit_narrow_it_to_the_newest(rt: Runtime, failed_tasks: list[str]) -> None:
    # the tasks failed 3, 2 and 1 hours ago (plus the seconds their attempts took)
    recent = run(rt, tasks_cli.list_tasks, "--status", "failed", "--since", "150m", "--json")
    newest = run(rt, tasks_cli.list_tasks, "--status", "FAILED", "--limit", "1", "--json")

    assert [r["taskId"] for r in json_lines(recent.stdout)] == failed_tasks[:0:-1]
    assert [r["taskId"] for r in json_lines(newest.stdout)] == failed_tasks[-1:]


def test_list_skips_a_task_that_left_the_status_since_it_was_indexed(
    rt: Runtime, failed_tasks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index lags its writes by a moment: the records, read consistently, have the last word."""
    moved_on = failed_tasks[1]
    indexed = rt.store.by_status  # as read just before the task was redriven
    entries = list(indexed([TaskStatus.FAILED], since=None))
    plan = plan_redrive(record_of(rt, moved_on), 1, rt.clock())
    rt.store.redrive(plan.failed, plan.redriven, rt.clock(), rt.clock() + GRACE)  # type: ignore[union-attr]
    monkeypatch.setattr("functions.store.TaskStore.by_status", lambda self, *a, **k: iter(entries))

    listing = run(rt, tasks_cli.list_tasks, "--status", "FAILED", "--json")

    assert [r["taskId"] for r in json_lines(listing.stdout)] == [
        failed_tasks[2],
        failed_tasks[0],
    ]


def test_the_table_names_each_task_with_its_attempts_and_error(
    rt: Runtime, failed_tasks: list[str]
) -> None:
    listing = run(rt, tasks_cli.list_tasks, "--status", "FAILED")

    assert listing.exit_code == EXIT_OK, listing.output
    for task_id in failed_tasks:
        (row,) = [line for line in listing.stdout.splitlines() if task_id in line]
        assert "FAILED" in row and "2/2" in row and "simulated random error" in row


def test_in_an_80_column_terminal_the_error_and_message_go_under_the_id(
    rt: Runtime, failed_tasks: list[str]
) -> None:
    listing = run(rt, tasks_cli.list_tasks, "--status", "FAILED", columns=80)

    assert listing.exit_code == EXIT_OK, listing.output
    rows = narrow_rows(listing.stdout, width=80)
    assert list(rows) == failed_tasks[::-1]
    for n, task_id in enumerate(failed_tasks):
        first_line, under = rows[task_id]
        assert "FAILED" in first_line and "2/2" in first_line
        assert "error: simulated random error (errorRate=1.0)" in under
        assert f"message: resize image {n}" in under


def narrow_rows(output: str, *, width: int) -> dict[str, tuple[str, str]]:
    """{task id: (its row's first line, the first column's text under the id)} of a table
    printed `width` columns wide, checking that no line is wider and every id is whole."""
    lines = output.splitlines()
    assert max(map(len, lines)) <= width, output
    rows: dict[str, tuple[str, str]] = {}
    task_id = None
    for line in lines:
        cells = line.split("│")
        first = cells[1].strip() if len(cells) > 2 else None
        if first and canonical_task_id(first) == first:  # a whole task id
            task_id = first
            rows[task_id] = (line, "")
        elif first and task_id:  # wrapped text under the id joins with spaces
            row, under = rows[task_id]
            rows[task_id] = (row, f"{under} {first}".strip())
    return rows


def test_an_empty_list_says_so(rt: Runtime) -> None:
    listing = run(rt, tasks_cli.list_tasks, "--status", "FAILED", "--since", "1h")

    assert listing.exit_code == EXIT_OK
    assert "No FAILED tasks since" in listing.stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--status", "COMPLETED"], "not indexed"),
        (["--since", "yesterday"], "--since 'yesterday'"),
    ],
)
def test_bad_list_flags_are_usage_errors(rt: Runtime, args: list[str], complaint: str) -> None:
    listing = run(rt, tasks_cli.list_tasks, *args)

    assert listing.exit_code == EXIT_ERROR
    (line,) = listing.stderr.strip().splitlines()
    assert line.startswith("error:") and complaint in line


# -- tasks show ---------------------------------------------------------------------------------


def test_show_prints_the_history_as_a_timeline(rt: Runtime, failed_tasks: list[str]) -> None:
    task_id = failed_tasks[0]

    shown = run(rt, tasks_cli.show_task, task_id)

    assert shown.exit_code == EXIT_OK, shown.output
    lines = shown.stdout.splitlines()
    events = [
        next(i for i, line in enumerate(lines) if text in line)
        for text in (
            "submitted",
            "attempt 1 started",
            "attempt 1 FAILED",
            "backoff 2 s",
            "attempt 2 started",
            "attempt 2 FAILED",
        )
    ]
    assert events == sorted(events)  # in time order
    assert "waited 2 s (backoff 2 s)" in lines[events[4]]  # the delay waited
    assert "simulated random error" in lines[events[2]]  # the error
    assert "2 of 2" in shown.stdout


def test_show_json_has_the_record_and_its_timeline(rt: Runtime, failed_tasks: list[str]) -> None:
    shown = run(rt, tasks_cli.show_task, failed_tasks[0], "--json")

    body = json.loads(shown.stdout)
    assert body["task"] == record_of(rt, failed_tasks[0]).to_json()
    assert [e["event"] for e in body["timeline"]] == [
        "submitted",
        "attempt 1 started",
        "attempt 1 FAILED",
        "backoff 2 s",
        "attempt 2 started",
        "attempt 2 FAILED",
        "FAILED",
    ]
    times = [from_iso(e["at"]) for e in body["timeline"]]
    assert times == sorted(times)


def test_show_of_an_unknown_task_exits_1_and_of_a_malformed_id_exits_2(rt: Runtime) -> None:
    unknown = run(rt, tasks_cli.show_task, "0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a")
    malformed = run(rt, tasks_cli.show_task, "not-a-uuid")

    assert unknown.exit_code == EXIT_CHECK_FAILED and "not found" in unknown.stderr
    assert malformed.exit_code == EXIT_ERROR and "not a task id" in malformed.stderr


# -- bulk redrive ---------------------------------------------------------------------------------


def test_bulk_redrive_redrives_what_list_shows_and_sums_up(
    rt: Runtime, pipeline: Pipeline, failed_tasks: list[str]
) -> None:
    outcome = run(
        rt,
        cli.redrive,
        "--status",
        "FAILED",
        "--since",
        "150m",
        "--extra-attempts",
        "1",
        queue=True,
    )

    assert outcome.exit_code == EXIT_OK, outcome.output
    assert "Summary: 2 redriven, 0 refused, 0 failed" in outcome.stdout
    assert record_of(rt, failed_tasks[0]).status == "FAILED"  # outside the window
    pipeline.run_until_idle()
    for task_id in failed_tasks[1:]:
        after = record_of(rt, task_id)
        assert (after.status, after.attempts, after.redriveCount) == ("COMPLETED", 3, 1)


def test_a_dry_run_shows_what_would_be_redriven_and_writes_nothing(
    rt: Runtime, pipeline: Pipeline, failed_tasks: list[str]
) -> None:
    items = {task_id: raw_item(rt, task_id) for task_id in failed_tasks}

    outcome = run(rt, cli.redrive, "--status", "FAILED", "--since", "4h", "--dry-run", queue=True)

    assert outcome.exit_code == EXIT_OK, outcome.output
    assert all(task_id in outcome.stdout for task_id in failed_tasks)
    assert "would redrive" in outcome.stdout
    assert "Summary: 3 would be redriven, 0 refused, 0 failed (dry run: nothing written)" in (
        outcome.stdout
    )
    assert {task_id: raw_item(rt, task_id) for task_id in failed_tasks} == items
    assert pipeline.receive() == []


def test_in_an_80_column_terminal_a_redrive_shows_each_id_whole_with_its_detail_under_it(
    rt: Runtime, failed_tasks: list[str]
) -> None:
    outcome = run(
        rt, cli.redrive, "--status", "FAILED", "--since", "4h", "--dry-run", queue=True, columns=80
    )

    assert outcome.exit_code == EXIT_OK, outcome.output
    table = outcome.stdout[outcome.stdout.index("Redrive") : outcome.stdout.index("Summary")]
    rows = narrow_rows(table, width=80)
    assert sorted(rows) == sorted(failed_tasks)
    for first_line, under in rows.values():
        assert "would" in first_line and "2/2 -> 2/4" in first_line
        assert under == "2 more attempt(s); nothing written (dry run)"


def test_a_task_redriven_by_someone_else_meanwhile_is_refused_and_the_rest_go_on(
    rt: Runtime, failed_tasks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN another operator redrives one task between this run's listing and its redrive
    real_find = cli.find_tasks
    raced = failed_tasks[1]

    def find_then_race(*args: Any, **kwargs: Any) -> Any:
        found = real_find(*args, **kwargs)
        plan = plan_redrive(record_of(rt, raced), 1, rt.clock())
        rt.store.redrive(plan.failed, plan.redriven, rt.clock(), rt.clock() + GRACE)  # type: ignore[union-attr]
        return found

    monkeypatch.setattr(cli, "find_tasks", find_then_race)

    outcome = run(rt, cli.redrive, "--status", "FAILED", "--since", "4h", queue=True)

    # THEN that one is refused (reported on its own line), the others are redriven, exit 1
    assert outcome.exit_code == EXIT_CHECK_FAILED
    assert "Summary: 2 redriven, 1 refused, 0 failed" in outcome.stdout
    (line,) = outcome.stderr.strip().splitlines()
    assert raced in line and "RETRYING" in line
    assert record_of(rt, raced).redriveCount == 1  # once, by the other operator
    assert {record_of(rt, t).status for t in failed_tasks} == {TaskStatus.RETRYING}


def test_a_bulk_redrive_with_nothing_in_its_window_does_nothing(
    rt: Runtime, failed_tasks: list[str]
) -> None:
    outcome = run(rt, cli.redrive, "--status", "FAILED", "--since", "10m", queue=True)

    assert outcome.exit_code == EXIT_OK
    assert "nothing to redrive" in outcome.stdout
    assert {record_of(rt, t).status for t in failed_tasks} == {TaskStatus.FAILED}


def test_aws_errors_on_every_task_stop_the_run_with_exit_2(
    rt: Runtime, failed_tasks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def unreachable(*_: Any, **__: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.example")

    monkeypatch.setattr(cli, "redrive_task", unreachable)

    outcome = run(rt, cli.redrive, "--status", "FAILED", "--since", "4h", queue=True)

    assert outcome.exit_code == EXIT_ERROR
    assert "stopped after 3 of 3" in outcome.stderr
    assert "Summary: 0 redriven, 0 refused, 3 failed" in outcome.stdout


def test_ctrl_c_in_a_bulk_redrive_reports_what_was_done_and_exits_130(
    rt: Runtime, pipeline: Pipeline, failed_tasks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the operator presses Ctrl-C while the second of three tasks is being redriven
    calls = []

    def interrupted_on_the_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return redrive_task(*args, **kwargs)

    monkeypatch.setattr(cli, "redrive_task", interrupted_on_the_second)

    outcome = run(rt, cli.redrive, "--status", "FAILED", "--since", "4h", queue=True)

    # THEN the task done is in the table and the summary, and the line names the one cut short
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert "Summary: 1 redriven, 0 refused, 0 failed" in outcome.stdout
    assert f"interrupted after 1 of 3 task(s), during task {calls[1]}" in outcome.stderr
    redriven = [t for t in failed_tasks if record_of(rt, t).status == "RETRYING"]
    assert redriven == [calls[0]]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--status", "FAILED"], "--since"),
        (["--status", "RETRYING", "--since", "1h"], "only FAILED"),
        (["--since", "1h"], "--status"),
        ([], "give task ids"),
        (["0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a", "--limit", "5"], "--limit goes with"),
        (
            ["0b5e7a7e-6f0e-4c55-9a2e-8d0c4f1d2e3a", "--status", "FAILED", "--since", "1h"],
            "not both",
        ),
    ],
)
def test_bad_bulk_flags_are_usage_errors_and_change_nothing(
    rt: Runtime, failed_tasks: list[str], args: list[str], complaint: str
) -> None:
    outcome = run(rt, cli.redrive, *args, queue=True)

    assert outcome.exit_code == EXIT_ERROR
    (line,) = outcome.stderr.strip().splitlines()
    assert complaint in line
    assert {record_of(rt, t).status for t in failed_tasks} == {TaskStatus.FAILED}


def test_listing_queries_the_index_and_reads_the_records_and_never_scans(
    rt: Runtime, failed_tasks: list[str]
) -> None:
    calls: list[str] = []
    rt.dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )

    found = find_tasks(rt.store, [TaskStatus.FAILED], since=None, limit=10)

    assert [task.record.taskId for task in found] == failed_tasks[::-1]
    # one query per shard of the status index, then one batch read of the records
    assert calls == ["Query"] * CHECK_SHARDS + ["BatchGetItem"]
