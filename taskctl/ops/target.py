"""Where the operator's commands (`redrive`, `tasks`) act: one resolution for all of them.

The running local stack of `--stack` (table, queue, region and emulator endpoint from its outputs
and state) when no table is named; or, with `--table` (and `--queue-url` for a command that
enqueues), a deployed stack through the standard AWS environment (credentials,
`AWS_DEFAULT_REGION`, `AWS_PROFILE`), with the names `pulumi stack output` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import boto3
import typer
from botocore.exceptions import BotoCoreError, ClientError

from functions.policy import TaskPolicy
from taskctl.ops.redrive import one_line

DEFAULT_LOCAL_STACK = "dev"
T = TypeVar("T")


class OpsError(Exception):
    """A problem that stops the whole command; its message is one line and says what to do."""


@dataclass(frozen=True)
class Target:
    """The table (and main queue, for commands that enqueue) to act on, and how to reach them."""

    table_name: str
    queue_url: str | None
    description: str
    client: Callable[[str], Any]  # service name -> boto3 client


# The options every operator command takes, declared once.
StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack",
        "-s",
        help=f"Stack to act on: its running local stack (default {DEFAULT_LOCAL_STACK}), or, "
        "with --table, the deployed stack the names belong to.",
    ),
]
LocalOption = Annotated[
    bool,
    typer.Option(
        "--local", help="Use the stack's running local stack (the default without --table)."
    ),
]
TableOption = Annotated[
    str | None,
    typer.Option(help="Task table of a deployed stack (`pulumi stack output tableName`)."),
]
QueueUrlOption = Annotated[
    str | None,
    typer.Option(help="Its main queue URL (`pulumi stack output queueUrl`)."),
]


def resolve_target(
    stack: str | None,
    *,
    local: bool,
    table: str | None,
    queue_url: str | None = None,
    needs_queue: bool = False,
) -> Target:
    """The local stack of `stack` (default dev) unless a table is named; else that table (and,
    if `needs_queue`, the queue) in the AWS environment's account and region."""
    names = "--table and --queue-url" if needs_queue else "--table"
    if table is None and queue_url is None:
        return _local_target(stack or DEFAULT_LOCAL_STACK, names)
    if local:
        raise OpsError(f"give either --local or {names}, not both")
    if table is None or (needs_queue and queue_url is None):
        raise OpsError("--table and --queue-url go together; give both")
    session = boto3.Session()
    if session.region_name is None:
        raise OpsError("no AWS region configured: set AWS_DEFAULT_REGION (or AWS_PROFILE)")
    return Target(
        table_name=table,
        queue_url=queue_url,
        description=f"table {table} ({session.region_name})",
        client=session.client,
    )


def stack_policy(stack: str) -> TaskPolicy:
    """The retry policy stack `stack` is configured with (Pulumi.yaml and its stack file)."""
    # Imported here: the config reader pulls in pulumi, slow to import and needed only now.
    from taskctl.program import StackConfigError, load_stack_settings

    try:
        return load_stack_settings(stack).policy
    except StackConfigError as exc:
        raise OpsError(str(exc)) from None


def _local_target(stack: str, deployed_names: str) -> Target:
    from taskctl.local.emulator import LocalStackError
    from taskctl.local.stack import running_stack

    try:
        running, outputs = running_stack(stack)
    except LocalStackError as exc:
        raise OpsError(f"{exc}; for a deployed stack pass {deployed_names}") from None
    return Target(
        table_name=outputs["tableName"],
        queue_url=outputs["queueUrl"],
        description=f"local stack {stack} at {running.endpoint_url}",
        client=running.client,
    )


def aws_read(read: Callable[[], T]) -> T:
    """Run `read`; an AWS error (after the SDK's retries) stops the command in one line."""
    try:
        return read()
    except (BotoCoreError, ClientError) as exc:
        raise OpsError(one_line(exc)) from None
