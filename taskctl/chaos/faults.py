"""Faults, injected at exact AWS calls, and the transport that carries every call of the functions.

The functions' boto3 clients are real (the deployed `CLIENT_CONFIG`: standard retry mode, 3
attempts), so the SDK parses replies, raises `ClientError`s and retries exactly as deployed. Only
the network is replaced: a `before-send` hook (`Transport`) answers each request - DynamoDB from
moto, SQS from the simulated queues - after deciding, with the world's seeded random source,
whether this attempt meets a fault:

- lost response: the write is applied, then the reply is lost (a 500 or a read timeout), so the
  SDK sends it again (never on the last attempt: a write applied whose caller never hears back is
  the crash below); for SendMessage that is a duplicate message;
- throttled / 5xx: the attempt is refused unapplied; sometimes the next ones too, up to all 3
  attempts, so the handler sees the error; or a BatchGetItem leaves some keys unprocessed;
- process crash: the process dies at the call, before sending it or once it was applied;
- Lambda timeout: the clock jumps to the invocation's deadline and the process dies there;
- concurrent duplicate delivery: before a worker's call goes out, a second delivery of the same
  message (a new receive, a new receipt handle) or of another copy of its task's message runs to
  completion, then the first continues; likewise a second reconciler pass inside a first one
  (EventBridge delivers a schedule's events at least once).

An outage window (the world opens and closes it) fails every DynamoDB attempt with a 503.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto.core.models import botocore_stubber

from functions.policy import SDK_MAX_ATTEMPTS
from functions.queue import UnreadableMessage, parse_task_message
from functions.store import TASK_KEY
from taskctl.chaos import dynamodb, wire
from taskctl.chaos.clock import SimClock
from taskctl.chaos.lambdas import Crash, Invocation, Lambdas, Timeout
from taskctl.chaos.sqs import SimSqs

# Every write the functions make; only these can be applied and then have their reply lost.
WRITE_OPERATIONS = dynamodb.WRITE_OPERATIONS | {
    "SendMessage",
    "ChangeMessageVisibility",
    "DeleteMessage",
}
CALL_LATENCY_S = (0.002, 0.025)  # one attempt's round trip
# A reconciler pass makes ~18 calls; this keeps a second pass at once to a few in a hundred.
RECONCILER_DUPLICATE_SHARE = 0.2
# How many consecutive attempts of one call a throttling fault refuses (3 exhausts the SDK's).
THROTTLE_RUNS = (1, 2, 3)
THROTTLE_RUN_WEIGHTS = (0.55, 0.25, 0.20)
_REFUSALS = {
    "dynamodb": (
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
    ),
    "sqs": (
        ("RequestThrottled", 400),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
    ),
}


class FaultKind(StrEnum):
    LOST_RESPONSE = "lost response"
    THROTTLED = "throttled / 5xx"
    CRASH = "process crash"
    DUPLICATE = "concurrent duplicate delivery"
    TIMEOUT = "Lambda timeout"
    OUTAGE = "DynamoDB outage"
    REDRIVE = "operator redrive"


@dataclass(frozen=True)
class FaultRates:
    """Chance that one AWS call attempt meets each fault, while faults are on."""

    crash: float = 0.005
    timeout: float = 0.005
    lost_response: float = 0.02  # writes only
    throttled: float = 0.012  # a call's first attempt
    duplicate: float = 0.03  # a worker's calls about a message of its batch (and see below)
    reconciler_scale: float = 0.25  # the rates above, scaled, in the reconciler's calls

    @classmethod
    def none(cls) -> FaultRates:
        return cls(crash=0.0, timeout=0.0, lost_response=0.0, throttled=0.0, duplicate=0.0)


@dataclass(frozen=True)
class _Fault:
    kind: FaultKind
    after_apply: bool = False
    refusal: tuple[str, int] | None = None


@dataclass(eq=False)
class Faults:
    """The decisions (seeded) and what was injected, by kind and in detail."""

    rng: random.Random
    rates: FaultRates
    active: bool = False  # faults are injected only while on (the world turns them off)
    outage: bool = False
    counts: Counter[FaultKind] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    _refusals_left: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # by SDK call

    def count(self, kind: FaultKind, detail: str | None = None) -> None:
        self.counts[kind] += 1
        if detail:
            self.details[f"{kind}: {detail}"] += 1

    def decide(
        self,
        service: str,
        operation: str,
        call_id: str,
        attempt: int,
        invocation: Invocation | None,
    ) -> _Fault | None:
        planned = self._refusals_left.get(call_id)
        if planned:
            refusal = planned.pop()
            if not planned:  # the call's last planned refusal: forget the call
                del self._refusals_left[call_id]
            return _Fault(FaultKind.THROTTLED, refusal=refusal)
        if not self.active or invocation is None:
            return None
        rates = self.rates
        # The reconciler makes most of the calls (16 index queries a minute, busy or not); at
        # the same rates, its faults would crowd out those on the tasks' own paths.
        scale = rates.reconciler_scale if invocation.function == "reconciler" else 1.0
        draw = self.rng.random
        if draw() < rates.crash * scale:
            return _Fault(FaultKind.CRASH, after_apply=draw() < 0.5)
        # Not in a nested invocation: its jump to its own deadline would also stop the one it
        # interrupted, which in reality would have carried on in parallel.
        if draw() < rates.timeout * scale and not invocation.nested:
            return _Fault(FaultKind.TIMEOUT, after_apply=draw() < 0.5)
        # Only where the SDK will send it again: a write applied whose caller never hears back
        # is a crash after the call.
        if (
            operation in WRITE_OPERATIONS
            and attempt < SDK_MAX_ATTEMPTS
            and draw() < rates.lost_response * scale
        ):
            return _Fault(FaultKind.LOST_RESPONSE)
        if attempt == 1 and draw() < rates.throttled * scale:
            run = self.rng.choices(THROTTLE_RUNS, THROTTLE_RUN_WEIGHTS)[0]
            refusal = self.rng.choice(_REFUSALS[service])
            if run > 1:
                self._refusals_left[call_id] = [refusal] * (run - 1)
            self.count(
                FaultKind.THROTTLED,
                "exhausted the SDK's retries" if run >= 3 else f"{run} attempt(s) refused",
            )
            return _Fault(FaultKind.THROTTLED, refusal=refusal)
        if invocation.nested:
            return None
        if invocation.function == "worker" and invocation.batch:
            duplicate = rates.duplicate
        elif invocation.function == "reconciler":
            # EventBridge delivers a schedule's event at least once: a second pass may run
            # inside the first. Decided per call, so it can start anywhere in the first pass.
            duplicate = rates.duplicate * scale * RECONCILER_DUPLICATE_SHARE
        else:
            return None
        return _Fault(FaultKind.DUPLICATE) if draw() < duplicate else None

    def unprocessed_keys(self, keys: list[Any], invocation: Invocation | None) -> list[Any]:
        """The keys of a BatchGetItem that DynamoDB leaves unprocessed (as it does when
        throttled): none, unless this read meets throttling."""
        if not self.active or invocation is None or self.rng.random() >= self.rates.throttled:
            return []
        self.count(FaultKind.THROTTLED, "BatchGetItem keys left unprocessed")
        return self.rng.sample(keys, self.rng.randint(1, len(keys)))


@dataclass(eq=False, kw_only=True)
class Transport:
    """The functions' network: every attempt of every call comes here (a `before-send` hook)."""

    clock: SimClock
    rng: random.Random
    faults: Faults
    lambdas: Lambdas
    table: dynamodb.SimTable
    sqs: SimSqs
    on_duplicate: Callable[[Invocation, str | None], str | None]
    attempts: int = 0  # attempts sent
    outage_refusals: int = 0

    def attach(self, client: Any) -> None:
        """Route `client`'s requests here instead of to moto's hook (or the network)."""
        events = client.meta.events
        events.unregister("before-send", botocore_stubber)
        service = client.meta.service_model.service_id.hyphenize()
        events.register_first(f"before-send.{service}", self._before_send)

    def _before_send(
        self, request: AWSPreparedRequest, event_name: str, **_: Any
    ) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        call_id, attempt = wire.sdk_attempt(request)
        self.attempts += 1
        self.clock.advance(self.rng.uniform(*CALL_LATENCY_S))
        self.lambdas.check_deadline()
        invocation = self.lambdas.current
        if invocation is not None and attempt == 1:
            scripted = invocation.before_call.pop(operation, None)
            if scripted is not None:
                scripted()
        if service == "dynamodb" and self.faults.outage:
            self.outage_refusals += 1
            return wire.error_response(
                request, service, "ServiceUnavailable", "simulated outage", 503
            )
        fault = self.faults.decide(service, operation, call_id, attempt, invocation)
        apply = partial(self._apply, request, event_name, service, operation, invocation)
        if fault is None:
            return apply()
        match fault.kind:
            case FaultKind.THROTTLED:
                assert fault.refusal is not None
                code, status = fault.refusal
                return wire.error_response(request, service, code, "simulated refusal", status)
            case FaultKind.LOST_RESPONSE:
                apply()
                self.faults.count(FaultKind.LOST_RESPONSE, operation)
                if self.rng.random() < 0.5:
                    raise ReadTimeoutError(endpoint_url=request.url)
                return wire.error_response(
                    request, service, "InternalServerError", "reply lost", 500
                )
            case FaultKind.CRASH | FaultKind.TIMEOUT:
                assert invocation is not None
                self.faults.count(fault.kind, invocation.function)
                if fault.after_apply:
                    apply()
                if fault.kind == FaultKind.CRASH:
                    raise Crash(f"{invocation.function} crashed at {operation}")
                self.clock.advance_to(invocation.deadline)
                raise Timeout(f"{invocation.function} timed out at {operation}")
            case FaultKind.DUPLICATE:
                assert invocation is not None
                task_id = _task_named(service, operation, wire.params(request), invocation)
                which = self.on_duplicate(invocation, task_id)
                if which is not None:
                    self.faults.count(FaultKind.DUPLICATE, f"{which} at {operation}")
                    # The second delivery may have outlived this one's deadline.
                    self.lambdas.check_deadline()
                return apply()
        raise AssertionError(f"unhandled fault {fault!r}")

    def _apply(
        self,
        request: AWSPreparedRequest,
        event_name: str,
        service: str,
        operation: str,
        invocation: Invocation | None,
    ) -> AWSResponse:
        if service == "dynamodb":
            response = self.table.respond(request, event_name, operation)
        elif service == "sqs":
            response = self.sqs.respond(request, operation)
        else:  # a client this campaign does not simulate must not reach the network
            response = wire.error_response(request, service, "NotSimulated", service, 400)
        if invocation is not None and operation in WRITE_OPERATIONS and response.status_code == 200:
            invocation.writes += 1
            if operation == "SendMessage":
                sent = wire.params(request)
                invocation.sent.append((sent["QueueUrl"], sent["MessageBody"]))
        return response


def _task_named(
    service: str, operation: str, params: dict[str, Any], invocation: Invocation
) -> str | None:
    """The task of the worker's batch that this call is about, if one can be told."""
    if service == "dynamodb":
        key = params.get("Key") or params.get("Item") or {}
        task_id = key.get(TASK_KEY, {}).get("S")
    elif operation == "ChangeMessageVisibility":
        handle = params.get("ReceiptHandle")
        task_id = next(
            (task for task, got in invocation.batch.items() if got.receipt_handle == handle), None
        )
    elif operation == "SendMessage":
        task_id = task_of(params["MessageBody"])
    else:
        task_id = None
    return task_id if task_id in invocation.batch else None


def task_of(body: str) -> str | None:
    """The task a message body names; None if it is not a task message."""
    try:
        return parse_task_message(body)
    except UnreadableMessage:
        return None
