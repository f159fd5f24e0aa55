"""One load run end to end, without any UI: submit, poll, report. Reused by `taskctl bench`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.lifecycle import longest_retry_wait_s
from taskctl.load import client as api
from taskctl.load.report import LoadPolicy, build_report
from taskctl.load.stats import DEFAULT_CONFIDENCE

DEFAULT_TIMEOUT_S = 300.0
# Beyond the policy's longest backoff: queueing, cold starts and the last attempt itself.
TIMEOUT_MARGIN_S = 120.0
OnTask = Callable[[api.TrackedTask], None]  # told of each task submitted, or seen terminal


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    url: str
    count: int
    concurrency: int
    timeout_s: float
    policy: LoadPolicy
    confidence: float = DEFAULT_CONFIDENCE
    request_timeout_s: float = api.REQUEST_TIMEOUT_S
    bearer_token: str | None = None  # for a stack that authenticates callers (apiAuth: jwt)


def default_timeout_s(policy: LoadPolicy) -> float:
    """Long enough for the slowest task a stack's policy allows (its backoff is known)."""
    if policy.stack_policy is None:
        return DEFAULT_TIMEOUT_S
    return max(DEFAULT_TIMEOUT_S, longest_retry_wait_s(policy.stack_policy) + TIMEOUT_MARGIN_S)


def run_load(
    options: LoadOptions,
    *,
    on_submitted: OnTask = lambda _task: None,
    on_terminal: OnTask = lambda _task: None,
) -> dict:
    """Submit `count` tasks, wait for them (at most `timeout_s` after the last submit), report.

    Raises `client.LoadError` when the URL is unreachable or a submit is refused.
    """
    return asyncio.run(_run(options, on_submitted, on_terminal))


async def _run(options: LoadOptions, on_submitted: OnTask, on_terminal: OnTask) -> dict:
    submissions = api.ordinary_submissions(options.count)
    tasks: list[api.TrackedTask] = []
    submitting = asyncio.Event()

    def submitted(task: api.TrackedTask) -> None:
        tasks.append(task)
        on_submitted(task)

    async with api.make_client(
        options.url, options.concurrency, options.request_timeout_s, options.bearer_token
    ) as http:
        started_at_s = time.monotonic()
        # Poll alongside submission, so a task's terminal time is not inflated by the others'
        # submits; the poller's timeout starts once the last task is in.
        poller = asyncio.create_task(
            api.poll_until_terminal(
                http,
                options.url,
                tasks,
                concurrency=options.concurrency,
                timeout_s=options.timeout_s,
                submitting=submitting,
                on_terminal=on_terminal,
            )
        )
        try:
            await api.submit_tasks(
                http,
                options.url,
                submissions,
                concurrency=options.concurrency,
                on_submitted=submitted,
            )
        except BaseException:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            raise
        submitting.set()
        poll_stats = await poller
        finished_at_s = time.monotonic()
    return build_report(
        run_id=submissions[0].run_id,
        url=options.url,
        policy=options.policy,
        tasks=tasks,
        started_at_s=started_at_s,
        finished_at_s=finished_at_s,
        poll_stats=poll_stats,
        confidence=options.confidence,
    )
