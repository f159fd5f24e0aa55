"""Simulated SQS on the simulated clock, and Lambda's event source mapping over it: the one queue
model and the one event source mapping player that the fault campaign, `taskctl bench` and the
handler tests (tests/functions) all use.

moto's SQS counts visibility timeouts and delays in wall-clock time, so anything that simulates
hours in seconds needs its own queues. They keep what the handlers and the delivery guarantees
depend on:

- a receive hides a message for the queue's visibility timeout, gives it a NEW receipt handle and
  counts it (`ApproximateReceiveCount`); only the newest handle can change or delete it: with an
  older one ChangeMessageVisibility fails and DeleteMessage succeeds without deleting (as SQS
  documents);
- the redrive policy: a message received `maxReceiveCount` times moves to the dead-letter queue on
  its next receive, with its body and message attributes;
- retention (14 days, counted from the original send, also after a move);
- at-least-once delivery: `receive_one` hands out a message that is in flight once more;
- `DelaySeconds` on a send: the message stays invisible until its delay ends, and is not in flight
  meanwhile (SQS's quota of about 120,000 in-flight messages counts only received, not yet deleted
  or visible messages); each queue counts its in-flight messages and their peak, and refuses to
  hand out more than the quota (a stalled queue, as `OverLimit` stalls a real one).

The functions reach the queues through a real botocore SQS client whose requests are answered here
(`SimSqs.respond`; `SimSqs.serve` routes a boto3 session's clients here), so the SDK's parsing,
errors and retries are the deployed ones. Lambda's side (`EventSourceMapping`) uses the queues
directly, as the Lambda service does.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from functions.lifecycle import to_epoch_ms
from taskctl.capacity.quotas import Quotas
from taskctl.chaos import wire

RETENTION_S = 1_209_600  # 14 days, as both queues are deployed
SQS_MAX_VISIBILITY_S = 43_200  # 12 hours from the receive: SQS's ceiling
MAX_BODY_BYTES = 262_144
SENDER_ID = "AIDACHAOSSIMULATION"


@functools.cache
def quotas() -> Quotas:
    """SQS's in-flight quota and DelaySeconds maximum, from the quotas file that cites them."""
    return Quotas.load()


class SqsError(Exception):
    """An SQS error reply: its code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(eq=False)
class Message:
    """One message in one queue. `receipt_handle` is the newest handle; older ones are stale."""

    message_id: str
    body: str
    message_attributes: dict[str, dict[str, Any]]
    sent_at: datetime
    visible_at: datetime
    receive_count: int = 0
    first_received_at: datetime | None = None
    received_at: datetime | None = None
    receipt_handle: str | None = None
    version: int = 0  # bumped on every visibility change: older heap entries are stale
    gone: bool = False

    @property
    def md5_of_body(self) -> str:
        return hashlib.md5(self.body.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Received:
    """One receive of a message: the handle and count as that receive returned them."""

    message: Message
    receipt_handle: str
    receive_count: int
    received_at: datetime


@dataclass
class SimQueue:
    """A standard queue. `dead_letter`/`max_receive_count` are its redrive policy, if any."""

    name: str
    url: str
    arn: str
    visibility_timeout_s: int
    new_id: Callable[[], str]
    dead_letter: SimQueue | None = None
    max_receive_count: int | None = None
    in_flight_limit: int = field(default_factory=lambda: quotas().sqs_in_flight)
    sent_delayed: int = 0
    moved_to_dead_letter: int = 0
    peak_in_flight: int = 0
    over_limit: int = 0  # receives that found the in-flight quota reached
    _messages: dict[str, Message] = field(default_factory=dict)
    _handles: dict[str, Received] = field(default_factory=dict)
    _heap: list[tuple[datetime, int, Message, int]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _received: dict[str, Message] = field(default_factory=dict)  # maybe in flight, by id

    def __len__(self) -> int:
        """Messages stored (visible, delayed or in flight)."""
        return len(self._messages)

    def in_flight(self, now: datetime) -> int:
        """Messages received and neither deleted nor visible again (SQS's in-flight count)."""
        for message_id, message in list(self._received.items()):
            if message.gone or message.visible_at <= now:
                del self._received[message_id]
        return len(self._received)

    def delayed(self, now: datetime) -> int:
        """Messages sent with a delay that has not ended yet (never received: not in flight)."""
        return sum(m.receive_count == 0 and m.visible_at > now for m in self._messages.values())

    # -- what a sender does

    def send(
        self,
        body: str,
        now: datetime,
        message_attributes: dict[str, dict[str, Any]] | None = None,
        delay_s: int = 0,
    ) -> Message:
        if len(body.encode()) > MAX_BODY_BYTES:
            raise SqsError("InvalidParameterValue", f"message body over {MAX_BODY_BYTES} bytes")
        max_delay_s = quotas().sqs_max_delay_s
        if not 0 <= delay_s <= max_delay_s:
            raise SqsError(
                "InvalidParameterValue", f"DelaySeconds={delay_s} is outside 0..{max_delay_s}"
            )
        message = Message(
            message_id=self.new_id(),
            body=body,
            message_attributes=dict(message_attributes or {}),
            sent_at=now,
            visible_at=now + timedelta(seconds=delay_s),
        )
        self._store(message)
        self.sent_delayed += delay_s > 0
        return message

    # -- what a receiver does

    def receive(self, max_messages: int, now: datetime) -> list[Received]:
        """Up to `max_messages` visible messages, each hidden for the visibility timeout. A
        message already received `max_receive_count` times moves to the dead-letter queue
        instead (the redrive policy). None while the in-flight quota is reached (SQS answers
        `OverLimit`: the queue stalls)."""
        room = self.in_flight_limit - self.in_flight(now)
        if room <= 0:
            waiting = self.next_visible_at()
            self.over_limit += waiting is not None and waiting <= now
            return []
        max_messages = min(max_messages, room)
        received: list[Received] = []
        while len(received) < max_messages and (at := self.next_visible_at()) and at <= now:
            message = heapq.heappop(self._heap)[2]
            if not self._leaves(message, now):  # else it left on this receive
                received.append(self._hand_out(message, now))
        return received

    def receive_one(self, message: Message, now: datetime) -> Received | None:
        """A receive that returns this very `message`, visible or not (at-least-once delivery
        may hand out a message in flight once more: a new handle, and the previous receiver's
        goes stale). None if it is gone, or if the redrive policy moves it instead."""
        if message.gone or self._leaves(message, now):
            return None
        return self._hand_out(message, now)

    def change_visibility(self, receipt_handle: str, timeout_s: int, now: datetime) -> None:
        message = self.received(receipt_handle).message
        if message.gone or message.receipt_handle != receipt_handle:
            raise SqsError(
                "InvalidParameterValue",
                f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: Message "
                "does not exist or is not available for visibility timeout change.",
            )
        if message.visible_at <= now:
            raise SqsError("MessageNotInflight", "the message is not in flight")
        assert message.received_at is not None
        if not 0 <= timeout_s <= SQS_MAX_VISIBILITY_S or (
            (now - message.received_at).total_seconds() + timeout_s > SQS_MAX_VISIBILITY_S
        ):
            raise SqsError(
                "InvalidParameterValue",
                f"VisibilityTimeout={timeout_s} would keep the message hidden past "
                f"{SQS_MAX_VISIBILITY_S} s from its receive",
            )
        self._set_visible_at(message, now + timedelta(seconds=timeout_s))

    def delete(self, receipt_handle: str) -> bool:
        """Delete with a handle: True if deleted; a stale handle deletes nothing (no error)."""
        message = self.received(receipt_handle).message
        if message.gone or message.receipt_handle != receipt_handle:
            return False
        self._drop(message)
        return True

    def received(self, receipt_handle: str) -> Received:
        """The receive that returned `receipt_handle` (stale or not)."""
        found = self._handles.get(receipt_handle)
        if found is None:
            raise SqsError(
                "ReceiptHandleIsInvalid", f"the receipt handle {receipt_handle!r} is invalid"
            )
        return found

    def purge(self) -> None:
        """Delete every message (PurgeQueue)."""
        for message in list(self._messages.values()):
            self._drop(message)

    def remove(self, message: Message) -> None:
        """Delete a message by hand, whatever its state (an operator purging it)."""
        if not message.gone:
            self._drop(message)

    def next_visible_at(self) -> datetime | None:
        """When the earliest stored message becomes (or became) visible; None if empty."""
        while self._heap:
            _, _, message, version = self._heap[0]
            if not message.gone and version == message.version:
                return message.visible_at
            heapq.heappop(self._heap)  # a superseded entry
        return None

    def messages(self) -> list[Message]:
        return list(self._messages.values())

    # -- internals

    def _store(self, message: Message) -> None:
        self._messages[message.message_id] = message
        heapq.heappush(self._heap, (message.visible_at, next(self._seq), message, message.version))

    def _set_visible_at(self, message: Message, visible_at: datetime) -> None:
        message.visible_at = visible_at
        message.version += 1
        heapq.heappush(self._heap, (visible_at, next(self._seq), message, message.version))

    def _hand_out(self, message: Message, now: datetime) -> Received:
        message.receive_count += 1
        message.first_received_at = message.first_received_at or now
        message.received_at = now
        handle = f"{message.message_id}#{message.receive_count}#{self.new_id()}"
        message.receipt_handle = handle
        received = Received(message, handle, message.receive_count, now)
        self._handles[handle] = received
        self._set_visible_at(message, now + timedelta(seconds=self.visibility_timeout_s))
        self._received[message.message_id] = message
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight(now))
        return received

    def _drop(self, message: Message) -> None:
        message.gone = True
        del self._messages[message.message_id]

    def _leaves(self, message: Message, now: datetime) -> bool:
        """True if a receive finds `message` past its retention (it is deleted) or received
        `max_receive_count` times already (the redrive policy moves it to the dead-letter
        queue)."""
        if (now - message.sent_at).total_seconds() > RETENTION_S:
            self._drop(message)
            return True
        if (
            self.dead_letter is None
            or self.max_receive_count is None
            or message.receive_count < self.max_receive_count
        ):
            return False
        self._drop(message)
        self.moved_to_dead_letter += 1
        moved = Message(
            message_id=message.message_id,
            body=message.body,
            message_attributes=message.message_attributes,
            sent_at=message.sent_at,  # retention counts from the original send
            visible_at=message.visible_at,
            receive_count=message.receive_count,  # kept, as SQS keeps it
        )
        self.dead_letter._store(moved)
        return True


class SimSqs:
    """The queues by URL, answering SQS requests (`respond`): the functions' calls, and those a
    test or the benchmark makes to set a scene or to play Lambda's poller."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._queues: dict[str, SimQueue] = {}
        self._last_reply: tuple[AWSPreparedRequest, AWSResponse] | None = None

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout_s: int,
        new_id: Callable[[], str],
        dead_letter: SimQueue | None = None,
        max_receive_count: int | None = None,
    ) -> SimQueue:
        """A queue named `name` in the simulated account, with SQS's URL and ARN."""
        queue = SimQueue(
            name=name,
            url=f"{wire.SQS_ENDPOINT}/{wire.ACCOUNT}/{name}",
            arn=f"arn:aws:sqs:{wire.REGION}:{wire.ACCOUNT}:{name}",
            visibility_timeout_s=visibility_timeout_s,
            new_id=new_id,
            dead_letter=dead_letter,
            max_receive_count=max_receive_count,
        )
        self._queues[queue.url] = queue
        return queue

    def queue(self, url: str) -> SimQueue:
        return self._queues[url]

    def serve(self, events: Any) -> Callable[[], None]:
        """Answer the SQS requests of every client created from now on with `events` (a boto3
        session's `events`) here, instead of the network or moto. Returns the undo."""
        events.register_first("before-send.sqs", self.before_send)
        return lambda: events.unregister("before-send.sqs", self.before_send)

    def before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse:
        """A `before-send` hook: the reply to an SQS request. botocore calls every hook of the
        event, so one that applies the request itself first (a test's lost reply) brings it here
        twice: it is applied once (a retry is a new request)."""
        if self._last_reply is not None and self._last_reply[0] is request:
            return self._last_reply[1]
        reply = self.respond(request, event_name.rsplit(".", 1)[-1])
        self._last_reply = (request, reply)
        return reply

    def respond(self, request: AWSPreparedRequest, operation: str) -> AWSResponse:
        """The reply SQS would send to `request` (applied to the queues)."""
        try:
            return wire.json_response(request, 200, self._apply(operation, wire.params(request)))
        except SqsError as error:
            return wire.error_response(request, "sqs", error.code, error.message, error.status)

    def _apply(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queues.get(request.get("QueueUrl", ""))
        if queue is None:
            raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        now = self._clock()
        match operation:
            case "SendMessage":
                message = queue.send(
                    request["MessageBody"],
                    now,
                    request.get("MessageAttributes"),
                    int(request.get("DelaySeconds", 0)),
                )
                return {"MessageId": message.message_id, "MD5OfMessageBody": message.md5_of_body}
            case "ChangeMessageVisibility":
                queue.change_visibility(
                    request["ReceiptHandle"], int(request["VisibilityTimeout"]), now
                )
                return {}
            case "DeleteMessage":
                queue.delete(request["ReceiptHandle"])
                return {}
            case "ReceiveMessage":
                batch = queue.receive(int(request.get("MaxNumberOfMessages", 1)), now)
                return {"Messages": [_received_shape(received) for received in batch]}
            case "GetQueueAttributes":
                names = set(request.get("AttributeNames") or ["All"])
                attributes = _attributes(queue, now)
                if "All" not in names:
                    attributes = {k: v for k, v in attributes.items() if k in names}
                return {"Attributes": attributes}
            case "SetQueueAttributes":
                _set_attributes(queue, request.get("Attributes", {}), self._queues)
                return {}
            case "PurgeQueue":
                queue.purge()
                return {}
        # Anything else would need simulating first: fail loudly rather than pretend.
        raise SqsError("UnsupportedOperation", f"{operation} is not simulated by taskctl chaos")


def _received_shape(received: Received) -> dict[str, Any]:
    """A message as ReceiveMessage returns it (all attributes asked for)."""
    message = received.message
    return {
        "MessageId": message.message_id,
        "ReceiptHandle": received.receipt_handle,
        "MD5OfBody": message.md5_of_body,
        "Body": message.body,
        "Attributes": receive_attributes(received),
        "MessageAttributes": message.message_attributes,
    }


def receive_attributes(received: Received) -> dict[str, str]:
    """The system attributes of one receive, as SQS reports them."""
    message = received.message
    return {
        "ApproximateReceiveCount": str(received.receive_count),
        "SentTimestamp": str(to_epoch_ms(message.sent_at)),
        "SenderId": SENDER_ID,
        "ApproximateFirstReceiveTimestamp": str(
            to_epoch_ms(message.first_received_at or received.received_at)
        ),
    }


def _attributes(queue: SimQueue, now: datetime) -> dict[str, str]:
    in_flight = queue.in_flight(now)
    delayed = queue.delayed(now)
    return {
        "QueueArn": queue.arn,
        "VisibilityTimeout": str(queue.visibility_timeout_s),
        "ApproximateNumberOfMessages": str(len(queue) - in_flight - delayed),
        "ApproximateNumberOfMessagesNotVisible": str(in_flight),
        "ApproximateNumberOfMessagesDelayed": str(delayed),
    }


def _set_attributes(
    queue: SimQueue, attributes: dict[str, str], queues: dict[str, SimQueue]
) -> None:
    for name, value in attributes.items():
        match name:
            case "VisibilityTimeout":
                queue.visibility_timeout_s = int(value)
            case "RedrivePolicy":
                policy = json.loads(value)
                by_arn = {candidate.arn: candidate for candidate in queues.values()}
                queue.dead_letter = by_arn[policy["deadLetterTargetArn"]]
                queue.max_receive_count = int(policy["maxReceiveCount"])
            case _:
                raise SqsError("UnsupportedOperation", f"queue attribute {name} is not simulated")


@dataclass
class EventSourceMapping:
    """Lambda's SQS poller for one queue: receive up to `batch_size` visible messages, invoke the
    function with them, and delete those it did not report as batch item failures.

    `invoke(batch)` runs the function and returns the ids it reported failed, or None if the
    invocation failed as a whole (crash, timeout, error): then nothing is deleted and every
    message comes back when its visibility timeout (possibly changed by the function) ends.
    A deletion with a handle that went stale meanwhile deletes nothing, as in SQS.
    """

    queue: SimQueue
    batch_size: int
    invoke: Callable[[list[Received]], set[str] | None]
    # Told of each message the function acknowledged (did not report failed), before deletion.
    on_acknowledged: Callable[[Received], None] | None = None
    deleted: int = 0

    def poll(self, now: datetime) -> int:
        """One poll; the number of messages handed to the function."""
        batch = self.queue.receive(self.batch_size, now)
        if batch:
            self.deliver(batch)
        return len(batch)

    def deliver(self, batch: list[Received]) -> None:
        failed = self.invoke(batch)
        if failed is None:
            return
        for received in batch:
            if received.message.message_id in failed:
                continue
            if self.on_acknowledged is not None:
                self.on_acknowledged(received)
            if self.queue.delete(received.receipt_handle):
                self.deleted += 1
