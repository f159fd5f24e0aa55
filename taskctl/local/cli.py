"""`python -m taskctl local ...`: the whole stack on this machine, on the ministack emulator.

Exit status (taskctl/exit_codes.py): 0 when the command did what was asked (`down` of a stack that
is not running included); 1 when `status` finds the stack not running; 2 when the command could
not do its work (a bad flag, a port in use, a failed deployment, no such stack running), with one
`error:` line on stderr; 130 when `up` was interrupted before it was ready.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from taskctl.exit_codes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED
from taskctl.local import emulator, logs, stack
from taskctl.local.emulator import LocalStackError
from taskctl.local.paths import StackPaths

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack whose config to deploy.")]
LAMBDA_PLATFORM_LINES = ("START RequestId:", "END RequestId:", "REPORT RequestId:")
PREFIX_STYLES = ("cyan", "magenta", "yellow", "green", "blue", "red")


def _fail(message: str) -> typer.Exit:
    """One `error:` line on stderr (never wrapped), and the exit for an error."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=EXIT_ERROR)


@app.command()
def up(
    stack_name: StackOption = "dev",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port the emulator listens on (127.0.0.1).")
    ] = 4566,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave it running; stop with `local down`.")
    ] = False,
) -> None:
    """Start the emulator, deploy the stack from __main__.py, print its outputs.

    In the foreground the functions' logs follow; Ctrl-C stops everything.
    """
    if not detach:
        # SIGTERM, and SIGHUP (its terminal closed), end a foreground stack the way Ctrl-C
        # does: through the cleanup below.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.default_int_handler)
    try:
        with console.status("preparing the local stack", spinner="dots") as status:

            def progress(message: str) -> None:
                status.update(escape(message))
                if message.startswith(
                    ("creating", "installing", "compiling", "starting", "warming")
                ):
                    console.print(f"[dim]· {escape(message)}[/]")

            local = stack.bring_up(stack_name, port=port, foreground=not detach, progress=progress)
    except LocalStackError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:  # bring_up has already stopped what it started
        errors.print("interrupted: nothing was left running")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug in the program or here; bring_up has cleaned up
        raise _fail(f"{type(exc).__name__}: {exc}") from None

    if detach:
        _print_ready(local, stack_name)
        console.print(f"stop it with: python -m taskctl local down --stack {stack_name}")
        return
    # From here on the stack is ours to stop: a Ctrl-C at any point, even while the outputs are
    # still being printed, goes through the teardown below.
    interrupted = False
    try:
        _print_ready(local, stack_name)
        console.print("[dim]function logs follow; Ctrl-C stops everything[/]")
        now_ms = int(time.time() * 1000)
        _stream_logs(stack_name, local.running, only=None, since_ms=now_ms, follow_new=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        # `local down` from another terminal removes the pid file before stopping the emulator.
        stopped_by_down = not local.paths.pid_file.exists()
        stack.tear_down(stack_name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if stopped_by_down:
        console.print(f"\nstopped by `local down`: nothing left running, port {port} is free")
        return
    if not interrupted:  # the log stream ends by itself only when the emulator has died
        raise _fail(f"the emulator exited unexpectedly; its log: {local.paths.emulator_log}")
    console.print(f"\nstopped: emulator and function processes ended, port {port} is free")


def _print_ready(local: stack.LocalStack, stack_name: str) -> None:
    _print_skipped(local.skipped)
    _print_outputs(local.outputs, stack_name)
    _print_schedules(local.schedules, stack_name)
    console.print(
        f"\n[green]ready[/] in {local.ready_after_s:.1f} s: stack [bold]{stack_name}[/] on the "
        f"emulator at {local.running.endpoint_url} (pid {local.running.pid}); state in "
        f"{local.paths.root}"
    )


@app.command()
def down(stack_name: StackOption = "dev") -> None:
    """Stop the stack's emulator and every function process it started."""
    stopped = stack.tear_down(stack_name)
    if stopped is None:
        console.print(f"local stack {stack_name!r} is not running")
    else:
        console.print(
            f"stopped local stack {stack_name!r} (pid {stopped.pid}, port {stopped.port})"
        )


@app.command()
def outputs(
    stack_name: StackOption = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as JSON.")] = False,
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Print only this output's value.")
    ] = None,
) -> None:
    """The stack outputs, as `pulumi stack output` prints them."""
    try:
        _, values = stack.running_stack(stack_name)
    except LocalStackError as exc:
        raise _fail(str(exc)) from None
    if key is not None:
        if key not in values:
            raise _fail(f"no output {key!r}; the stack has {', '.join(values)}")
        typer.echo(values[key] if isinstance(values[key], str) else json.dumps(values[key]))
    elif as_json:
        typer.echo(json.dumps(values, indent=2))
    else:
        _print_outputs(values, stack_name)


@app.command(name="logs")
def logs_command(
    function: Annotated[
        str | None, typer.Argument(help="Function to show (api, worker, ...); all by default.")
    ] = None,
    stack_name: StackOption = "dev",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", "-f")] = True,
) -> None:
    """Function logs, one prefix per function, followed until Ctrl-C."""
    try:
        running, _ = stack.running_stack(stack_name)
    except LocalStackError as exc:
        raise _fail(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        _stream_logs(stack_name, running, only=function, since_ms=0, follow_new=follow)


@app.command()
def status(stack_name: StackOption = "dev") -> None:
    """Whether the stack runs, where, and its memory (RSS of the emulator and its functions)."""
    paths = StackPaths.for_stack(stack_name)
    running = emulator.read_running(paths)
    if running is None:
        console.print(f"local stack {stack_name!r} is not running")
        raise typer.Exit(code=EXIT_CHECK_FAILED)
    members = emulator.group_members(running.pid)
    # Which way it stops: a foreground `up` owns a terminal somewhere; a detached one only
    # answers to `local down`. Until its outputs are written, it is still being deployed.
    how = "in the foreground of another terminal" if running.foreground else "detached"
    if not paths.outputs_file.exists():
        how += ", still being deployed"
    console.print(
        f"local stack {stack_name!r}: pid {running.pid}, {running.endpoint_url}, {how}, "
        f"{len(members)} processes, RSS {emulator.group_rss_mb(members):.0f} MiB",
        soft_wrap=True,  # one line, whatever the terminal's width, for scripts that read it
    )


# -- printing -----------------------------------------------------------------------------------


def _print_outputs(values: dict, stack_name: str) -> None:
    width = max([len("OUTPUT"), *map(len, values)]) + 2
    console.print(f"Current stack outputs ({len(values)}):")
    console.print(f"    {'OUTPUT':<{width}} VALUE")
    for name, value in values.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        console.print(f"    {name:<{width}} {escape(shown)}", soft_wrap=True)
    endpoint = values.get("tasksEndpoint")
    if not endpoint:
        return
    bearer = ""
    if values.get("apiAuth") == "none":
        console.print(
            "\n[bold red]OPEN API (apiAuth: none):[/] anyone who reaches this URL can submit and "
            "read tasks; every caller is the same anonymous owner. For dev only."
        )
    elif "appClientId" in values:
        bearer = '-H "Authorization: Bearer $TOKEN" '
    console.print("\nTry it:")
    if bearer:
        console.print(f"  TOKEN=$(python -m taskctl token --stack {stack_name})", markup=False)
    console.print(
        f"  curl -i -X POST {endpoint} {bearer}-H 'Content-Type: application/json' "
        f'-d \'{{"message":"SUCCESS"}}\'',
        soft_wrap=True,
        markup=False,
    )
    console.print(f"  curl -s {bearer}{endpoint}/<taskId>", soft_wrap=True, markup=False)


def _print_schedules(schedules: list[stack.Schedule], stack_name: str) -> None:
    """Which functions run on a schedule, and what runs them here."""
    if not schedules:
        return
    console.print(
        "\nScheduled functions (the emulator's EventBridge scheduler fires their rules, as "
        "EventBridge does in AWS; the first run comes one interval after deployment):"
    )
    width = max(len(s.function) for s in schedules) + 2
    for schedule in schedules:
        console.print(
            f"    {schedule.function:<{width}} {escape(schedule.expression)}  "
            f"[dim](rule {escape(schedule.rule)}; logs: python -m taskctl local logs "
            f"{escape(schedule.function)} --stack {stack_name})[/]",
            soft_wrap=True,
        )


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    """Each thing the emulator does not do, once, with the resources it concerns."""
    if not skipped:
        return
    by_note: dict[str, list[str]] = {}
    for name, note in skipped:
        by_note.setdefault(note, []).append(name)
    console.print("\n[yellow]Not emulated (applied where the emulator accepts it):[/]")
    for note, names in by_note.items():
        console.print(f"  [yellow]![/] {escape(note)} [dim]({escape(', '.join(names))})[/]")
    console.print()


def _stream_logs(
    stack_name: str,
    running: emulator.RunningEmulator,
    *,
    only: str | None,
    since_ms: int,
    follow_new: bool,
) -> None:
    deployment = json.loads(StackPaths.for_stack(stack_name).deployment_file.read_text())
    groups = logs.functions_of(deployment)
    if only is not None:
        if only not in groups:
            raise _fail(f"no function {only!r}; the stack has {', '.join(groups)}")
        groups = {only: groups[only]}
    width = max(map(len, groups), default=0)
    styles = dict(zip(groups, itertools.cycle(PREFIX_STYLES)))
    for line in logs.follow(running, groups, since_ms=since_ms, follow_new=follow_new):
        # Lambda's own START/END/REPORT lines are dimmed so the functions' logs stand out.
        text = escape(line.message)
        if line.message.startswith(LAMBDA_PLATFORM_LINES):
            text = f"[dim]{text}[/]"
        console.print(
            f"[{styles[line.function]}]{escape(f'{line.function:>{width}}')} |[/] {text}",
            soft_wrap=True,
        )
