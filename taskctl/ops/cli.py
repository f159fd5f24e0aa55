"""`python -m taskctl redrive TASK_ID ...`: give FAILED tasks more attempts, from their records.

Where: the running local stack of `--stack` (table, queue, region and emulator endpoint from its
outputs and state), or, with `--table` and `--queue-url`, a deployed stack through the standard
AWS environment (credentials, `AWS_REGION`, `AWS_PROFILE`).

Exit status: 0 when every id was redriven; 1 when any was refused, not found, or could not be
enqueued (one `error:` line each on stderr); 2 for an error that stopped the run (bad flags, no
local stack, AWS unreachable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import boto3
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from functions.lifecycle import TaskRecord
from functions.queue import TaskQueue
from functions.runtime import utc_now
from functions.settings import SettingsError, TaskPolicy
from functions.store import TaskStore
from taskctl.exit_codes import EXIT_CHECK_FAILED, EXIT_ERROR
from taskctl.ops.redrive import RedriveOutcome, RedriveResult, canonical_task_id, redrive_task

MAX_EXTRA_ATTEMPTS = 50  # the policy's own maxAttempts limit
OUTCOME_STYLES = {
    RedriveOutcome.REDRIVEN: "green",
    RedriveOutcome.REFUSED: "yellow",
    RedriveOutcome.NOT_FOUND: "yellow",
    RedriveOutcome.ENQUEUE_FAILED: "red",
}


class RedriveError(Exception):
    """A problem that stops the whole run; its message is one line and says what to do."""


@dataclass(frozen=True)
class Target:
    """The table and main queue to redrive in, and how to reach them."""

    table_name: str
    queue_url: str
    description: str
    client: Callable[[str], Any]  # service name -> boto3 client


def redrive(
    task_ids: Annotated[
        list[str],
        typer.Argument(metavar="TASK_ID", help="Ids of FAILED tasks.", show_default=False),
    ],
    stack: Annotated[
        str, typer.Option("--stack", "-s", help="Stack whose policy (and local stack) to use.")
    ] = "dev",
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Use the stack's running local stack (the default without --table)."
        ),
    ] = False,
    table: Annotated[
        str | None,
        typer.Option(help="Task table of a deployed stack (`pulumi stack output tableName`)."),
    ] = None,
    queue_url: Annotated[
        str | None,
        typer.Option(help="Its main queue URL (`pulumi stack output queueUrl`)."),
    ] = None,
    extra_attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_EXTRA_ATTEMPTS,
            help="More attempts each task may make (default: the stack's maxAttempts).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Redrive FAILED tasks from their DynamoDB records: each becomes RETRYING with more
    attempts, keeps its history, and its message goes back on the main queue."""
    console = Console(highlight=False)
    try:
        policy = _stack_policy(stack)
        target = _resolve_target(stack, local=local, table=table, queue_url=queue_url)
        attempts = extra_attempts if extra_attempts is not None else policy.maxAttempts
        source = "" if extra_attempts is not None else f" (stack {stack}'s maxAttempts)"
        console.print(
            f"Redriving {len(task_ids)} task(s) in {target.description} "
            f"with {attempts} more attempt(s) each{source}"
        )
        results = _redrive_all(target, policy, _unique(task_ids), attempts)
    except RedriveError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None

    console.print(_results_table(results))
    refused = [result for result in results if not result.succeeded]
    for result in refused:
        typer.echo(f"error: task {result.task_id}: {result.detail}", err=True)
    if refused:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _stack_policy(stack: str) -> TaskPolicy:
    # Imported here: the config reader pulls in pulumi, slow to import and needed only now.
    from taskctl.program import StackConfigError, load_stack_settings

    try:
        return load_stack_settings(stack).policy
    except (SettingsError, StackConfigError) as exc:
        raise RedriveError(f"stack {stack}: {exc}") from None


def _resolve_target(stack: str, *, local: bool, table: str | None, queue_url: str | None) -> Target:
    if table is None and queue_url is None:
        return _local_target(stack)
    if local:
        raise RedriveError("give either --local or --table with --queue-url, not both")
    if table is None or queue_url is None:
        raise RedriveError("--table and --queue-url go together; give both")
    session = boto3.Session()
    region = session.region_name
    if region is None:
        raise RedriveError("no AWS region configured: set AWS_REGION (or AWS_PROFILE)")
    return Target(
        table_name=table,
        queue_url=queue_url,
        description=f"table {table} ({region})",
        client=session.client,
    )


def _local_target(stack: str) -> Target:
    from taskctl.local import emulator
    from taskctl.local.emulator import LocalStackError
    from taskctl.local.paths import StackPaths
    from taskctl.local.stack import read_outputs

    try:
        outputs = read_outputs(stack)
    except LocalStackError as exc:
        raise RedriveError(f"{exc}; for a deployed stack pass --table and --queue-url") from None
    running = emulator.read_running(StackPaths.for_stack(stack))
    if running is None:  # stopped between the two reads
        raise RedriveError(f"local stack {stack!r} is not running")
    # The emulator's own credentials and endpoint, whatever the shell's AWS settings say.
    session = boto3.Session(
        aws_access_key_id=emulator.FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=emulator.FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=running.region,
    )
    return Target(
        table_name=outputs["tableName"],
        queue_url=outputs["queueUrl"],
        description=f"local stack {stack} at {running.endpoint_url}",
        client=lambda service: session.client(service, endpoint_url=running.endpoint_url),
    )


def _redrive_all(
    target: Target, policy: TaskPolicy, task_ids: list[str], extra_attempts: int
) -> list[RedriveResult]:
    store = TaskStore(target.client("dynamodb"), target.table_name, policy.taskTtlDays)
    # Redrive only ever sends to the main queue; the DLQ is not involved.
    queue = TaskQueue(target.client("sqs"), target.queue_url, dead_letter_queue_url="")
    results = []
    for task_id in task_ids:
        try:
            results.append(
                redrive_task(store, queue.enqueue, task_id, extra_attempts, utc_now(), policy)
            )
        except (BotoCoreError, ClientError) as exc:
            done = f" after {len(results)} of {len(task_ids)} task(s)" if results else ""
            raise RedriveError(f"task {task_id}: {' '.join(str(exc).split())}{done}") from None
    return results


def _unique(task_ids: list[str]) -> list[str]:
    """Each task once, in the order given (`ABC...` and `abc...` name the same task)."""
    by_task: dict[str, str] = {}
    for task_id in task_ids:
        by_task.setdefault(canonical_task_id(task_id) or task_id, task_id)
    return list(by_task.values())


def _results_table(results: list[RedriveResult]) -> Table:
    table = Table(title="Redrive", title_justify="left")
    table.add_column("task")
    table.add_column("result")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("detail")
    for result in results:
        style = OUTCOME_STYLES[result.outcome]
        table.add_row(
            escape(result.task_id),
            f"[{style}]{result.outcome}[/]",
            _change(result.before, result.after, lambda task: str(task.status)),
            _change(
                result.before, result.after, lambda task: f"{task.attempts}/{task.maxAttempts}"
            ),
            escape(result.detail),
        )
    return table


def _change(
    before: TaskRecord | None, after: TaskRecord | None, show: Callable[[TaskRecord], str]
) -> str:
    """`before -> after` when a write changed it, else the value as read (or nothing)."""
    if before is None:
        return ""
    if after is None or show(after) == show(before):
        return show(before)
    return f"{show(before)} -> {show(after)}"
