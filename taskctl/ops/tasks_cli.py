"""`python -m taskctl tasks list|show`: the tasks that need attention, and one task's timeline.

`list` reads the sparse status index (`functions.store.STATUS_INDEX`; never a table scan): the
16 shards of each status asked newest first, merged, then the records read in batches. `show`
reads one record. Both only read, so a deployed table needs no `--stack` (no policy is used).

Exit status: 0 when it printed what was asked (an empty list included); 1 when `show` finds no
such task; 2 for bad flags, no local stack, or AWS unreachable.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

from functions.lifecycle import TaskStatus, from_iso
from functions.runtime import utc_now
from functions.store import StoredTask, TaskStore
from taskctl.exit_codes import EXIT_CHECK_FAILED, exit_with_error
from taskctl.ops.redrive import canonical_task_id
from taskctl.ops.target import (
    LocalOption,
    OpsError,
    StackOption,
    TableOption,
    aws_read,
    resolve_target,
)
from taskctl.ops.tasks import (
    SINCE_HELP,
    TimelineEvent,
    find_tasks,
    parse_since,
    shorten,
    statuses_to_list,
    timeline,
)

DEFAULT_LIMIT = 50
UNBOUNDED_WIDTH = 10_000
TASK_ID_WIDTH = 36  # a UUID's: a narrow table never cuts an id, the next command needs it whole
# The store's TTL only matters for terminal writes, which these commands never make.
UNUSED_TTL_DAYS = 1
STATUS_STYLES = {
    TaskStatus.PENDING: "blue",
    TaskStatus.PROCESSING: "cyan",
    TaskStatus.RETRYING: "yellow",
    TaskStatus.FAILED: "red",
    TaskStatus.COMPLETED: "green",
}

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])


@app.command("list")
def list_tasks(
    status: Annotated[
        TaskStatus | None,
        typer.Option(
            help="Only this status (default: PENDING, PROCESSING, RETRYING and FAILED; "
            "COMPLETED tasks are not indexed).",
            case_sensitive=False,
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help=SINCE_HELP)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = (
        DEFAULT_LIMIT
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON record per line instead of a table.")
    ] = False,
    stack: StackOption = None,
    local: LocalOption = False,
    table: TableOption = None,
) -> None:
    """Tasks that need attention, newest first: by status, from the status index."""
    try:
        statuses = statuses_to_list(status)
        moment = parse_since(since, utc_now()) if since is not None else None
        store = _store(stack, local, table)
        found = aws_read(lambda: find_tasks(store, statuses, moment, limit))
    except (OpsError, ValueError) as exc:
        exit_with_error(str(exc))

    if as_json:
        for task in found:
            typer.echo(json.dumps(task.record.to_json()))  # as `GET /tasks/{taskId}` shows it
        return
    console = Console(highlight=False)
    what = "/".join(s.value for s in statuses)
    window = f" since {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else ""
    if not found:
        console.print(f"No {what} tasks{window}.")
        return
    console.print(_list_table(found, f"{what} tasks{window}, newest first", utc_now(), console))
    if len(found) == limit:
        console.print(f"(the newest {limit}; --limit shows more)")


@app.command("show")
def show_task(
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID", help="The task's id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The record and its timeline as one JSON object.")
    ] = False,
    stack: StackOption = None,
    local: LocalOption = False,
    table: TableOption = None,
) -> None:
    """One task's record and its history as a timeline: attempts, outcomes, waits, errors."""
    try:
        canonical = canonical_task_id(task_id)
        if canonical is None:
            raise OpsError(f"{task_id!r} is not a task id (a UUID)")
        store = _store(stack, local, table)
        stored = aws_read(lambda: store.get(canonical))
    except OpsError as exc:
        exit_with_error(str(exc))
    if stored is None:
        exit_with_error(f"task {canonical}: not found", EXIT_CHECK_FAILED)

    events = timeline(stored)
    if as_json:
        shown = {
            "task": stored.record.to_json(),
            "recoveries": stored.recoveries,
            "timeline": [asdict(event) for event in events],
        }
        typer.echo(json.dumps(shown))
        return
    console = Console(highlight=False)
    console.print(_summary(stored))
    console.print(_timeline_table(events))


def _store(stack: str | None, local: bool, table: str | None) -> TaskStore:
    target = resolve_target(stack, local=local, table=table)
    return TaskStore(target.client("dynamodb"), target.table_name, UNUSED_TTL_DAYS)


def _list_table(found: list[StoredTask], title: str, now: datetime, console: Console) -> Table:
    """One line per task when its six columns fit the terminal. Where they do not (80 columns
    is common), rich would squeeze the error and the message to a few letters: there each goes
    on a line of its own under the task's id instead."""
    wide = Table(
        "updated", Column("task", no_wrap=True), "status", Column("attempts", justify="right"),
        "last error", "message", title=title, title_justify="left",
    )  # fmt: skip
    narrow = Table(
        Column("task", no_wrap=True), "status", Column("attempts", justify="right"),
        Column("updated", no_wrap=True), title=title, title_justify="left",
    )  # fmt: skip
    for stored in found:
        task = stored.record
        status = f"[{STATUS_STYLES[task.status]}]{task.status.value}[/]"
        attempts = f"{task.attempts}/{task.maxAttempts}"
        ago = _ago(task.updatedAt, now)
        error, message = shorten(task.lastError, 50), shorten(task.message, 30)
        updated = f"{task.updatedAt[:19].replace('T', ' ')} ({ago})"
        wide.add_row(updated, task.taskId, status, attempts, escape(error), escape(message))
        below = [f"error: {error}"] if error else []
        narrow.add_row(under_id(task.taskId, *below, f"message: {message}"), status, attempts, ago)
    return wide if fits(wide, console) else narrow


def fits(table: Table, console: Console) -> bool:
    """Whether `table` fits the terminal with no cell wrapped."""
    unbounded = console.options.update_width(UNBOUNDED_WIDTH)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def under_id(task_id: str, *texts: str) -> str:
    """A narrow table's first cell: the task's id, and under it `texts` wrapped to the id's
    width. The column does not wrap, so the id is never cut or broken (the next command needs
    it whole): the other columns make room instead."""
    wrapped = (textwrap.fill(text, TASK_ID_WIDTH) for text in texts)
    return "\n".join(escape(line) for line in (task_id, *wrapped))


def _ago(stamp: str, now: datetime) -> str:
    seconds = max(0, int((now - from_iso(stamp)).total_seconds()))
    for unit_s, unit in ((86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds >= unit_s:
            return f"{seconds // unit_s}{unit} ago"
    return f"{seconds}s ago"


def _summary(stored: StoredTask) -> Table:
    task = stored.record
    grid = Table.grid(Column(style="bold"), Column(), padding=(0, 2))
    grid.add_row("task", task.taskId)
    grid.add_row("status", f"[{STATUS_STYLES[task.status]}]{task.status.value}[/]")
    grid.add_row("attempts", f"{task.attempts} of {task.maxAttempts}")
    grid.add_row("message", escape(shorten(task.message, 200)))
    grid.add_row("created", task.createdAt)
    grid.add_row("updated", task.updatedAt)
    if task.lastError:
        grid.add_row("last error", escape(task.lastError))
    if task.redriveCount:
        grid.add_row("redriven", f"{task.redriveCount} time(s), last at {task.redrivenAt}")
    if stored.recoveries:
        grid.add_row("recovered", f"{stored.recoveries} time(s) by the reconciler")
    return grid


def _timeline_table(events: list[TimelineEvent]) -> Table:
    columns = (Column("at", no_wrap=True), Column("event", no_wrap=True), "detail")
    table = Table(*columns, title="Timeline (UTC)", title_justify="left")
    for event in events:
        name = Text.assemble((event.event, _event_style(event.event)))
        table.add_row(event.at.replace("T", " ").rstrip("Z"), name, escape(event.detail))
    return table


def _event_style(event: str) -> str:
    if event.endswith(("FAILED", "LOST")):
        return "red"
    if event.endswith(("SUCCEEDED", "COMPLETED")):
        return "green"
    if event.startswith(("backoff", "redriven")):
        return "yellow"
    return ""
