"""Talk to a deployed task API: submit N tasks, then poll them until they are terminal.

Only the HTTP contract is assumed (DESIGN §2): `POST {url}/tasks` answers 202 with a `taskId`,
`GET {url}/tasks/{taskId}` answers 200 with the record. So the same code checks the local stack and
a stack in AWS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from functions.lifecycle import TERMINAL_STATUSES

# Submits that may be retried: API Gateway throttling (429), a gateway or function that was
# briefly unavailable (502/503/504) and a reply that did not come in time. Every submit carries
# an Idempotency-Key, so a retry of a submit that did reach the API returns the same task instead
# of creating a second one. Bounded, so a permanently failing API still ends the run.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
MAX_SUBMIT_RETRIES = 6
RETRY_BACKOFF_BASE_S = 0.5
RETRY_BACKOFF_MAX_S = 8.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Polling: start fast (local tasks finish in well under a second), back off to spare a real API.
POLL_INTERVAL_MIN_S = 0.2
POLL_INTERVAL_MAX_S = 2.0
# Rounds in which every GET failed to connect before the run gives up on the URL.
MAX_UNREACHABLE_POLL_ROUNDS = 3
REQUEST_TIMEOUT_S = 30.0


class LoadError(Exception):
    """A run that cannot go on; the message is one line that says what to do."""


@dataclass(kw_only=True)
class TrackedTask:
    """One submitted task as the client saw it (monotonic clock, seconds)."""

    task_id: str
    submitted_at_s: float
    record: dict | None = None
    terminal_seen_at_s: float | None = None

    @property
    def terminal(self) -> bool:
        return self.record is not None and self.record.get("status") in TERMINAL_STATUSES


@dataclass(kw_only=True)
class PollStats:
    rounds: int = 0
    requests: int = 0
    transient_errors: int = 0
    not_found: int = 0
    errors_by_status: Counter[int] = field(default_factory=Counter)


def tasks_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/tasks"


@dataclass(frozen=True)
class Submission:
    run_id: str
    message: str
    idempotency_key: str


def ordinary_submissions(count: int) -> list[Submission]:
    """Messages that are neither control word, tagged with a run id so they can be found later,
    each with its own Idempotency-Key."""
    run_id = uuid.uuid4().hex[:12]
    return [
        Submission(
            run_id=run_id,
            message=f"load {run_id} task {index + 1}/{count}",
            idempotency_key=f"taskctl-load-{run_id}-{index + 1}",
        )
        for index in range(count)
    ]


async def _for_each(
    items: list[Any], concurrency: int, action: Callable[[Any], Awaitable[Any]]
) -> list[Any]:
    """What `action` returns for every item (in the order they finish), `concurrency` items at a
    time; the first error cancels the others and is raised."""
    remaining = iter(items)  # shared: each worker takes the next item when it is free
    results: list[Any] = []

    async def worker() -> None:
        for item in remaining:
            results.append(await action(item))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for running in workers:
            running.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return results


def _error_text(response: httpx.Response) -> str:
    """The API's `error` field when the body is the documented JSON, else the raw text (short)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    for key in ("error", "message"):  # ours, then API Gateway's own errors
        if isinstance(body, dict) and key in body:
            return str(body[key])
    text = response.text.strip().replace("\n", " ")
    return text[:200] or "(empty body)"


async def submit_tasks(
    client: httpx.AsyncClient,
    base_url: str,
    submissions: list[Submission],
    *,
    concurrency: int,
    on_submitted: Callable[[TrackedTask], None] = lambda _task: None,
) -> None:
    """POST every message, telling `on_submitted` of each task; any refusal or an unreachable URL
    stops the run with a LoadError."""
    url = tasks_url(base_url)

    async def submit(submission: Submission) -> None:
        on_submitted(await _submit_one(client, url, submission))

    await _for_each(submissions, concurrency, submit)


async def _submit_one(client: httpx.AsyncClient, url: str, submission: Submission) -> TrackedTask:
    started_s = time.monotonic()  # the first try: retries are part of the task's latency
    headers = {IDEMPOTENCY_HEADER: submission.idempotency_key}
    for retry in range(MAX_SUBMIT_RETRIES + 1):
        last_try = retry == MAX_SUBMIT_RETRIES
        try:
            response = await client.post(url, json={"message": submission.message}, headers=headers)
        except httpx.TimeoutException as exc:
            if last_try:
                raise LoadError(
                    f"{url} did not answer a submit in time, {retry + 1} tries: "
                    f"{_describe_transport_error(exc)}"
                ) from None
            await asyncio.sleep(_retry_delay_s(None, retry))
            continue
        except httpx.TransportError as exc:
            raise LoadError(f"cannot reach {url}: {_describe_transport_error(exc)}") from None
        if response.status_code in RETRIED_STATUSES and not last_try:
            await asyncio.sleep(_retry_delay_s(response, retry))
            continue
        if response.status_code != 202:
            hint = _token_hint(client, "tasks/write") if response.status_code in (401, 403) else ""
            raise LoadError(
                f"submit refused: POST {url} answered {response.status_code}: "
                f"{_error_text(response)}{hint}"
            )
        try:
            task_id = str(response.json()["taskId"])
        except (ValueError, KeyError, TypeError):
            raise LoadError(
                f"submit answered 202 without a taskId in its JSON body: {_error_text(response)}"
            ) from None
        return TrackedTask(task_id=task_id, submitted_at_s=started_s)
    raise AssertionError("unreachable: the last try returns or raises")


def _token_hint(client: httpx.AsyncClient, scope: str) -> str:
    """Why the API refused the caller, and what to do: no token, or one it no longer takes."""
    if "authorization" not in client.headers:
        return (
            f" (the API wants a bearer token with the scope {scope}: pass --token, "
            "e.g. --token $(python -m taskctl token ...))"
        )
    return (
        f" (the token was refused: it needs the scope {scope}, and it lasts 60 minutes; "
        "pass a new one from python -m taskctl token ...)"
    )


def _retry_delay_s(response: httpx.Response | None, retry: int) -> float:
    retry_after = response.headers.get("retry-after", "") if response is not None else ""
    if retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), RETRY_BACKOFF_MAX_S)
    return min(RETRY_BACKOFF_BASE_S * 2**retry, RETRY_BACKOFF_MAX_S)


def _describe_transport_error(exc: httpx.TransportError) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def poll_until_terminal(
    client: httpx.AsyncClient,
    base_url: str,
    tasks: list[TrackedTask],
    *,
    concurrency: int,
    timeout_s: float,
    submitting: asyncio.Event,
    on_terminal: Callable[[TrackedTask], None] = lambda _task: None,
) -> PollStats:
    """GET every non-terminal task in rounds until all are terminal or the timeout passes.

    `tasks` may still grow while `submitting` is unset (polling runs alongside submission); the
    timeout counts from the moment submission ends. Each task keeps the last record seen. Between
    rounds it waits a short, growing interval, never past the deadline. A 401 or 403 stops the
    run; a 404 (not visible yet), a 429 or a 5xx is retried next round.
    """
    url = tasks_url(base_url)
    stats = PollStats()
    interval_s = POLL_INTERVAL_MIN_S
    unreachable_rounds = 0
    deadline_s: float | None = None
    while True:
        if deadline_s is None and submitting.is_set():
            deadline_s = time.monotonic() + timeout_s
        pending = [task for task in tasks if not task.terminal]
        if deadline_s is not None and (not pending or time.monotonic() >= deadline_s):
            return stats
        round_started_s = time.monotonic()
        if pending:
            stats.rounds += 1
            outcomes = await _for_each(
                pending, concurrency, lambda task: _poll_one(client, url, task, stats, on_terminal)
            )
            if all(outcome == "unreachable" for outcome in outcomes):
                unreachable_rounds += 1
                if unreachable_rounds >= MAX_UNREACHABLE_POLL_ROUNDS:
                    raise LoadError(f"lost contact with {url} while waiting for tasks to finish")
            else:
                unreachable_rounds = 0
            if deadline_s is not None and all(task.terminal for task in tasks):
                return stats
        # Wait out the rest of the interval (a round that took longer starts the next at once).
        wait_s = interval_s - (time.monotonic() - round_started_s)
        if deadline_s is not None:
            wait_s = min(wait_s, deadline_s - time.monotonic())
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        interval_s = min(interval_s * 1.5, POLL_INTERVAL_MAX_S)


async def _poll_one(
    client: httpx.AsyncClient,
    url: str,
    task: TrackedTask,
    stats: PollStats,
    on_terminal: Callable[[TrackedTask], None],
) -> str:
    stats.requests += 1
    try:
        response = await client.get(f"{url}/{task.task_id}")
    except httpx.TransportError as exc:  # a timeout too
        stats.transient_errors += 1
        return "error" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    if response.status_code == 404:
        stats.not_found += 1
        return "not-found"
    if response.status_code in (401, 403):  # no later round would be let in either
        raise LoadError(
            f"reading a task refused: GET {url}/{task.task_id} answered {response.status_code}: "
            f"{_error_text(response)}{_token_hint(client, 'tasks/read')}"
        )
    if response.status_code != 200:
        stats.transient_errors += 1
        stats.errors_by_status[response.status_code] += 1
        return "error"
    try:
        record = response.json()
    except ValueError:
        stats.transient_errors += 1
        return "error"
    task.record = record
    if task.terminal:
        task.terminal_seen_at_s = time.monotonic()
        on_terminal(task)
        return "terminal"
    return "pending"


async def _connect_localhost_names_to_loopback(request: httpx.Request) -> None:
    """Send a request for `<id>.execute-api.localhost` to 127.0.0.1, its Host header (set when the
    request was built) keeping the name: curl resolves every `*.localhost` name to loopback, the
    C library here does not, and the local API Gateway routes on the Host header."""
    if request.url.host.endswith(".localhost"):
        request.url = request.url.copy_with(host="127.0.0.1")


def make_client(
    base_url: str, concurrency: int, request_timeout_s: float, bearer_token: str | None
) -> httpx.AsyncClient:
    """An HTTP client sized for `concurrency` requests in flight, sending `bearer_token` (if
    any) with every request."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    host = httpx.URL(base_url).host
    # `localhost`, `*.localhost` (RFC 6761) or a 127.x address: the local stack.
    loopback = host == "localhost" or host.endswith(".localhost") or host.startswith("127.")
    return httpx.AsyncClient(
        timeout=request_timeout_s,
        transport=httpx.AsyncHTTPTransport(limits=limits, trust_env=not loopback),
        event_hooks={"request": [_connect_localhost_names_to_loopback]},
        # A proxy from the environment must not intercept a run against the local stack.
        trust_env=not loopback,
        headers={"Authorization": f"Bearer {bearer_token}"} if bearer_token else None,
    )
