"""A local stack's life cycle: start the emulator, deploy the program into it, record, stop.

`bring_up` leaves the emulator running and recorded in `.local/<stack>/emulator.json`;
`tear_down` stops whatever that record names. Both are what the CLI and the end-to-end tests use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from taskctl.local import emulator
from taskctl.local.emulator import LocalStackError, RunningEmulator
from taskctl.local.logs import LAMBDA_FUNCTION_TYPE, function_label
from taskctl.local.paths import StackPaths

DEFAULT_REGION = "us-east-1"
WARM_UP_TIMEOUT_S = 60.0  # a cold api function imports Powertools and pydantic first
# The outputs `pulumi stack output` shows for this program, in the order it shows them.
OUTPUT_ORDER = (
    "apiUrl",
    "tasksEndpoint",
    "apiAuth",
    "queueUrl",
    "dlqUrl",
    "tableName",
    "dashboardUrl",
)
EVENT_RULE_TYPE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET_TYPE = "aws:cloudwatch/eventTarget:EventTarget"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Schedule:
    """A function that an EventBridge rule of the stack runs on a schedule. In the emulator its
    EventBridge scheduler fires the rule, as EventBridge does in AWS; nothing else runs it."""

    function: str  # its label (service name): reconciler
    expression: str  # the rule's schedule: rate(1 minute)
    rule: str  # the rule's name


@dataclass(frozen=True)
class LocalStack:
    """A deployed local stack: the emulator it runs on and the stack's outputs."""

    paths: StackPaths
    running: RunningEmulator
    outputs: dict[str, Any]
    skipped: list[tuple[str, str]]  # (name, note): what the emulator does not do
    schedules: list[Schedule]
    ready_after_s: float


def schedules_of(deployment: dict[str, Any]) -> list[Schedule]:
    """The scheduled functions of a deployment (`deployment.json`'s content)."""
    resources = deployment.get("resources", [])
    rules = {r["outputs"]["name"]: r for r in resources if r["type"] == EVENT_RULE_TYPE}
    functions = {r["outputs"]["arn"]: r for r in resources if r["type"] == LAMBDA_FUNCTION_TYPE}
    schedules = []
    for target in (r for r in resources if r["type"] == EVENT_TARGET_TYPE):
        rule = rules.get(target["inputs"].get("rule"))
        function = functions.get(target["inputs"].get("arn"))
        if rule is not None and function is not None and rule["inputs"].get("scheduleExpression"):
            schedules.append(
                Schedule(
                    function=function_label(function),
                    expression=rule["inputs"]["scheduleExpression"],
                    rule=rule["outputs"]["name"],
                )
            )
    return schedules


def stack_region(stack: str) -> str:
    """The stack's `aws:region`, read as the Pulumi CLI would (ARNs and URLs carry it)."""
    from taskctl.program import StackConfigError, load_stack_config

    try:
        config = load_stack_config(stack)
    except StackConfigError as error:
        raise LocalStackError(f"stack {stack}: {error}") from None
    return config.get("aws:region") or DEFAULT_REGION


def check_project_environment() -> None:
    """The deployment runs the Pulumi program in this interpreter: it needs the project venv."""
    try:
        import pulumi  # noqa: F401
        import pulumi_aws  # noqa: F401
    except ImportError as exc:
        raise LocalStackError(
            f"the project virtualenv is missing or incomplete ({exc.name} not importable): run "
            "`make venv`, then `.venv/bin/python -m taskctl local up` (or just `make local`)"
        ) from None


@contextlib.contextmanager
def starting(paths: StackPaths) -> Iterator[None]:
    """Refuse a stack that runs, and hold a lock from that check until the pid file names the new
    emulator: two `up`s of one stack at once would otherwise both pass the check, and one
    emulator would run that no pid file names and `down` cannot stop."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with (paths.root / ".up.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LocalStackError(
                f"another `local up` of stack {paths.stack!r} is starting; wait for it, or stop "
                f"it with `python -m taskctl local down --stack {paths.stack}`"
            ) from None
        running = emulator.read_running(paths)
        if running is not None:
            raise LocalStackError(
                f"local stack {paths.stack!r} is already running (pid {running.pid}, "
                f"port {running.port}); stop it with `python -m taskctl local down --stack "
                f"{paths.stack}`"
            )
        yield  # the lock ends with the file's closing


def bring_up(stack: str, *, port: int, foreground: bool, progress: Progress) -> LocalStack:
    """Start the emulator and deploy the stack; on any failure nothing is left running."""
    started_at = time.monotonic()
    paths = StackPaths.for_stack(stack)
    check_project_environment()
    region = stack_region(stack)  # an unknown stack is refused before anything is written
    with starting(paths):
        paths.outputs_file.unlink(missing_ok=True)
        running = emulator.start(
            paths, port=port, region=region, foreground=foreground, report=progress
        )
    try:
        deployment = _deploy(stack, running, progress)
        outputs = ordered_outputs(deployment["outputs"])
        paths.deployment_file.write_text(json.dumps(deployment, indent=2) + "\n")
        if "apiUrl" in outputs:
            progress("warming the API (its first request starts the api function)")
            smoke_check_api(outputs["apiUrl"], bearer_token=_smoke_token(stack, outputs, running))
        # Written last: its existence means "ready" to scripts and tests that wait for it.
        # Inside the try, so a Ctrl-C that lands right after it still stops the emulator.
        paths.outputs_file.write_text(json.dumps(outputs, indent=2) + "\n")
    except Exception:
        # `local down` from another terminal removes the pid file, then stops the emulator:
        # whatever the deployment then failed with, that is what happened.
        stopped_by_down = not paths.pid_file.exists()
        _stop_started(paths, running)
        if stopped_by_down:
            raise LocalStackError(
                "stopped by `local down` during the deployment; nothing was left running"
            ) from None
        raise
    except BaseException:  # Ctrl-C
        _stop_started(paths, running)
        raise
    return LocalStack(
        paths=paths,
        running=running,
        outputs=outputs,
        skipped=[(r["name"], n) for r in deployment["resources"] for n in r["notes"]],
        schedules=schedules_of(deployment),
        ready_after_s=time.monotonic() - started_at,
    )


def _stop_started(paths: StackPaths, running: RunningEmulator) -> None:
    paths.outputs_file.unlink(missing_ok=True)
    emulator.stop(running)
    paths.pid_file.unlink(missing_ok=True)


def _deploy(stack: str, running: RunningEmulator, progress: Progress):
    from taskctl.local.creators import EmulatorContext
    from taskctl.local.deployer import deploy

    context = EmulatorContext(
        endpoint_url=running.endpoint_url,
        region=running.region,
        account_id=emulator.ACCOUNT_ID,
        port=running.port,
    )
    progress(f"deploying stack {stack!r} from __main__.py")
    return deploy(stack, context, on_created=lambda typ, name: progress(f"created {typ} {name}"))


def _smoke_token(stack: str, outputs: dict[str, Any], running: RunningEmulator) -> str | None:
    """A token of the stack's own app client (None for an open stack): the smoke check then
    also proves that the pool issues tokens the authorizer accepts."""
    from taskctl.token.issuer import TokenError, emulator_app_client, fetch_token

    if outputs.get("apiAuth") == "jwt" and "appClientId" not in outputs:
        raise LocalStackError(
            f"stack {stack!r} names an external token issuer (apiJwtIssuer), which the local "
            "stack cannot reach; run it locally with the stack's own user pool (unset "
            "apiJwtIssuer and apiJwtAudience)"
        )
    try:
        app = emulator_app_client(stack, outputs, running)
        return fetch_token(app) if app is not None else None
    except TokenError as exc:
        raise LocalStackError(f"the deployed user pool issued no token: {exc}") from None


def smoke_check_api(api_url: str, bearer_token: str | None) -> None:
    """GET a task that cannot exist: proves API Gateway -> api function -> DynamoDB works (with
    `bearer_token`, the authorizer too), and leaves the function warm so the user's first curl
    is fast. Anything but 404 is an error."""
    url = urllib.parse.urlsplit(api_url)
    # Python does not resolve `<id>.execute-api.localhost` (curl does): connect to 127.0.0.1 and
    # route by the Host header, as API Gateway does.
    headers = {"Host": url.netloc}
    if bearer_token is not None:
        headers["Authorization"] = f"Bearer {bearer_token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{url.port}{url.path}/tasks/{uuid.UUID(int=0)}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=WARM_UP_TIMEOUT_S) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        raise LocalStackError(f"the deployed API did not answer at {api_url}: {error}") from None
    if status != 404:
        raise LocalStackError(
            f"the deployed API answered {status} for an unknown task (expected 404): "
            f"{body[:300].decode(errors='replace')}; see `python -m taskctl local logs api`"
        )


def ordered_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    known = {key: outputs[key] for key in OUTPUT_ORDER if key in outputs}
    return {**known, **{k: v for k, v in sorted(outputs.items()) if k not in known}}


def running_stack(stack: str) -> tuple[RunningEmulator, dict[str, Any]]:
    """The running local stack's emulator and outputs (a stopped stack has none: its URLs are
    dead). Its deployment record is complete too: `bring_up` writes the outputs last."""
    paths = StackPaths.for_stack(stack)
    running = emulator.read_running(paths)
    if running is None:
        raise LocalStackError(
            f"local stack {stack!r} is not running; start it with "
            f"`python -m taskctl local up --stack {stack}` (or `make local`)"
        )
    try:
        return running, json.loads(paths.outputs_file.read_text())
    except FileNotFoundError:
        raise LocalStackError(
            f"local stack {stack!r} is being deployed (pid {running.pid}); try again once "
            "`local up` says it is ready"
        ) from None


def tear_down(stack: str) -> RunningEmulator | None:
    """Stop the stack's emulator if it runs; return what was stopped (None if nothing was)."""
    paths = StackPaths.for_stack(stack)
    running = emulator.read_running(paths)
    # Files first: a foreground `up` watching this stack sees the pid file gone when its
    # emulator dies, and knows it was `down`, not a crash.
    paths.pid_file.unlink(missing_ok=True)
    paths.outputs_file.unlink(missing_ok=True)  # its URLs point at nothing any more
    if running is not None:
        emulator.stop(running)
    emulator.clear_tmp_dir(paths)  # also what an emulator killed outright left behind
    return running
