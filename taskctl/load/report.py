"""Turn the records a load run collected into its report: a plain dict, also the `--report` JSON.

Pure: takes what the client observed, returns numbers. Two latency figures, kept apart:

- `latencySeconds`: from the records' own timestamps, `createdAt` -> `completedAt`/`failedAt`
  (server clocks; the API function stamps the first, the worker or dead-letter function the last).
- `clientLatencySeconds`: from the client's monotonic clock, submit sent -> the poll that first saw
  the task terminal; an upper bound inflated by the polling interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from functions.policy import TaskPolicy
from taskctl.load import stats
from taskctl.load.client import PollStats, TrackedTask

REPORT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LoadPolicy:
    """The policy a run is judged against, and where it came from (shown to the user)."""

    max_attempts: int
    error_rate: float
    source: str
    stack_policy: TaskPolicy | None = None  # the whole retry policy, when it comes from a stack


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def build_report(
    *,
    run_id: str,
    url: str,
    policy: LoadPolicy,
    tasks: Sequence[TrackedTask],
    started_at_s: float,
    finished_at_s: float,
    poll_stats: PollStats,
    confidence: float,
) -> dict:
    """The run's figures (`tasks`: every task submitted); `passed` is False when tasks are
    unfinished or the rate is off."""
    submitted = len(tasks)
    terminal = [task for task in tasks if task.terminal]
    ended = Counter(task.record["status"] for task in terminal)
    completed, failed = ended["COMPLETED"], ended["FAILED"]
    unfinished = submitted - len(terminal)
    expected_failed = stats.expected_failed_fraction(policy.error_rate, policy.max_attempts)

    check = None
    if terminal:
        check = stats.check_failure_rate(
            failed=failed,
            trials=len(terminal),
            expected_fraction=expected_failed,
            confidence=confidence,
        )

    histogram = stats.attempts_histogram(
        (int(task.record.get("attempts", 0)) for task in terminal),
        error_rate=policy.error_rate,
        max_attempts=policy.max_attempts,
    )
    record_latencies = [
        latency for task in terminal if (latency := stats.record_latency_s(task.record)) is not None
    ]
    client_latencies = [task.terminal_seen_at_s - task.submitted_at_s for task in terminal]
    gaps = [gap for task in terminal for gap in stats.retry_gaps(task.record)]
    last_terminal_s = max((task.terminal_seen_at_s for task in terminal), default=finished_at_s)

    gap_summary = stats.retry_gap_summary(gaps)
    return {
        "reportVersion": REPORT_VERSION,
        "url": url,
        # Every message of the run reads `load <runId> task <i>/<N>`: find them in the table.
        "runId": run_id,
        "policy": {
            "maxAttempts": policy.max_attempts,
            "errorRate": policy.error_rate,
            "source": policy.source,
        },
        "submitted": submitted,
        "completed": completed,
        "failed": failed,
        "unfinished": unfinished,
        "completedFraction": _fraction(completed, submitted),
        "failedFraction": _fraction(failed, submitted),
        "unfinishedFraction": _fraction(unfinished, submitted),
        "expectedFailedFraction": expected_failed,
        # Over terminal tasks: an unfinished task has no outcome yet.
        "observedFailedFraction": check.observed_fraction if check else None,
        "failedAcceptance": (
            {
                "low": check.accepted_low,
                "high": check.accepted_high,
                "lowFraction": check.accepted_low / check.trials,
                "highFraction": check.accepted_high / check.trials,
                "confidence": confidence,
                "method": "exact binomial test, equal tails, FAILED count of terminal tasks",
            }
            if check
            else None
        ),
        "failedFractionConsistent": check.consistent if check else None,
        "attempts": {
            str(bucket.attempts): {"observed": bucket.observed, "expected": bucket.expected}
            for bucket in histogram
        },
        "latencySeconds": {
            **stats.latency_summary(record_latencies),
            "source": "record timestamps: createdAt -> completedAt/failedAt",
            "count": len(record_latencies),
        },
        "clientLatencySeconds": {
            **stats.latency_summary(client_latencies),
            "source": "client clock: submit sent -> first poll that saw the task terminal",
        },
        "retryGapSeconds": gap_summary,
        "durationSeconds": finished_at_s - started_at_s,
        "throughputTasksPerSecond": (
            len(terminal) / (last_terminal_s - started_at_s)
            if terminal and last_terminal_s > started_at_s
            else None
        ),
        "polling": {
            "rounds": poll_stats.rounds,
            "requests": poll_stats.requests,
            "notFound": poll_stats.not_found,
            "transientErrors": poll_stats.transient_errors,
            "errorsByStatus": {str(code): n for code, n in poll_stats.errors_by_status.items()},
        },
        "warnings": _warnings(tasks, policy),
        "verdict": _verdict(check, unfinished, gap_summary["violations"]),
        "passed": unfinished == 0 and check is not None and check.consistent,
    }


def _verdict(check: stats.FailureRateCheck | None, unfinished: int, early_retries: int) -> str:
    parts = []
    if unfinished:
        parts.append(f"{unfinished} task(s) did not finish before the timeout")
    if check is None:
        parts.append("no task finished, so the failure rate cannot be judged")
    elif check.consistent:
        parts.append(
            f"the FAILED fraction agrees with the policy at {check.confidence:.0%} confidence"
        )
    else:
        direction = "above" if check.failed > check.accepted_high else "below"
        parts.append(
            f"the FAILED fraction is off: {check.failed} of {check.trials} "
            f"({check.observed_fraction:.2%}) lies {direction} the {check.confidence:.0%} "
            f"acceptance region {check.accepted_low}..{check.accepted_high} of the expected "
            f"{check.expected_fraction:.2%}"
        )
    if early_retries:
        # Reported, not part of the exit status: the issue defines that by the two checks above.
        parts.append(f"{early_retries} retry(ies) started before the delay their record promised")
    return "; ".join(parts)


def _warnings(tasks: Sequence[TrackedTask], policy: LoadPolicy) -> list[str]:
    """Disagreements between the records and the policy the run is judged against."""
    warnings = []
    record_limits = {task.record.get("maxAttempts") for task in tasks if task.record}
    other_limits = sorted(record_limits - {None, policy.max_attempts})
    if other_limits:
        warnings.append(
            f"the deployment's records say maxAttempts={', '.join(map(str, other_limits))} but "
            f"the run is judged against maxAttempts={policy.max_attempts} ({policy.source})"
        )
    over_limit = [
        task.task_id
        for task in tasks
        if task.record and int(task.record.get("attempts", 0)) > policy.max_attempts
    ]
    if over_limit:
        warnings.append(
            f"{len(over_limit)} task(s) used more than maxAttempts={policy.max_attempts} "
            f"attempts, e.g. {over_limit[0]}"
        )
    return warnings
