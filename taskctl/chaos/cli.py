"""`python -m taskctl chaos`: a seeded fault campaign over the real handlers (DESIGN §8).

Prints what was injected (by kind), how the tasks ended, every stranded task and broken
invariant, and the command that replays the same campaign. `--scale` runs the queue model
(`scale.py`) instead; an option of the other mode is refused, not ignored.

Exit status: 0 when no task is stranded and no invariant is broken; 1 when any is; 2 for an error
that stopped the run (bad flags, an unknown or invalid stack, an unreadable bench/quotas.json,
the campaign itself failing), reported as one line on stderr.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from taskctl.exit_codes import EXIT_CHECK_FAILED, exit_with_error

if TYPE_CHECKING:
    from functions.settings import StackSettings
    from taskctl.capacity.quotas import Quotas
    from taskctl.chaos.campaign import CampaignReport

SHOWN_PER_LIST = 5  # stranded tasks and violations printed in full; --json lists more
DETAILS_PER_KIND = 4
# The options only one mode reads (by parameter name); --seed, --stack and --json serve both.
CAMPAIGN_ONLY = ("tasks", "jobs")
SCALE_ONLY = ("rate", "duration", "error_share", "worker_concurrency")
NOT_GIVEN = (None, "DEFAULT", "DEFAULT_MAP")  # click's ParameterSource of a value left as it was


def chaos(
    ctx: typer.Context,
    tasks: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="Campaign only: tasks to submit through the API (about 4 % invalid requests "
            "come on top).",
        ),
    ] = 500,
    seed: Annotated[
        int, typer.Option(help="Seed of every random choice: the same seed and --tasks replay.")
    ] = 1,
    stack: Annotated[
        str, typer.Option(help="Stack whose settings the functions run with (Pulumi.<stack>.yaml).")
    ] = "dev",
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Campaign only: processes to run worlds in (default: one per core); the "
            "result is the same.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
    scale: Annotated[
        bool,
        typer.Option(
            "--scale",
            help="Scale mode: model the main queue and workers at --rate for --duration "
            "simulated seconds, in both retry designs, against SQS's in-flight quota.",
        ),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            max=100_000,
            help="--scale only: submits per second (default: the stack's apiThrottleRateLimit + "
            "apiThrottleBurstLimit).",
        ),
    ] = None,
    duration: Annotated[
        int, typer.Option(min=1, max=86_400, help="--scale only: simulated seconds of submits.")
    ] = 600,
    error_share: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="--scale only: share of tasks whose message is ERROR."),
    ] = 1.0,
    worker_concurrency: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=1000,
            help="--scale only: worker batches at once (default: the stack's "
            "workerMaxConcurrency).",
        ),
    ] = None,
) -> None:
    """Run the real handlers over moto's DynamoDB and simulated SQS on a simulated clock,
    inject faults at exact AWS calls, and check that every accepted task still ends."""
    _refuse_the_other_modes_options(ctx, scale)
    # Read before either mode starts: the scale model runs against them, the campaign's simulated
    # SQS (sqs.quotas) reads the same file in each world.
    quotas = _quotas()
    console = Console(highlight=False)
    if scale:
        from taskctl.chaos.scale import ScaleConfig, print_scale_report, scale_report

        settings = _settings(stack)
        config = ScaleConfig(
            settings=settings,
            # The most the stack's API admits in one second: its steady rate plus its burst.
            rate_per_s=rate or settings.apiThrottleRateLimit + settings.apiThrottleBurstLimit,
            duration_s=duration,
            error_share=error_share,
            worker_concurrency=worker_concurrency,
            quotas=quotas,
            seed=seed,
        )
        report: Any = scale_report(config, stack)
        print_report: Callable[[Any, Console], None] = print_scale_report
    else:
        report = _campaign(tasks, seed, stack, jobs, json_output, console)
        print_report = _print_report
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, console)
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _refuse_the_other_modes_options(ctx: typer.Context, scale: bool) -> None:
    """An option given on the command line that only the other mode reads is a usage error: the
    run would silently ignore it. Defaults do not count, whatever their value."""
    others = CAMPAIGN_ONLY if scale else SCALE_ONLY
    options = {param.name: param.opts[0] for param in ctx.command.params}
    # By name: Typer has its own copy of click, and of click's ParameterSource.
    sources = {name: getattr(ctx.get_parameter_source(name), "name", None) for name in others}
    given = [options[name] for name, source in sources.items() if source not in NOT_GIVEN]
    if not given:
        return
    verb = "applies" if len(given) == 1 else "apply"
    if scale:
        exit_with_error(
            f"{', '.join(given)} {verb} only to the fault campaign (chaos without --scale)"
        )
    exit_with_error(
        f"{', '.join(given)} {verb} only to the scale mode: add --scale (without it, chaos runs "
        "the fault campaign)"
    )


def _campaign(
    tasks: int, seed: int, stack: str, jobs: int | None, json_output: bool, console: Console
) -> CampaignReport:
    try:
        # Imported here: moto and the functions are slow to import, and `--help` needs neither.
        from taskctl.chaos.campaign import CampaignConfig, run_campaign

        settings = _settings(stack)
        config = CampaignConfig(tasks=tasks, seed=seed, settings=settings, stack=stack)
        worlds = config.worlds()
        processes = min(jobs or os.cpu_count() or 1, len(worlds))
        if json_output:
            return run_campaign(config, jobs=processes)
        console.print(
            f"Fault campaign: seed {config.seed}, {config.tasks} tasks in {len(worlds)} world(s) "
            f"on {processes} process(es); stack {config.stack}: maxAttempts="
            f"{settings.maxAttempts}, visibility {settings.visibility_timeout_s} s, "
            f"maxReceiveCount {settings.max_receive_count}, reconciler every "
            f"{settings.reconcileIntervalMinutes} min."
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            requests = sum(plan.requests for plan in worlds)
            answered = progress.add_task("client requests answered", total=requests)
            return run_campaign(
                config, jobs=processes, progress=lambda n: progress.advance(answered, n)
            )
    except Exception as exc:  # the campaign itself broke: say so in one line, exit 2
        detail = " ".join(str(exc).split())
        exit_with_error(
            f"the campaign stopped ({type(exc).__name__}: {detail}); rerun with the same "
            f"--seed {seed} --tasks {tasks} to reproduce"
        )


def _quotas() -> Quotas:
    """The AWS quotas in `bench/quotas.json`. A file missing, not JSON, or without an entry is
    one `error:` line naming it and what is wrong: not a traceback (--scale), nor a campaign that
    "stopped" and is to be rerun with its seed."""
    from taskctl.bench.recorded import RecordedFileError
    from taskctl.capacity.quotas import Quotas

    try:
        return Quotas.load()
    except RecordedFileError as exc:
        exit_with_error(f"{exc}; `git checkout bench/quotas.json` restores the recorded one")


def _settings(stack: str) -> StackSettings:
    """The stack's validated settings; for a missing or invalid stack, one line and exit 2."""
    from taskctl.program import StackConfigError, load_stack_settings

    try:
        return load_stack_settings(stack)
    except StackConfigError as exc:
        exit_with_error(str(exc))


def _print_report(report: CampaignReport, console: Console) -> None:
    from taskctl.chaos.invariants import Kind

    summary = report.to_json()
    statuses = summary["statuses"]
    tasks = Table("", Column("count", justify="right"), title="Tasks", title_justify="left")
    for label, value in (
        ("client requests (with invalid ones)", summary["requests"]),
        ("accepted (202)", summary["accepted"]),
        ("rejected as they should be (4xx)", summary["rejected"]),
        ("gave up after 5xx replies", summary["gaveUp"]),
        ("COMPLETED", statuses.get("COMPLETED", 0)),
        ("FAILED", statuses.get("FAILED", 0)),
        ("stranded (neither)", summary["stranded"]),
    ):
        tasks.add_row(label, str(value))
    console.print(tasks)

    details: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, count in summary["faultDetails"].items():
        kind, _, detail = key.partition(": ")
        details[kind].append((detail, count))
    count_column = Column("count", justify="right")
    faults = Table("kind", count_column, "of which", title="Faults injected", title_justify="left")
    for kind, count in summary["faults"].items():
        top = sorted(details.get(kind, []), key=lambda pair: -pair[1])[:DETAILS_PER_KIND]
        faults.add_row(kind, str(count), escape("; ".join(f"{d} {n}" for d, n in top)))
    console.print(faults)

    count_column = Column("count", justify="right")
    violations = Table("violation", count_column, title="Invariants checked", title_justify="left")
    counts = {kind: summary["violationCounts"].get(kind, 0) for kind in Kind}
    counts[Kind.STRANDED] = summary["stranded"]
    for kind, count in counts.items():
        violations.add_row(kind, f"[red]{count}[/]" if count else "0")
    console.print(violations)

    for finding in [*report.stranded[:SHOWN_PER_LIST], *report.violations[:SHOWN_PER_LIST]]:
        record = json.dumps(finding.record, default=str) if finding.record else ""
        console.print(
            f"[red]{escape(finding.kind)}[/] {finding.task_id or ''} {escape(finding.detail)}"
            + (f"\n  record: {escape(record)}" if record else "")
        )

    hours = summary["simulatedSeconds"] / 3600
    rate = summary["accepted"] / report.wall_s if report.wall_s else 0.0
    console.print(
        f"Simulated {hours:.1f} h per world in {report.wall_s:.0f} s of wall time "
        f"({rate:.0f} tasks/s); {summary['awsAttempts']} AWS call attempts; "
        f"{summary['reconcilerRecoveries']} reconciler recoveries; "
        f"{summary['delayedSends']} delayed sends, at most {summary['peakInFlight']} messages in "
        f"flight in a world's queue; digest {summary['digest']}."
    )
    console.print(f"Seed {report.config.seed} reproduces this run: {escape(report.reproduce)}")
    if report.passed:
        console.print("[green]Passed[/]: every accepted task ended, and no invariant broke.")
    else:
        console.print(
            f"[red]Check failed[/]: {summary['stranded']} stranded task(s), "
            f"{summary['violations']} violation(s)."
        )
