"""The pure lifecycle: no AWS, no mocks. Time and randomness are injected."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.lifecycle import (
    ALWAYS_FAILS,
    ALWAYS_SUCCEEDS,
    MAX_RECHECK_S,
    TERMINAL_STATUSES,
    Acknowledge,
    AttemptRecord,
    Claim,
    Completed,
    Defer,
    FailDeadLettered,
    FailedForGood,
    FailLost,
    Finished,
    Recheck,
    Recover,
    RetryLater,
    ReturnToQueue,
    TaskRecord,
    TaskStatus,
    WorkResult,
    backoff_ceiling_s,
    can_transition,
    decide_after_attempt,
    from_iso,
    new_task,
    plan_dead_letter,
    plan_delivery,
    plan_recovery,
    retry_delay_s,
    simulate_work,
    to_iso,
)
from functions.policy import MAX_DEAD_LETTER_RETURNS, MAX_RETRY_DELAY_S, TaskPolicy

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
DEV = TaskPolicy(maxAttempts=2, errorRate=0.3, backoffBaseSeconds=2, maxDelaySeconds=900)


@st.composite
def policies(draw: st.DrawFn, jitter: bool | None = None) -> TaskPolicy:
    max_delay_s = draw(st.integers(min_value=0, max_value=MAX_RETRY_DELAY_S))
    return TaskPolicy(
        maxAttempts=draw(st.integers(min_value=1, max_value=50)),
        backoffBaseSeconds=draw(st.integers(min_value=0, max_value=max_delay_s)),
        maxDelaySeconds=max_delay_s,
        jitter=draw(st.booleans()) if jitter is None else jitter,
    )


def task_in(status: TaskStatus, attempts: int = 0, **fields: object) -> TaskRecord:
    return replace(
        new_task("3f0c9a52-4e0b-4a8e-9a6e-1c2d3e4f5a6b", "hello", DEV, NOW),
        **{"status": status, "attempts": attempts, **fields},
    )


# -- transitions ------------------------------------------------------------------------------


def test_terminal_statuses_allow_no_transition_at_all() -> None:
    for terminal in TERMINAL_STATUSES:
        for target in TaskStatus:
            assert not can_transition(terminal, target)
            assert not can_transition(terminal, target, dead_letter=True)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("PENDING", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
        ("PROCESSING", "RETRYING"),
        ("PROCESSING", "FAILED"),
        ("RETRYING", "PROCESSING"),
    ],
)
def test_the_designed_worker_transitions_are_allowed(current: str, target: str) -> None:
    assert can_transition(TaskStatus(current), TaskStatus(target))


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("PENDING", "COMPLETED"),
        ("PENDING", "FAILED"),
        ("RETRYING", "COMPLETED"),
        ("RETRYING", "FAILED"),
        ("PENDING", "RETRYING"),
    ],
)
def test_a_worker_cannot_skip_the_attempt(current: str, target: str) -> None:
    assert not can_transition(TaskStatus(current), TaskStatus(target))


def test_the_dead_letter_function_may_fail_any_task_that_is_not_terminal() -> None:
    for status in set(TaskStatus) - TERMINAL_STATUSES:
        assert can_transition(status, TaskStatus.FAILED, dead_letter=True)


def test_a_new_task_is_pending_with_no_attempts_and_the_policys_max() -> None:
    task = new_task("id", "hello", DEV, NOW)

    assert (task.status, task.attempts, task.maxAttempts, task.history) == (
        "PENDING",
        0,
        DEV.maxAttempts,
        [],
    )
    assert task.createdAt == task.updatedAt == "2026-11-29T06:00:00.000Z"


def test_timestamps_are_utc_iso_with_milliseconds_and_round_trip() -> None:
    moment = datetime(2026, 11, 29, 7, 0, 1, 234_000, tzinfo=UTC)
    local = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))

    assert to_iso(local) == "2026-11-29T07:00:01.234Z"
    assert from_iso(to_iso(local)) == moment


# -- backoff ----------------------------------------------------------------------------------


@given(policy=policies(jitter=False), attempt=st.integers(min_value=1, max_value=200))
def test_without_jitter_the_delay_is_the_formula(policy: TaskPolicy, attempt: int) -> None:
    expected = min(policy.maxDelaySeconds, policy.backoffBaseSeconds * 2 ** (attempt - 1))

    assert retry_delay_s(attempt, policy, random.Random(0)) == expected


@given(
    policy=policies(),
    attempt=st.integers(min_value=1, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_delay_is_never_negative_nor_above_the_cap(
    policy: TaskPolicy, attempt: int, seed: int
) -> None:
    delay_s = retry_delay_s(attempt, policy, random.Random(seed))

    assert 0 <= delay_s <= policy.maxDelaySeconds
    assert isinstance(delay_s, int)  # SQS visibility timeouts are whole seconds


@given(
    policy=policies(jitter=True),
    attempt=st.integers(min_value=1, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_with_full_jitter_the_delay_is_within_zero_and_the_formula(
    policy: TaskPolicy, attempt: int, seed: int
) -> None:
    ceiling_s = min(policy.maxDelaySeconds, policy.backoffBaseSeconds * 2 ** (attempt - 1))

    assert 0 <= retry_delay_s(attempt, policy, random.Random(seed)) <= ceiling_s


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = TaskPolicy(backoffBaseSeconds=100, maxDelaySeconds=900, jitter=True)
    rng = random.Random(11)
    draws = [retry_delay_s(2, policy, rng) for _ in range(5_000)]

    assert min(draws) <= 5 and max(draws) >= 195  # reaches both ends of [0, 200]
    assert abs(sum(draws) / len(draws) - 100) < 4  # uniform: mean at the middle


def test_the_dev_ladder_doubles_from_the_base_and_stops_at_the_cap() -> None:
    policy = TaskPolicy(backoffBaseSeconds=2, maxDelaySeconds=60)

    assert [backoff_ceiling_s(n, policy) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        backoff_ceiling_s(0, DEV)


# -- simulated work ---------------------------------------------------------------------------


@given(error_rate=st.floats(min_value=0, max_value=1), seed=st.integers(0, 2**32))
def test_success_always_succeeds_and_error_always_fails(error_rate: float, seed: int) -> None:
    rng = random.Random(seed)

    assert simulate_work(ALWAYS_SUCCEEDS, error_rate, rng).succeeded
    result = simulate_work(ALWAYS_FAILS, error_rate, rng)
    assert not result.succeeded and result.error


@pytest.mark.parametrize("error_rate", [0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
def test_ordinary_messages_fail_at_the_error_rate(error_rate: float) -> None:
    # GIVEN a seeded source and many attempts
    rng = random.Random(20261129)
    trials = 20_000

    failures = sum(not simulate_work("task", error_rate, rng).succeeded for _ in range(trials))

    # THEN the failure count is within 4 standard deviations of the binomial expectation
    tolerance = 4 * math.sqrt(trials * error_rate * (1 - error_rate))
    assert abs(failures - trials * error_rate) <= tolerance


def test_the_same_seed_gives_the_same_outcomes() -> None:
    def outcomes(seed: int) -> list[bool]:
        rng = random.Random(seed)
        return [simulate_work("x", 0.3, rng).succeeded for _ in range(200)]

    assert outcomes(5) == outcomes(5)
    assert outcomes(5) != outcomes(6)


# -- decisions --------------------------------------------------------------------------------


def test_a_success_completes_the_task() -> None:
    decision = decide_after_attempt(1, 2, WorkResult(True), DEV, random.Random(0), NOW)

    assert decision == Completed()


def test_a_failure_with_attempts_left_retries_after_the_backoff() -> None:
    decision = decide_after_attempt(1, 2, WorkResult(False, "boom"), DEV, random.Random(0), NOW)

    assert decision == RetryLater(retry_delay_s=2, next_attempt_at=NOW + timedelta(seconds=2))


@given(max_attempts=st.integers(min_value=1, max_value=50))
def test_the_last_failure_fails_the_task_for_good(max_attempts: int) -> None:
    decision = decide_after_attempt(
        max_attempts, max_attempts, WorkResult(False, "boom"), DEV, random.Random(0), NOW
    )

    assert decision == FailedForGood()


def test_no_task_is_lost_a_message_for_an_unknown_task_is_acknowledged() -> None:
    assert isinstance(plan_delivery(None, NOW, None), Acknowledge)


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_delivery_for_a_terminal_task_is_acknowledged(status: TaskStatus) -> None:
    assert isinstance(plan_delivery(task_in(status, attempts=1), NOW, None), Acknowledge)


def test_a_pending_task_is_claimed_for_attempt_one() -> None:
    assert plan_delivery(task_in(TaskStatus.PENDING), NOW, None) == Claim(attempt=1)


def test_a_retrying_task_that_is_due_is_claimed_for_the_next_attempt() -> None:
    task = task_in(TaskStatus.RETRYING, attempts=1, nextAttemptAt=to_iso(NOW))

    assert plan_delivery(task, NOW, None) == Claim(attempt=2)


def test_an_early_delivery_of_a_retrying_task_is_deferred_rounded_up() -> None:
    due = NOW + timedelta(seconds=7, milliseconds=200)
    task = task_in(TaskStatus.RETRYING, attempts=1, nextAttemptAt=to_iso(due))

    assert plan_delivery(task, NOW, None) == Defer(delay_s=8, reason="the retry is not due yet")


def test_a_processing_task_with_a_live_lease_is_deferred_until_the_lease_has_ended() -> None:
    """Never acknowledged: if that worker dies, this copy may be the task's only message."""
    task = task_in(TaskStatus.PROCESSING, attempts=1)

    action = plan_delivery(task, NOW, NOW + timedelta(seconds=12, milliseconds=300))

    assert isinstance(action, Defer)
    assert action.delay_s == 14  # rounded up, plus the margin past the lease
    assert "lease" in action.reason


# -- the reconciler's decision -----------------------------------------------------------------

GRACE_S = 60


@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED])
def test_a_finished_task_needs_no_recovery(status: TaskStatus) -> None:
    assert plan_recovery(task_in(status, attempts=1), None, 0, GRACE_S, NOW) == Finished()


def test_a_pending_task_is_overdue_only_a_grace_after_it_was_created() -> None:
    task = task_in(TaskStatus.PENDING, attempts=0)
    created = from_iso(task.createdAt)

    on_time = plan_recovery(task, None, 0, GRACE_S, created + timedelta(seconds=GRACE_S - 1))
    late = plan_recovery(task, None, 0, GRACE_S, created + timedelta(seconds=GRACE_S + 5))

    assert on_time == Recheck(next_check_at=created + timedelta(seconds=GRACE_S))
    assert isinstance(late, Recover) and late.overdue_s == GRACE_S + 5


def test_a_retrying_task_is_due_at_its_retry_and_a_processing_one_when_its_lease_ends() -> None:
    retry_at = NOW + timedelta(seconds=600)
    retrying = task_in(TaskStatus.RETRYING, attempts=1, nextAttemptAt=to_iso(retry_at))
    processing = task_in(TaskStatus.PROCESSING, attempts=1)
    lease = NOW + timedelta(seconds=30)

    assert plan_recovery(retrying, None, 0, GRACE_S, NOW) == Recheck(
        next_check_at=retry_at + timedelta(seconds=GRACE_S)
    )
    assert isinstance(
        plan_recovery(processing, lease, 0, GRACE_S, lease + timedelta(seconds=61)), Recover
    )
    assert isinstance(
        plan_recovery(processing, lease, 0, GRACE_S, lease + timedelta(seconds=59)), Recheck
    )


def test_a_task_recovered_again_and_again_is_looked_at_less_and_less_often() -> None:
    task = task_in(TaskStatus.PENDING, attempts=0)
    late = from_iso(task.createdAt) + timedelta(days=1)

    gaps = [
        (decision.next_check_at - late).total_seconds()
        for recoveries in range(12)
        if isinstance(decision := plan_recovery(task, None, recoveries, GRACE_S, late), Recover)
    ]

    assert gaps[:3] == [GRACE_S, 2 * GRACE_S, 4 * GRACE_S]
    assert gaps == sorted(gaps) and max(gaps) == MAX_RECHECK_S


# -- the dead-letter function's decision -------------------------------------------------------


def test_a_dead_letter_of_an_unfinished_task_goes_back_until_it_proves_poisonous() -> None:
    task = task_in(TaskStatus.PENDING, attempts=0)

    decisions = [
        plan_dead_letter(task, returns, sent_by_worker=False, reason="moved after 8 receives")
        for returns in range(MAX_DEAD_LETTER_RETURNS + 1)
    ]

    assert decisions[:-1] == [ReturnToQueue(returns=n + 1) for n in range(MAX_DEAD_LETTER_RETURNS)]
    assert isinstance(decisions[-1], FailDeadLettered)
    assert "without a new attempt" in decisions[-1].reason


def test_the_workers_own_dead_letter_of_a_failed_or_redriven_task_changes_nothing() -> None:
    failed = task_in(TaskStatus.FAILED, attempts=2)
    redriven = task_in(TaskStatus.RETRYING, attempts=2, redriveCount=1)

    assert isinstance(plan_dead_letter(failed, 0, sent_by_worker=True, reason="x"), Acknowledge)
    assert isinstance(plan_dead_letter(redriven, 0, sent_by_worker=True, reason="x"), Acknowledge)
    assert isinstance(plan_dead_letter(None, 0, sent_by_worker=False, reason="x"), Acknowledge)


def test_a_processing_task_whose_lease_ran_out_is_reclaimed_and_the_lost_attempt_counts() -> None:
    task = task_in(TaskStatus.PROCESSING, attempts=1)

    assert plan_delivery(task, NOW, NOW) == Claim(attempt=2, lost_attempt=1)


def test_a_lost_last_attempt_fails_the_task() -> None:
    task = task_in(TaskStatus.PROCESSING, attempts=2)

    assert plan_delivery(task, NOW, NOW - timedelta(seconds=1)) == FailLost(lost_attempt=2)


def test_the_record_model_rejects_unknown_fields_and_bad_attempt_numbers() -> None:
    with pytest.raises(ValueError):
        AttemptRecord(attempt=0, startedAt=to_iso(NOW))
    with pytest.raises(ValueError):
        TaskRecord.from_json({**task_in(TaskStatus.PENDING).to_json(), "surprise": 1})
