"""The schedule trigger's rate expression and its limits (the graph tests cover its wiring)."""

from __future__ import annotations

import pytest

from components.task_function import ScheduleTrigger


@pytest.mark.parametrize(
    ("minutes", "expression"),
    [(1, "rate(1 minute)"), (5, "rate(5 minutes)"), (1440, "rate(1440 minutes)")],
)
def test_schedule_expression_uses_eventbridge_rate_grammar(minutes, expression):
    # EventBridge refuses "rate(1 minutes)" and "rate(5 minute)": the unit agrees with the count.
    assert ScheduleTrigger(interval_minutes=minutes).expression == expression


@pytest.mark.parametrize("minutes", [0, -1, 1441])
def test_schedule_interval_outside_a_minute_to_a_day_is_refused_naming_it(minutes):
    with pytest.raises(ValueError, match=rf"interval_minutes={minutes} is outside 1\.\.1440"):
        ScheduleTrigger(interval_minutes=minutes)
