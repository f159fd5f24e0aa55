"""The load report's statistics: predictions, the exact binomial check, percentiles, retry gaps."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskctl.load import stats


def test_expected_failed_fraction_is_the_chance_every_attempt_fails():
    # The dev stack: two attempts at 30 % each.
    assert stats.expected_failed_fraction(0.3, 2) == pytest.approx(0.3 * 0.3)
    assert stats.expected_failed_fraction(0.5, 3) == pytest.approx(0.125)
    assert stats.expected_failed_fraction(0.0, 4) == 0.0


@given(
    error_rate=st.floats(min_value=0.0, max_value=1.0),
    max_attempts=st.integers(min_value=1, max_value=20),
)
def test_attempts_distribution_sums_to_one_and_ends_with_the_failure_tail(error_rate, max_attempts):
    distribution = stats.expected_attempts_distribution(error_rate, max_attempts)
    assert sorted(distribution) == list(range(1, max_attempts + 1))
    assert math.fsum(distribution.values()) == pytest.approx(1.0)
    # Reaching the last attempt means every earlier one failed.
    assert distribution[max_attempts] == pytest.approx(error_rate ** (max_attempts - 1))


def test_attempts_distribution_matches_a_simulation_of_the_policy():
    # GIVEN the policy simulated directly: attempts until a success or the limit
    rng = random.Random(5)
    error_rate, max_attempts, tasks = 0.4, 3, 20_000
    counts = dict.fromkeys(range(1, max_attempts + 1), 0)
    for _ in range(tasks):
        attempts = 1
        while attempts < max_attempts and rng.random() < error_rate:
            attempts += 1
        counts[attempts] += 1
    # THEN the closed form agrees within sampling error (5 standard errors)
    for k, p in stats.expected_attempts_distribution(error_rate, max_attempts).items():
        standard_error = math.sqrt(p * (1 - p) / tasks)
        assert abs(counts[k] / tasks - p) < 5 * standard_error


def test_invalid_policy_is_refused_with_the_bad_value():
    with pytest.raises(ValueError, match=r"1\.5"):
        stats.expected_failed_fraction(1.5, 2)
    with pytest.raises(ValueError, match="at least 1"):
        stats.expected_attempts_distribution(0.3, 0)


def _pmf(n: int, p: float) -> list[float]:
    """The textbook binomial pmf (exact integers for the coefficients; fine for small n)."""
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


@given(
    trials=st.integers(min_value=1, max_value=400),
    probability=st.floats(min_value=0.0, max_value=1.0),
    confidence=st.floats(min_value=0.5, max_value=0.9999),
)
def test_binomial_acceptance_leaves_at_most_its_share_in_each_tail_and_no_less(
    trials, probability, confidence
):
    low, high = stats.binomial_acceptance(trials, probability, confidence)
    pmf = _pmf(trials, probability)
    tail = (1 - confidence) / 2
    assert 0 <= low <= high <= trials
    # each tail outside the region holds at most its share ...
    assert math.fsum(pmf[:low]) <= tail + 1e-9
    assert math.fsum(pmf[high + 1 :]) <= tail + 1e-9
    # ... and is as large as that allows: one more count would exceed it
    assert math.fsum(pmf[: low + 1]) > tail - 1e-9
    assert math.fsum(pmf[high:]) > tail - 1e-9


def test_binomial_acceptance_of_the_dev_policy_covers_the_mean_and_excludes_the_extremes():
    low, high = stats.binomial_acceptance(200, 0.09, confidence=0.9999)
    assert low < 200 * 0.09 < high
    assert low > 0 and high < 200 * 0.3


def test_binomial_acceptance_of_a_certain_outcome_is_that_outcome():
    assert stats.binomial_acceptance(50, 0.0) == (0, 0)
    assert stats.binomial_acceptance(50, 1.0) == (50, 50)


def test_binomial_acceptance_of_a_large_run_does_not_overflow():
    low, high = stats.binomial_acceptance(100_000, 0.09, confidence=0.99)
    assert low < 9_000 < high
    assert 400 < high - low < 500  # 2 x 2.58 standard deviations of ~90.5 each: ~467


def test_a_correct_deployment_fails_the_check_at_most_one_minus_confidence_of_the_time():
    # GIVEN many simulated runs of 300 tasks at the dev stack's FAILED rate (9 %)
    rng = random.Random(11)
    true_rate, trials, runs = 0.09, 300, 2_000
    rejected = 0
    for _ in range(runs):
        failed = sum(rng.random() < true_rate for _ in range(trials))
        check = stats.check_failure_rate(
            failed=failed, trials=trials, expected_fraction=true_rate, confidence=0.95
        )
        rejected += not check.consistent
    # THEN at most ~5 % of them are false alarms (exact test: the bound holds, conservatively)
    assert rejected / runs <= 0.06


def test_failure_rate_check_flags_a_rate_far_from_the_policy():
    # GIVEN 300 terminal tasks of which 90 failed, but the policy expects 9 %
    check = stats.check_failure_rate(failed=90, trials=300, expected_fraction=0.09)
    assert not check.consistent
    assert check.observed_fraction == pytest.approx(0.3)
    # AND a run near the expectation passes
    assert stats.check_failure_rate(failed=28, trials=300, expected_fraction=0.09).consistent


def test_percentile_interpolates_linearly_between_order_statistics():
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1..4: position (n-1)q
    assert stats.percentile(values, 50) == pytest.approx(2.5)
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 95) == pytest.approx(3.85)
    assert stats.percentile([7.0], 99) == 7.0


def test_latency_summary_of_nothing_is_explicitly_empty():
    assert stats.latency_summary([]) == {"p50": None, "p95": None, "p99": None}


def test_attempts_histogram_counts_observed_and_scales_expected_to_the_total():
    observed = [1] * 70 + [2] * 30
    buckets = stats.attempts_histogram(observed, error_rate=0.3, max_attempts=2)
    assert [(b.attempts, b.observed) for b in buckets] == [(1, 70), (2, 30)]
    assert buckets[0].expected == pytest.approx(100 * 0.7)
    assert buckets[1].expected == pytest.approx(100 * 0.3)


def test_attempts_histogram_shows_tasks_over_the_limit_instead_of_hiding_them():
    buckets = stats.attempts_histogram([1, 2, 3], error_rate=0.3, max_attempts=2)
    assert buckets[-1].attempts == 3
    assert buckets[-1].observed == 1
    assert buckets[-1].expected == 0.0


def test_record_latency_runs_from_creation_to_the_terminal_timestamp():
    completed = {
        "createdAt": "2026-11-29T06:00:00.000+00:00",
        "completedAt": "2026-11-29T06:00:01.250Z",
    }
    failed = {"createdAt": 1_000.0, "failedAt": 1_003.5}
    assert stats.record_latency_s(completed) == pytest.approx(1.25)
    assert stats.record_latency_s(failed) == pytest.approx(3.5)
    assert stats.record_latency_s({"createdAt": "2026-11-29T06:00:00Z"}) is None


def _history_record(gap_s: float, promised_s: float) -> dict:
    return {
        "taskId": "t-1",
        "history": [
            {"attempt": 2, "startedAt": 10.0 + 0.1 + gap_s, "finishedAt": 10.2 + gap_s},
            {"attempt": 1, "startedAt": 10.0, "finishedAt": 10.1, "retryDelaySeconds": promised_s},
        ],
    }


def test_retry_gap_measures_from_one_attempts_end_to_the_next_ones_start():
    (gap,) = stats.retry_gaps(_history_record(gap_s=2.5, promised_s=2.0))
    assert gap.after_attempt == 1
    assert gap.measured_s == pytest.approx(2.5)
    assert gap.slack_s == pytest.approx(0.5)


def test_retry_gap_summary_counts_retries_that_started_early():
    gaps = stats.retry_gaps(_history_record(gap_s=1.0, promised_s=2.0)) + stats.retry_gaps(
        _history_record(gap_s=2.2, promised_s=2.0)
    )
    summary = stats.retry_gap_summary(gaps)
    assert summary["count"] == 2
    assert summary["violations"] == 1
    assert summary["minSlackSeconds"] == pytest.approx(-1.0)
    assert summary["violationExamples"][0]["promisedSeconds"] == 2.0
