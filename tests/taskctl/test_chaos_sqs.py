"""The simulated SQS queue shared by the handler tests, the benchmark and the fault campaign:
delayed messages, the in-flight count and SQS's in-flight quota."""

from __future__ import annotations

import itertools

import pytest

from taskctl.chaos.clock import SimClock
from taskctl.chaos.sqs import SimQueue, SqsError, quotas


def queue(clock: SimClock, in_flight_limit: int = 120_000) -> SimQueue:
    ids = itertools.count()
    return SimQueue(
        name="tasks",
        url="https://sqs.us-east-1.amazonaws.com/123456789012/tasks",
        arn="arn:aws:sqs:us-east-1:123456789012:tasks",
        visibility_timeout_s=180,
        new_id=lambda: f"m{next(ids)}",
        in_flight_limit=in_flight_limit,
    )


def test_a_delayed_message_is_neither_visible_nor_in_flight_until_its_delay_ends():
    clock = SimClock()
    tasks = queue(clock)
    tasks.send("later", clock(), delay_s=60)

    clock.advance(59.999)
    assert tasks.receive(10, clock()) == []
    assert (tasks.delayed(clock()), tasks.in_flight(clock())) == (1, 0)

    clock.advance(0.001)
    (received,) = tasks.receive(10, clock())
    assert received.message.body == "later"
    assert (tasks.delayed(clock()), tasks.in_flight(clock())) == (0, 1)


def test_in_flight_counts_received_messages_until_deleted_or_visible_again():
    clock = SimClock()
    tasks = queue(clock)
    for body in ("a", "b", "c"):
        tasks.send(body, clock())
    first, second, _third = tasks.receive(10, clock())

    tasks.delete(first.receipt_handle)
    tasks.change_visibility(second.receipt_handle, 0, clock())
    assert tasks.in_flight(clock()) == 1  # only the third is still held
    clock.advance(180)  # the third's visibility timeout ends
    assert tasks.in_flight(clock()) == 0
    assert tasks.peak_in_flight == 3


def test_at_the_in_flight_quota_the_queue_hands_out_nothing_more():
    clock = SimClock()
    tasks = queue(clock, in_flight_limit=2)
    for body in ("a", "b", "c"):
        tasks.send(body, clock())

    assert len(tasks.receive(10, clock())) == 2
    assert tasks.receive(10, clock()) == []
    assert tasks.over_limit == 1
    assert tasks.peak_in_flight == 2


def test_a_delay_beyond_sqs_maximum_is_refused():
    clock = SimClock()
    with pytest.raises(SqsError, match="DelaySeconds"):
        queue(clock).send("too late", clock(), delay_s=quotas().sqs_max_delay_s + 1)
