"""`python -m taskctl redrive`: give FAILED tasks more attempts, from their records.

Which tasks: the ids given, or in bulk what `taskctl tasks list --status FAILED --since ...` shows
(the status index, newest first). Each task is redriven on its own, with the single-task
guarantees (`taskctl.ops.redrive`: a conditional write, then the enqueue), so a refusal or error
is reported for that task and the run goes on. `--dry-run` reads and plans, and writes nothing.

Where: see `taskctl.ops.target` (the local stack by default; `--stack` with `--table` and
`--queue-url` for a deployed one). The stack's policy decides the default extra attempts and the
reconciler's grace, so a deployed table always comes with the `--stack` it belongs to.

Exit status: 0 when every task was redriven (or, in a dry run, would be; or none matched); 1 when
any was refused, not found, or failed (one `error:` line each on stderr); 2 for an error that
stopped the run (bad flags, no local stack, AWS unreachable: tasks failing with AWS errors
`STOP_AFTER_ERRORS` times in a row).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from functions.lifecycle import TaskRecord, TaskStatus
from functions.policy import TaskPolicy
from functions.queue import TaskQueue
from functions.runtime import utc_now
from functions.store import TaskStore
from taskctl.exit_codes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED, exit_with_error
from taskctl.ops.redrive import (
    RedriveOutcome,
    RedriveResult,
    canonical_task_id,
    one_line,
    redrive_task,
)
from taskctl.ops.target import (
    DEFAULT_LOCAL_STACK,
    LocalOption,
    OpsError,
    QueueUrlOption,
    StackOption,
    TableOption,
    Target,
    aws_read,
    resolve_target,
    stack_policy,
)
from taskctl.ops.tasks import SINCE_HELP, find_tasks, parse_since
from taskctl.ops.tasks_cli import fits, under_id

MAX_EXTRA_ATTEMPTS = 50  # the policy's own maxAttempts limit
# Tasks failing with AWS errors this many times in a row: the table, the network or the
# credentials are the problem, not the tasks; stop instead of failing every remaining one.
STOP_AFTER_ERRORS = 3
# Each outcome's colour in the table, and the count of a bulk run's summary it adds to.
OUTCOMES = {
    RedriveOutcome.REDRIVEN: ("green", "redriven"),
    RedriveOutcome.WOULD_REDRIVE: ("cyan", "redriven"),
    RedriveOutcome.REFUSED: ("yellow", "refused"),
    RedriveOutcome.NOT_FOUND: ("yellow", "refused"),
    RedriveOutcome.ENQUEUE_FAILED: ("red", "failed"),
    RedriveOutcome.ERROR: ("red", "failed"),
}


class RedriveError(OpsError):
    """Stopped after some tasks; `results` are theirs."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, results: list[RedriveResult]) -> None:
        super().__init__(message)
        self.results = results


class RedriveInterrupted(RedriveError):
    """Ctrl-C part-way: the tasks done so far are reported, as for any stop."""

    exit_code = EXIT_INTERRUPTED


def redrive(
    task_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TASK_ID",
            help="Ids of FAILED tasks (or select them with --status FAILED --since).",
        ),
    ] = None,
    status: Annotated[
        TaskStatus | None,
        typer.Option(
            help="Redrive in bulk the tasks in this status (FAILED: the only one redriven), "
            "as `tasks list` shows them.",
            case_sensitive=False,
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help=f"With --status (required). {SINCE_HELP}")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="With --status: at most this many, newest first."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be redriven; write nothing.")
    ] = False,
    stack: StackOption = None,
    local: LocalOption = False,
    table: TableOption = None,
    queue_url: QueueUrlOption = None,
    extra_attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_EXTRA_ATTEMPTS,
            help="More attempts each task may make (default: the stack's maxAttempts).",
        ),
    ] = None,
) -> None:
    """Redrive FAILED tasks from their DynamoDB records: each becomes RETRYING with more
    attempts, keeps its history, and its message goes back on the main queue."""
    console = Console(highlight=False)
    bulk: datetime | None = None
    try:
        bulk = _bulk_selection(task_ids or [], status, since)
        if limit is not None and bulk is None:
            raise OpsError("--limit goes with --status FAILED --since; give those too")
        stack_name = stack or DEFAULT_LOCAL_STACK
        policy = stack_policy(stack_name)
        if stack is None and table is not None and queue_url is not None:
            # The policy (extra attempts, the reconciler's grace) is the stack's: guessing dev
            # for a prod table would grant dev's attempts.
            raise OpsError(
                "--table/--queue-url name a deployed stack: say which with --stack (its policy "
                "sets the extra attempts and the reconciler's grace)"
            )
        target = resolve_target(
            stack, local=local, table=table, queue_url=queue_url, needs_queue=True
        )
        store = TaskStore(target.client("dynamodb"), target.table_name, policy.taskTtlDays)
        attempts = extra_attempts if extra_attempts is not None else policy.maxAttempts
        source = "" if extra_attempts is not None else f" (stack {stack_name}'s maxAttempts)"
        if bulk is not None:
            chosen = aws_read(lambda: find_tasks(store, [TaskStatus.FAILED], bulk, limit))
            selected = [task.record.taskId for task in chosen]
            window = f"FAILED since {bulk.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            if not selected:
                console.print(f"No tasks {window} in {target.description}; nothing to redrive.")
                return
            what = f"{len(selected)} task(s) {window}"
        else:
            selected = _unique(task_ids or [])
            what = f"{len(selected)} task(s)"
        verb = "Would redrive" if dry_run else "Redriving"
        console.print(
            f"{verb} {what} in {target.description} with {attempts} more attempt(s) each{source}"
        )
        results = _redrive_each(
            target,
            store,
            policy,
            selected,
            attempts,
            dry_run=dry_run,
            show_progress=bulk is not None,
        )
    except RedriveError as exc:  # stopped part-way: report the tasks done so far
        _report(console, exc.results, bulk=bulk is not None, dry_run=dry_run)
        exit_with_error(str(exc), exc.exit_code)
    except OpsError as exc:
        exit_with_error(str(exc))

    _report(console, results, bulk=bulk is not None, dry_run=dry_run)
    if any(not result.succeeded for result in results):
        raise typer.Exit(EXIT_CHECK_FAILED)


def _bulk_selection(
    task_ids: list[str], status: TaskStatus | None, since: str | None
) -> datetime | None:
    """The `--since` moment of a bulk redrive, or None when ids are given."""
    if status is None:
        if since is not None:
            raise OpsError("--since selects tasks with --status FAILED; give both")
        if not task_ids:
            raise OpsError("give task ids, or --status FAILED --since 1h to redrive in bulk")
        return None
    if task_ids:
        raise OpsError("give task ids or --status, not both")
    if status != TaskStatus.FAILED:
        raise OpsError(f"--status {status.value}: only FAILED tasks can be redriven")
    if since is None:
        raise OpsError("a bulk redrive names its window: add --since (such as 1h or 2d)")
    try:
        return parse_since(since, utc_now())
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def _redrive_each(
    target: Target,
    store: TaskStore,
    policy: TaskPolicy,
    task_ids: list[str],
    extra_attempts: int,
    *,
    dry_run: bool,
    show_progress: bool,
) -> list[RedriveResult]:
    """Each task on its own; an AWS error is that task's failure, unless `STOP_AFTER_ERRORS`
    come in a row (or, in a shorter run, every task meets one): then the whole run stops."""
    assert target.queue_url is not None  # resolve_target(needs_queue=True)
    # Redrive only ever sends to the main queue; the DLQ is not involved.
    queue = TaskQueue(target.client("sqs"), target.queue_url, dead_letter_queue_url="")
    results: list[RedriveResult] = []
    errors_in_a_row = 0
    for task_id in _progress(task_ids, show_progress, "dry run" if dry_run else "redriving"):
        try:
            result = redrive_task(
                store, queue.enqueue, task_id, extra_attempts, utc_now(), policy, dry_run=dry_run
            )
            errors_in_a_row = 0
        except KeyboardInterrupt:
            stopped = f"interrupted after {len(results)} of {len(task_ids)} task(s)"
            raise RedriveInterrupted(
                f"{stopped} (dry run: nothing written)"
                if dry_run
                else f"{stopped}, during task {task_id}: it may be redriven (its message then "
                "follows within the reconciler's grace); the same command again redrives the "
                "rest (a redriven task is no longer FAILED)",
                results,
            ) from None
        except (BotoCoreError, ClientError) as exc:
            errors_in_a_row += 1
            result = RedriveResult(
                canonical_task_id(task_id) or task_id, RedriveOutcome.ERROR, one_line(exc)
            )
        results.append(result)
        if errors_in_a_row == min(STOP_AFTER_ERRORS, len(task_ids)):
            raise RedriveError(
                f"stopped after {len(results)} of {len(task_ids)} task(s): {errors_in_a_row} in "
                f"a row failed with AWS errors (last: {result.detail}); check the credentials, "
                "the region and the table",
                results,
            )
    return results


def _progress(task_ids: list[str], show: bool, label: str) -> Iterable[str]:
    """The ids, with a progress bar (on a terminal) while a bulk run works through them."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True, disable=not show) as progress:
        yield from progress.track(task_ids, total=len(task_ids))


def _report(console: Console, results: list[RedriveResult], *, bulk: bool, dry_run: bool) -> None:
    """The per-task table, an `error:` line per task not redriven, and (bulk) the summary."""
    if results:
        console.print(_results_table(results, console))
    for result in results:
        if not result.succeeded:
            typer.echo(f"error: task {result.task_id}: {result.detail}", err=True)
    if bulk:
        counts = Counter(OUTCOMES[result.outcome][1] for result in results)
        redriven = "would be redriven" if dry_run else "redriven"
        console.print(
            f"Summary: {counts['redriven']} {redriven}, {counts['refused']} refused, "
            f"{counts['failed']} failed" + (" (dry run: nothing written)" if dry_run else "")
        )


def _unique(task_ids: list[str]) -> list[str]:
    """Each task once, in the order given (`ABC...` and `abc...` name the same task)."""
    by_task: dict[str, str] = {}
    for task_id in task_ids:
        by_task.setdefault(canonical_task_id(task_id) or task_id, task_id)
    return list(by_task.values())


def _results_table(results: list[RedriveResult], console: Console) -> Table:
    """One line per task when it fits the terminal; where it does not, each task's detail goes
    under its id, which is never cut."""
    wide = Table(
        "task", "result", "status", Column("attempts", justify="right"), "detail",
        title="Redrive", title_justify="left",
    )  # fmt: skip
    narrow = Table(
        Column("task", no_wrap=True), "result", "status", Column("attempts", justify="right"),
        title="Redrive", title_justify="left",
    )  # fmt: skip
    for result in results:
        style, _ = OUTCOMES[result.outcome]
        cells = (
            f"[{style}]{result.outcome}[/]",
            _change(result, lambda task: str(task.status)),
            _change(result, lambda task: f"{task.attempts}/{task.maxAttempts}"),
        )
        wide.add_row(escape(result.task_id), *cells, escape(result.detail))
        narrow.add_row(under_id(result.task_id, result.detail), *cells)
    return wide if fits(wide, console) else narrow


def _change(result: RedriveResult, show: Callable[[TaskRecord], str]) -> str:
    """`before -> after` when a write changed it, else the value as read (or nothing)."""
    if result.before is None:
        return ""
    before = show(result.before)
    if result.after is None or show(result.after) == before:
        return before
    return f"{before} -> {show(result.after)}"
