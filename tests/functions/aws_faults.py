"""Faults injected at one exact AWS call, through botocore's own event hooks, so the SDK's real
retry logic runs: "applied, response lost, retried" is what botocore does after a 500 or a reset.

`lose_response(client, "UpdateItem", nth=1)`: the nth matching call is applied (by moto, or by the
simulated queues for SQS), then its reply is replaced by a 500 (as a reset connection or a lost
reply looks to the caller); botocore retries it as it would in Lambda, and the retry meets the
world the first try already changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from moto.core.botocore_stubber import MockRawResponse


@dataclass
class LostResponses:
    """Which calls had their response lost, for the test's own assertions."""

    events: Any  # the client's event hooks: whatever answers its requests (moto, simulated SQS)
    operation: str
    nth: set[int]
    seen: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)  # the real replies, never seen
    _applying: bool = False

    def __call__(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        if self._applying:
            return None  # the call is being applied: let the service answer
        self.seen += 1
        if self.seen not in self.nth:
            return None  # let the service answer as usual
        # The call really reaches the service (and is applied, or refused by its condition)...
        self._applying = True
        try:
            _, reply = self.events.emit_until_response(event_name, request=request)
        finally:
            self._applying = False
        assert reply is not None, "moto or the simulated queues must answer"
        self.lost.append({"status": reply.status_code})
        # ...and its reply never reaches the caller.
        body = json.dumps({"__type": "InternalServerError", "message": "reply lost in transit"})
        return AWSResponse(request.url, 500, {}, MockRawResponse(body))


# The lost replies the running test asked for: a test whose fault never happened (the call it
# named was not made, or not that often) tests the normal path only. tests/functions/conftest.py
# clears this before each test and fails the test after it if one was not lost.
INJECTED: list[LostResponses] = []


def lose_response(client: Any, operation: str, nth: int | set[int] = 1) -> LostResponses:
    """Apply the `nth` call(s) of `operation` on `client`, then lose the reply (a 500)."""
    service = client.meta.service_model.endpoint_prefix
    hook = LostResponses(client.meta.events, operation, {nth} if isinstance(nth, int) else set(nth))
    client.meta.events.register_first(f"before-send.{service}.{operation}", hook)
    INJECTED.append(hook)
    return hook


def replies_not_lost() -> list[str]:
    """The injected lost replies that did not happen, described."""
    return [
        f"{hook.operation} call(s) {sorted(hook.nth)} (saw {hook.seen})"
        for hook in INJECTED
        if len(hook.lost) < len(hook.nth)
    ]


@dataclass
class FailingCalls:
    """An outage of one operation: no try reaches the service until `stop()`.

    Each try fails to connect, which botocore retries as it would in Lambda. The hook raises
    rather than answering, because botocore calls every `before-send` hook: an answer would win,
    but moto (or the simulated queues) would still apply the call behind it."""

    client: Any
    event: str
    count: int = 0

    def __call__(self, request: Any, **_: Any) -> None:
        self.count += 1
        raise EndpointConnectionError(endpoint_url=request.url)

    def stop(self) -> None:
        self.client.meta.events.unregister(self.event, self)


def fail_calls(client: Any, operation: str) -> FailingCalls:
    """Let no try of `operation` on `client` reach the service until the returned `stop()`."""
    service = client.meta.service_model.endpoint_prefix
    outage = FailingCalls(client, f"before-send.{service}.{operation}")
    client.meta.events.register_first(outage.event, outage)
    return outage
