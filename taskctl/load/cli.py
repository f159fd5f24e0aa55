"""`python -m taskctl load`: the bulk error-rate check, with progress bars and a summary table.

Exit status: 0 when every task is terminal and the FAILED fraction agrees with the policy;
1 when tasks are unfinished or the fraction is off; 2 for an error that stopped the run (bad flag,
unreachable URL, refused submit), reported as one line on stderr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from taskctl.exit_codes import EXIT_CHECK_FAILED, exit_with_error
from taskctl.load.client import LoadError
from taskctl.load.policy import resolve_policy
from taskctl.load.runner import LoadOptions, default_timeout_s, run_load
from taskctl.load.stats import DEFAULT_CONFIDENCE

if TYPE_CHECKING:
    from taskctl.local.emulator import RunningEmulator


def load(
    url: Annotated[
        str | None,
        typer.Option(
            help="The stack's apiUrl: the API's base URL, ending in the stage (/dev). Default: "
            "the running local stack's, for --stack.",
        ),
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=100_000, help="Tasks to submit.")] = 100,
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Requests in flight at once.")
    ] = 5,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds to wait for tasks after the last submit "
            "(default: 300, or the stack's longest backoff + 120 if longer).",
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(help="Judge against this stack's policy, Pulumi.<stack>.yaml (default: dev)."),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(min=1, max=50, help="Policy instead of --stack: attempts.")
    ] = None,
    error_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Policy instead of --stack: error rate per attempt."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the JSON report here.", dir_okay=False)
    ] = None,
    confidence: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=0.9999,
            help="Chance that a deployment keeping its policy passes the FAILED-rate check.",
        ),
    ] = DEFAULT_CONFIDENCE,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token for an API that authenticates callers (default: for the running "
            "local stack's URL, a token of its own app client, as `python -m taskctl token`).",
        ),
    ] = None,
) -> None:
    """Submit N ordinary tasks, wait until they are terminal, judge them against the policy."""
    console = Console()
    try:
        policy = resolve_policy(stack=stack, max_attempts=max_attempts, error_rate=error_rate)
        local = _local_stack(stack or "dev", required=url is None)
        base_url = _base_url(url if url is not None else local[1]["apiUrl"])
        options = LoadOptions(
            url=base_url,
            count=count,
            concurrency=concurrency,
            timeout_s=timeout if timeout is not None else default_timeout_s(policy),
            policy=policy,
            confidence=confidence,
            bearer_token=token or _local_stack_token(base_url, local, stack or "dev"),
        )
        console.print(
            f"Submitting {options.count} tasks to {options.url} "
            f"({min(options.concurrency, options.count)} at a time); "
            f"policy from {options.policy.source}: maxAttempts={options.policy.max_attempts}, "
            f"errorRate={options.policy.error_rate}; waiting up to {options.timeout_s:g} s."
        )
        result = _run_with_progress(options, console)
    except LoadError as exc:
        exit_with_error(str(exc))

    _print_summary(result, console)
    if report is not None:
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            exit_with_error(f"cannot write the report to {report}: {exc.strerror}")
        console.print(f"Report written to {report}")
    if not result["passed"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _local_stack(stack: str, *, required: bool) -> tuple[RunningEmulator, dict] | None:
    """The running local stack's emulator and outputs; None if it does not run, unless
    `required` (no --url: the run is against it), when that stops the run."""
    from taskctl.local.emulator import LocalStackError
    from taskctl.local.stack import running_stack

    try:
        return running_stack(stack)
    except LocalStackError as exc:
        if required:
            raise LoadError(f"{exc}; or pass a deployed stack's apiUrl with --url") from None
        return None


def _base_url(url: str) -> str:
    """`url` without trailing slashes, when it is an http(s) URL."""
    base_url = url.strip().rstrip("/")
    if not base_url:
        raise LoadError(
            "--url is empty: start the local stack (make local) or pass the deployed apiUrl"
        )
    try:
        parsed = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise LoadError(f"--url {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise LoadError(f"--url {url!r} must be an http(s) URL such as https://<id>.../dev")
    return base_url


def _local_stack_token(
    url: str, local: tuple[RunningEmulator, dict] | None, stack: str
) -> str | None:
    """A token of the local stack's own app client when `url` is that running stack's API and
    it authenticates callers; None otherwise (a deployed API needs --token)."""
    from taskctl.token.issuer import TokenError, emulator_app_client, fetch_token

    if local is None:
        return None  # no local stack of that name runs: the URL is someone else's
    running, outputs = local
    if outputs.get("apiUrl", "").rstrip("/") != url:
        return None
    try:
        app = emulator_app_client(stack, outputs, running)
        return fetch_token(app) if app is not None else None
    except TokenError as exc:
        raise LoadError(f"no token from local stack {stack!r}: {exc}") from None


def _run_with_progress(options: LoadOptions, console: Console) -> dict:
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        submitted_bar = progress.add_task("submitted", total=options.count)
        terminal_bar = progress.add_task("terminal", total=options.count)
        return run_load(
            options,
            on_submitted=lambda _task: progress.advance(submitted_bar),
            on_terminal=lambda _task: progress.advance(terminal_bar),
        )


def _seconds(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _figures(*headers: str) -> list[Column]:
    """Columns of figures: right-aligned."""
    return [Column(header, justify="right") for header in headers]


def _print_summary(result: dict, console: Console) -> None:
    submitted = result["submitted"]
    outcomes = Table("status", *_figures("tasks", "share"), title="Outcomes")
    for label in ("COMPLETED", "FAILED", "unfinished"):  # the report's keys, in lower case
        count = result[label.lower()]
        outcomes.add_row(label, str(count), f"{count / submitted:.1%}" if submitted else "-")
    console.print(outcomes)

    accepted = result["failedAcceptance"]
    confidence = f"{accepted['confidence']:.0%} " if accepted else ""
    rate = Table(
        *_figures("expected", "observed", f"{confidence}accepted"),
        "verdict",
        title="FAILED fraction against the policy",
        caption="expected = errorRate^maxAttempts; observed over terminal tasks; accepted: the "
        "FAILED fractions an exact binomial test admits",
    )
    observed = result["observedFailedFraction"]
    rate.add_row(
        f"{result['expectedFailedFraction']:.2%}",
        "-" if observed is None else f"{observed:.2%}",
        "-"
        if accepted is None
        else f"[{accepted['lowFraction']:.2%}, {accepted['highFraction']:.2%}]",
        {True: "consistent", False: "OFF", None: "-"}[result["failedFractionConsistent"]],
    )
    console.print(rate)

    attempts = Table(
        *_figures("attempts", "observed", "expected"), title="Attempts per terminal task"
    )
    for bucket, counts in result["attempts"].items():
        attempts.add_row(bucket, str(counts["observed"]), f"{counts['expected']:.1f}")
    console.print(attempts)

    quantiles = ("p50", "p95", "p99")
    timing = Table("measure", *_figures(*quantiles), title="Timing (seconds)")
    gaps = result["retryGapSeconds"]
    for label, figures in (
        ("submit -> terminal (record timestamps)", result["latencySeconds"]),
        ("submit -> terminal seen (client clock)", result["clientLatencySeconds"]),
        ("retry delay promised", gaps["promised"]),
        ("retry gap measured", gaps["measured"]),
    ):
        timing.add_row(label, *(_seconds(figures[q]) for q in quantiles))
    console.print(timing)
    console.print(
        f"Retry gaps: {gaps['count']} measured, {gaps['violations']} started early "
        f"(min slack {_seconds(gaps['minSlackSeconds'])} s)."
    )
    if result["throughputTasksPerSecond"] is not None:
        console.print(f"Throughput: {result['throughputTasksPerSecond']:.1f} tasks/s to terminal.")
    for warning in result["warnings"]:
        console.print(f"Warning: {warning}")
    console.print(("Passed: " if result["passed"] else "Check failed: ") + result["verdict"] + ".")
