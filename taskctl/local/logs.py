"""The functions' logs, as the emulator stores them in CloudWatch Logs (`/aws/lambda/<name>`).

`follow` polls FilterLogEvents for each function's log group and yields new lines with the
function they came from, oldest first, until the emulator has ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from taskctl.local.emulator import RunningEmulator, is_alive

POLL_INTERVAL_S = 0.5
LAMBDA_FUNCTION_TYPE = "aws:lambda/function:Function"


@dataclass(frozen=True)
class LogLine:
    function: str  # the function's service name (api, worker, dead-letter, reconciler)
    timestamp_ms: int
    message: str


def functions_of(deployment: dict[str, Any]) -> dict[str, str]:
    """{label: log group} for every function the deployment created (api: /aws/lambda/...)."""
    return {
        function_label(resource): f"/aws/lambda/{resource['outputs']['name']}"
        for resource in deployment.get("resources", [])
        if resource["type"] == LAMBDA_FUNCTION_TYPE
    }


def function_label(resource: dict[str, Any]) -> str:
    """A deployed function's label: its service name (POWERTOOLS_SERVICE_NAME), else its
    logical name in the program."""
    variables = (resource["inputs"].get("environment") or {}).get("variables") or {}
    return variables.get("POWERTOOLS_SERVICE_NAME") or resource["name"]


def follow(
    running: RunningEmulator,
    groups: dict[str, str],
    *,
    since_ms: int,
    follow_new: bool,
) -> Iterator[LogLine]:
    """Yield log lines of `groups` ({label: log group}); keep polling while `follow_new`."""
    logs = running.client("logs")
    seen: set[str] = set()
    while is_alive(running.pid):
        batch: list[LogLine] = []
        for label, group in groups.items():
            for event in log_events(logs, group, since_ms):
                key = _event_key(event)
                if key in seen:
                    continue
                seen.add(key)
                batch.append(LogLine(label, event["timestamp"], event["message"].rstrip("\n")))
        batch.sort(key=lambda line: line.timestamp_ms)
        yield from batch
        if batch:
            # Keep a little overlap: events with the same millisecond may still arrive.
            since_ms = max(since_ms, batch[-1].timestamp_ms - 1000)
        if not follow_new:
            return
        time.sleep(POLL_INTERVAL_S)


def _event_key(event: dict[str, Any]) -> str:
    """AWS gives each event an id; the emulator does not, so fall back to what identifies it."""
    if event.get("eventId"):
        return str(event["eventId"])
    fields = ("logStreamName", "timestamp", "ingestionTime", "message")
    return "|".join(str(event.get(field)) for field in fields)


def log_events(logs: Any, group: str, start_ms: int = 0) -> Iterator[dict[str, Any]]:
    """The events of log group `group` since `start_ms`, every page; none if the group does not
    exist yet or the emulator is going away."""
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=start_ms)
    try:
        for page in pages:
            yield from page.get("events", [])
    except ClientError as exc:  # a function that has not logged yet has no log group
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    except BotoCoreError:
        return  # the emulator is going away
