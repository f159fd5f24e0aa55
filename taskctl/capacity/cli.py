"""`python -m taskctl capacity`: what a steady submit rate needs from AWS, and which quota it
crosses.

Reads the stack's settings as every taskctl command does (`Pulumi.yaml` defaults overlaid with
`Pulumi.<stack>.yaml`), the quotas in `bench/quotas.json` and the prices in `bench/prices.json`.

Exit status: 0 when no quota is crossed; 1 when any is (each is printed with the setting to
change); 2 for a usage error or a stack that cannot be read, as one line on stderr.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from taskctl.capacity.assumptions import Assumptions
from taskctl.exit_codes import EXIT_CHECK_FAILED, exit_with_error

if TYPE_CHECKING:
    from taskctl.capacity.model import CapacityReport

REPORT_WIDTH = 110


def capacity(
    rate: Annotated[
        float,
        typer.Option(
            min=0.001, max=1_000_000, help="Steady submits per second (POST /tasks) to plan for."
        ),
    ],
    stack: Annotated[
        str, typer.Option("--stack", "-s", help="Stack whose settings to use.")
    ] = "dev",
    error_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Probability that an attempt fails (default: the stack's errorRate; 1 = every "
            "task's message is ERROR).",
        ),
    ] = None,
    backlog: Annotated[
        int, typer.Option(min=0, help="Tasks already queued: how long do they take to drain?")
    ] = 100_000,
    worker_ms: Annotated[
        float,
        typer.Option(min=1.0, max=900_000.0, help="Assumed worker time per record in AWS, ms."),
    ] = Assumptions.worker_record_ms,
    item_bytes: Annotated[
        int,
        typer.Option(min=100, max=400 * 1024, help="Assumed size of a task record, bytes."),
    ] = Assumptions.item_bytes,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
) -> None:
    """For a steady submit rate: cost, Lambda concurrency, event source mapping batches, SQS in
    flight and delayed messages, DynamoDB units per table and index (and the busiest key), API
    throttle headroom, the reconciler's pass, and how long a backlog takes to drain."""
    from taskctl.bench.cost import Prices
    from taskctl.capacity.model import plan
    from taskctl.capacity.quotas import Quotas
    from taskctl.program import load_stack_settings

    try:
        report = plan(
            load_stack_settings(stack),
            rate,
            stack=stack,
            quotas=Quotas.load(),
            prices=Prices.load(),
            failure_p=error_rate,
            backlog_tasks=backlog,
            assumptions=Assumptions(worker_record_ms=worker_ms, item_bytes=item_bytes),
        )
    # The stack's errors name it (StackConfigError), the quota and price files' name the file
    # (RecordedFileError); the others are the flags' own.
    except ValueError as error:
        exit_with_error(str(error))
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=max(console.width, REPORT_WIDTH))
        print_report(report, console)
    if report.crossed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _n(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value >= 1 else f"{value:.3g}"


def _check(needed: float, limit: float) -> str:
    if needed > limit:
        return "[red]CROSSED[/]"
    return "<1%" if 0 < needed < limit / 100 else f"{needed / limit:.0%}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_report(report: CapacityReport, console: Console) -> None:
    flow = report.flow
    console.print(
        f"[bold]Capacity[/] of stack {report.stack} at {_n(report.rate_per_s)} submits/s, attempts "
        f"failing with p={report.failure_p:g}: per task {flow.attempts:.3f} attempts, "
        f"{flow.failed_share:.2%} FAILED, {flow.retry_wait_s:,.1f} s waiting for retries."
    )
    table = Table(
        "what",
        Column("needed", justify="right"),
        Column("limit", justify="right"),
        Column("use", justify="right"),
        "limit from",
        title="Needed against limits",
        title_justify="left",
    )

    def row(what: str, needed: float, limit: tuple[float | None, str] = (None, "")) -> None:
        """`limit`: the figure `needed` is held against, if any, and where it comes from."""
        bound, source = limit
        shown_bound = _n(bound) if bound is not None else ""
        table.add_row(what, _n(needed), shown_bound, _check(needed, bound) if bound else "", source)

    quotas = report.quotas
    workers = (report.worker_max_concurrency, "workerMaxConcurrency")
    account = (quotas.lambda_concurrency, "Lambda account quota")
    sqs = (quotas.sqs_in_flight, "SQS quota")
    row("API submits/s", report.rate_per_s, (report.api_stage_rate, "apiThrottleRateLimit"))
    row("api concurrency", report.api_concurrency)
    row("worker concurrency", report.worker_concurrency, workers)
    row("dead-letter concurrency", report.dead_letter_concurrency, workers)
    row("reconciler concurrency", report.reconciler_concurrency)
    row("all functions' concurrency", report.total_concurrency, account)
    ramp = f"worker mapping batches (ramp {report.esm_ramp_s:.0f} s)"
    row(ramp, report.esm_batches_needed, workers)
    row("SQS in flight", report.in_flight, sqs)
    row("SQS in flight: bound", report.in_flight_bound, sqs)
    row("SQS delayed (retry waits)", report.delayed, (None, "no quota"))
    row("SQS in flight, waits in flight (old)", report.in_flight_if_waits_in_flight, sqs)
    for space in report.key_spaces:
        row(f"{space.name} WRU/s", space.write_units_s, (quotas.table_wru, "on-demand quota"))
        if space.read_units_s:
            row(f"{space.name} RRU/s", space.read_units_s, (quotas.table_rru, "on-demand quota"))
        partition = (quotas.partition_wcu, f"partition limit; {space.busiest_key}")
        row(f"{space.name} busiest key WCU/s", space.busiest_key_write_units_s, partition)
    passes = (report.reconciler_pass_capacity, "reconciler timeout")
    row("reconciler tasks per pass", report.reconciler_tasks_per_pass, passes)
    console.print(table)
    costs = report.cost_per_million
    console.print(
        f"Cost: ${costs['total']:,.2f} per million tasks (DynamoDB writes "
        f"${costs['dynamodbWrites']:,.2f}), ${report.cost_per_hour:,.2f} per hour at this rate. "
        f"API headroom {_n(report.api_headroom_s)}/s (burst {report.api_stage_burst}). "
        f"A backlog of {report.backlog_tasks:,} tasks "
        + (
            "never drains: the workers do not keep up"
            if report.drain_s is None
            else f"drains in {_duration(report.drain_s)}"
        )
        + (
            f" (they handle at most {_n(report.worker_records_s_max)} records/s)."
            if report.worker_records_s_max
            else " (the API and dead-letter functions alone need all the account's "
            f"{report.quotas.lambda_concurrency:,} concurrent executions)."
        )
    )
    if report.findings:
        console.print(f"[red]Quotas crossed[/] ({len(report.findings)}):")
        for finding in report.findings:
            console.print(
                f"  - {finding.quota}: needs {_n(finding.needed)}, limit {_n(finding.limit)}. "
                f"Change [bold]{finding.setting}[/]: {finding.advice}."
            )
    else:
        console.print("[green]No quota crossed.[/]")
