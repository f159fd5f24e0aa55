"""The custom metrics the functions emit, named once: the handlers emit them, and the monitoring
component (`components/monitoring.py`) alarms on them and graphs them.

Plain constants, no imports: this module ships in the bundle and the Pulumi program imports it.
"""

# POWERTOOLS_METRICS_NAMESPACE: the program sets it for every function.
METRICS_NAMESPACE = "FaultTolerantTasks"
# Dimensions of every custom metric: Powertools adds the service (POWERTOOLS_SERVICE_NAME), the
# handlers add the stack. Never a task id: a metric per task would cost a fortune, alarm on nothing.
SERVICE_DIMENSION = "service"
STACK_DIMENSION = "stack"
# functions.dead_letter: one per task it finds or makes FAILED (and per unreadable dead letter).
DEAD_LETTERED_METRIC = "DeadLetteredTasks"
# functions.reconciler: overdue tasks it re-enqueued, on every pass (zeros included).
RECOVERED_METRIC = "RecoveredTasks"
