"""What a load run's task records say about the retry policy: pure functions, no I/O.

The model (DESIGN §3): every attempt of an ordinary task fails independently with probability
`errorRate`, and a task gets at most `maxAttempts` attempts. So

- the chance a task ends FAILED is `errorRate ** maxAttempts`;
- its attempt count is geometric truncated at `maxAttempts`:
  P(k) = errorRate**(k-1) * (1 - errorRate) for k < maxAttempts,
  P(maxAttempts) = errorRate**(maxAttempts-1).

The verdict is an exact binomial test: the FAILED count of N terminal tasks is consistent with the
policy when it lies in the acceptance region of Binomial(N, errorRate**maxAttempts), the counts
that leave at most (1 - confidence) / 2 of the probability in each tail. A correct deployment
therefore fails the check at most 1 - confidence of the time, for any N and any rate; an interval
from a normal approximation (Wilson's, say) only approaches that bound, and least for the small
FAILED fractions of this system (9 % in dev, 0.2 % in prod). The load command and the end-to-end
tests judge with this one test.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

DEFAULT_CONFIDENCE = 0.99
# Timestamps in task records are ISO 8601 with millisecond precision at best; a gap that looks
# shorter than promised by less than this is rounding, not an early retry.
RETRY_GAP_TOLERANCE_S = 0.002


# -- the policy's predictions --------------------------------------------------------------------


def expected_failed_fraction(error_rate: float, max_attempts: int) -> float:
    """Probability an ordinary task ends FAILED: every one of its attempts failed."""
    _check_policy(error_rate, max_attempts)
    return error_rate**max_attempts


def expected_attempts_distribution(error_rate: float, max_attempts: int) -> dict[int, float]:
    """P(a terminal task used exactly k attempts), k = 1..max_attempts; the values sum to 1."""
    _check_policy(error_rate, max_attempts)
    distribution = {k: error_rate ** (k - 1) * (1.0 - error_rate) for k in range(1, max_attempts)}
    distribution[max_attempts] = error_rate ** (max_attempts - 1)
    return distribution


def _check_policy(error_rate: float, max_attempts: int) -> None:
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error rate {error_rate} is not a probability in [0, 1]")
    if max_attempts < 1:
        raise ValueError(f"max attempts {max_attempts} must be at least 1")


# -- the binomial check ------------------------------------------------------------------------


def binomial_acceptance(
    trials: int, probability: float, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[int, int]:
    """The counts [low, high] that X ~ Binomial(trials, probability) falls in with probability at
    least `confidence`: P(X < low) <= (1 - confidence) / 2 and P(X > high) <= (1 - confidence) / 2,
    each tail as large as that allows (equal-tailed, exact)."""
    if trials <= 0:
        raise ValueError("an acceptance region needs at least one trial")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} is not in [0, 1]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must lie strictly between 0 and 1")
    tail_mass = (1.0 - confidence) / 2.0
    pmf = _binomial_pmf(trials, probability)
    # A tail is the counts, from either end, whose running total stays within its share.
    below = sum(1 for tail in itertools.accumulate(pmf) if tail <= tail_mass)
    above = sum(1 for tail in itertools.accumulate(reversed(pmf)) if tail <= tail_mass)
    return below, trials - above


def _binomial_pmf(trials: int, probability: float) -> list[float]:
    """P(X = k) for k = 0..trials, in log space (math.comb(trials, k) overflows a float)."""
    if probability in (0.0, 1.0):
        certain = 0 if probability == 0.0 else trials
        return [1.0 if k == certain else 0.0 for k in range(trials + 1)]
    log_p, log_q = math.log(probability), math.log1p(-probability)
    log_n = math.lgamma(trials + 1)

    def log_pmf(k: int) -> float:
        log_comb = log_n - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
        return log_comb + k * log_p + (trials - k) * log_q

    return [math.exp(log_pmf(k)) for k in range(trials + 1)]


@dataclass(frozen=True, kw_only=True)
class FailureRateCheck:
    """Observed FAILED count against the policy's prediction."""

    trials: int
    failed: int
    expected_fraction: float
    accepted_low: int  # the acceptance region of the FAILED count
    accepted_high: int
    confidence: float

    @property
    def observed_fraction(self) -> float:
        return self.failed / self.trials

    @property
    def consistent(self) -> bool:
        """True when the FAILED count lies in the acceptance region of the expected fraction."""
        return self.accepted_low <= self.failed <= self.accepted_high


def check_failure_rate(
    *, failed: int, trials: int, expected_fraction: float, confidence: float = DEFAULT_CONFIDENCE
) -> FailureRateCheck:
    """Judge `failed` of `trials` terminal tasks against `expected_fraction`."""
    if not 0 <= failed <= trials:
        raise ValueError(f"failed={failed} must lie in [0, trials={trials}]")
    low, high = binomial_acceptance(trials, expected_fraction, confidence)
    return FailureRateCheck(
        trials=trials,
        failed=failed,
        expected_fraction=expected_fraction,
        accepted_low=low,
        accepted_high=high,
        confidence=confidence,
    )


# -- distributions -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics.

    Same definition as numpy's default ("linear"), so figures can be checked with it.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside [0, 100]")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (seconds); None for each when there is nothing to measure."""
    return {f"p{q}": percentile(latencies_s, q) if latencies_s else None for q in (50, 95, 99)}


@dataclass(frozen=True, kw_only=True)
class AttemptsBucket:
    attempts: int
    observed: int
    expected: float


def attempts_histogram(
    observed_attempts: Iterable[int], *, error_rate: float, max_attempts: int
) -> list[AttemptsBucket]:
    """Terminal tasks per attempt count, observed against the truncated-geometric expectation.

    Counts above `max_attempts` get their own buckets (expected 0): they mean the worker broke
    its attempt limit, which the table must show rather than hide.
    """
    counts = Counter(observed_attempts)
    total = counts.total()
    distribution = expected_attempts_distribution(error_rate, max_attempts)
    buckets = sorted(set(distribution) | set(counts))
    return [
        AttemptsBucket(attempts=k, observed=counts[k], expected=total * distribution.get(k, 0.0))
        for k in buckets
    ]


# -- record timestamps -------------------------------------------------------------------------


def parse_timestamp(value: object) -> datetime | float | None:
    """A record timestamp as an aware datetime (ISO 8601) or epoch seconds; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value))


def seconds_between(start: object, end: object) -> float | None:
    """`end - start` in seconds for two record timestamps; None when either is missing."""
    start_at, end_at = parse_timestamp(start), parse_timestamp(end)
    if start_at is None or end_at is None:
        return None
    if isinstance(start_at, float) and isinstance(end_at, float):
        return end_at - start_at
    if isinstance(start_at, datetime) and isinstance(end_at, datetime):
        return (end_at - start_at).total_seconds()
    raise ValueError(f"cannot subtract timestamps of different kinds: {start!r}, {end!r}")


def record_latency_s(record: Mapping[str, object]) -> float | None:
    """Submit-to-terminal time from the record itself: createdAt -> completedAt / failedAt."""
    finished = record.get("completedAt") or record.get("failedAt")
    return seconds_between(record.get("createdAt"), finished)


@dataclass(frozen=True, kw_only=True)
class RetryGap:
    """One wait between attempt n's end and attempt n+1's start, against its promise."""

    task_id: str
    after_attempt: int
    promised_s: float
    measured_s: float

    @property
    def slack_s(self) -> float:
        return self.measured_s - self.promised_s


def retry_gaps(record: Mapping[str, object]) -> list[RetryGap]:
    """Gaps between consecutive attempts in a record's history (finishedAt -> next startedAt)."""
    history = sorted(record.get("history") or [], key=lambda entry: entry.get("attempt", 0))
    gaps = []
    for previous, following in itertools.pairwise(history):
        measured = seconds_between(previous.get("finishedAt"), following.get("startedAt"))
        promised = previous.get("retryDelaySeconds")
        if measured is None or promised is None:
            continue
        gaps.append(
            RetryGap(
                task_id=str(record.get("taskId", "")),
                after_attempt=int(previous.get("attempt", 0)),
                promised_s=float(promised),
                measured_s=measured,
            )
        )
    return gaps


def retry_gap_summary(gaps: Sequence[RetryGap]) -> dict[str, object]:
    """Promised vs measured delays; a violation is a retry that started early."""
    violations = [gap for gap in gaps if gap.slack_s < -RETRY_GAP_TOLERANCE_S]
    return {
        "count": len(gaps),
        "promised": latency_summary([gap.promised_s for gap in gaps]),
        "measured": latency_summary([gap.measured_s for gap in gaps]),
        "minSlackSeconds": min((gap.slack_s for gap in gaps), default=None),
        "maxSlackSeconds": max((gap.slack_s for gap in gaps), default=None),
        "violations": len(violations),
        "violationExamples": [
            {
                "taskId": gap.task_id,
                "afterAttempt": gap.after_attempt,
                "promisedSeconds": gap.promised_s,
                "measuredSeconds": gap.measured_s,
            }
            for gap in violations[:5]
        ],
    }
