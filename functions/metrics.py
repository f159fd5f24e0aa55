"""The custom metrics the functions emit, named once: the handlers emit them, and the monitoring
component (`components/monitoring.py`) alarms on them and graphs them.

Two kinds, kept apart on purpose:
- business outcomes, which page nobody: `CompletedTasks` and `FailedTasks` (a task that used up its
  attempts, e.g. one whose message says ERROR, is a result the system delivered, not a fault);
- system faults, each alarmed: `WorkerRecordExceptions`, `PoisonMessages`, `RecoveredTasks`.

No third-party imports: this module ships in the bundle and the Pulumi program imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from functions.runtime import FunctionSettings

# POWERTOOLS_METRICS_NAMESPACE: the program sets it for every function.
METRICS_NAMESPACE = "FaultTolerantTasks"
# Dimensions of every custom metric: Powertools adds the service (POWERTOOLS_SERVICE_NAME), the
# handlers add the stack. Never a task id: a metric per task would cost a fortune, alarm on nothing.
SERVICE_DIMENSION = "service"
STACK_DIMENSION = "stack"
COUNT_UNIT = "Count"

# -- functions.worker: per invocation, zeros included ------------------------------------------
# Tasks the worker finished COMPLETED.
COMPLETED_TASKS_METRIC = "CompletedTasks"
# Tasks the worker made FAILED because their attempts were used up (the last one failed or was
# lost): a business outcome. The dashboard graphs FailedTasks / (CompletedTasks + FailedTasks).
FAILED_TASKS_METRIC = "FailedTasks"
# Records whose handling raised an unexpected exception (an AWS error, a record it cannot parse,
# a bug). Not the deliberate "not yet" failures that keep a message hidden until its retry or a
# lease is due. Powertools' partial batch response never raises, so Lambda's `Errors` metric never
# sees these: without this count a broken worker looks healthy.
WORKER_RECORD_EXCEPTIONS_METRIC = "WorkerRecordExceptions"
WORKER_COUNTS = (COMPLETED_TASKS_METRIC, FAILED_TASKS_METRIC, WORKER_RECORD_EXCEPTIONS_METRIC)

# -- functions.dead_letter: per invocation, zeros included -------------------------------------
# Dead letters no worker could ever finish: the dead-letter function made the task FAILED itself
# (its message kept reaching the DLQ through the redrive policy without a new attempt), or the
# body was not a task message at all. In a healthy system the worker ends every task.
POISON_MESSAGES_METRIC = "PoisonMessages"
# Of those, the ones whose body was not a task message.
UNREADABLE_DEAD_LETTERS_METRIC = "UnreadableDeadLetters"
# Dead letters of unfinished tasks sent back to the main queue (receives are not attempts).
RETURNED_DEAD_LETTERS_METRIC = "ReturnedDeadLetters"
DEAD_LETTER_COUNTS = (
    POISON_MESSAGES_METRIC,
    UNREADABLE_DEAD_LETTERS_METRIC,
    RETURNED_DEAD_LETTERS_METRIC,
)

# -- functions.reconciler: per pass, zeros included --------------------------------------------
# Overdue tasks it re-enqueued: something lost a task's progress.
RECOVERED_TASKS_METRIC = "RecoveredTasks"
OLDEST_OVERDUE_METRIC = "OldestOverdueTaskAgeSeconds"


class MetricsSink(Protocol):
    """What the handlers use of Powertools' `Metrics` (kept as a protocol: no import here)."""

    namespace: str | None
    service: str | None

    def add_dimension(self, name: str, value: str) -> None: ...

    def add_metric(self, name: str, unit: str, value: float) -> None: ...


def start_invocation(
    metrics: MetricsSink, settings: FunctionSettings, counts: tuple[str, ...] = ()
) -> None:
    """Label this invocation's metrics (namespace, service, stack) from the runtime's one read of
    the environment, and put a 0 into each of `counts`.

    The zeros make every invocation report every count, so the alarms and the failure-rate graph
    see a steady series rather than gaps (and Powertools never flushes an empty metric set).
    """
    metrics.namespace = settings.metrics_namespace
    metrics.service = settings.service
    metrics.add_dimension(name=STACK_DIMENSION, value=settings.stack)
    for name in counts:
        metrics.add_metric(name=name, unit=COUNT_UNIT, value=0)
