"""Each component's Args refuse what AWS would refuse, naming the bad input, before anything is
declared (the program's own settings never reach these limits; a new caller might)."""

from __future__ import annotations

import re

import pytest

from components.task_api import TaskApiArgs
from components.task_auth import TaskAuthArgs, domain_prefix
from components.task_function import QueueTrigger, TaskFunctionArgs
from components.task_queues import TaskQueuesArgs


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"visibility_timeout_s": -1, "max_receive_count": 7}, "visibility_timeout_s=-1"),
        ({"visibility_timeout_s": 43_201, "max_receive_count": 7}, "visibility_timeout_s=43201"),
        ({"visibility_timeout_s": 180, "max_receive_count": 0}, "max_receive_count=0"),
        ({"visibility_timeout_s": 180, "max_receive_count": 1001}, "max_receive_count=1001"),
    ],
)
def test_queue_args_outside_sqs_limits_are_refused(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TaskQueuesArgs(**fields)


def test_queue_args_at_sqs_limits_are_accepted() -> None:
    TaskQueuesArgs(visibility_timeout_s=43_200, max_receive_count=1000)
    TaskQueuesArgs(visibility_timeout_s=0, max_receive_count=1)


API = {
    "function_name": "f",
    "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
    "throttle_rate_limit": 20.0,
    "throttle_burst_limit": 40,
    "access_log_group_name": "/aws/apigateway/x",
    "log_retention_days": 7,
}


@pytest.mark.parametrize("stage", ["", "a/b", "x" * 129])
def test_api_args_refuse_a_stage_name_api_gateway_would_refuse(stage: str) -> None:
    with pytest.raises(ValueError, match="stage_name="):
        TaskApiArgs(stage_name=stage, **API)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 40), (20.0, 0)])
def test_api_args_refuse_throttling_that_admits_nothing(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must both be positive"):
        TaskApiArgs(
            stage_name="dev", **{**API, "throttle_rate_limit": rate, "throttle_burst_limit": burst}
        )


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"batch_size": 0}, "batch_size=0"), ({"maximum_concurrency": 1}, "maximum_concurrency=1")],
)
def test_queue_trigger_args_outside_lambda_limits_are_refused(fields: dict, named: str) -> None:
    args = {"queue_arn": "arn:aws:sqs:eu-west-1:1:q", "batch_size": 5, "maximum_concurrency": 5}
    with pytest.raises(ValueError, match=named):
        QueueTrigger(**{**args, **fields})


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"function_name": "x" * 65}, "function_name="), ({"handler": "nodot"}, "handler=")],
)
def test_function_args_refuse_a_name_or_handler_lambda_would_refuse(
    fields: dict, named: str
) -> None:
    args = {
        "function_name": "f",
        "service": "api",
        "handler": "functions.api.handler",
        "runtime": None,
        "permissions": (),
    }
    with pytest.raises(ValueError, match=named):
        TaskFunctionArgs(**{**args, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "named"),
    [
        ("", "lowercase letters"),
        ("Fault-Tasks-dev", "lowercase letters"),
        ("tasks_dev", "lowercase letters"),
        ("x" * 41, "1..40"),
        ("my-aws-tasks", "'aws'"),
        ("cognito-tasks", "'cognito'"),
    ],
)
def test_auth_args_refuse_a_name_prefix_cognito_would_refuse_as_a_domain(
    prefix: str, named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        TaskAuthArgs(name_prefix=prefix, region="eu-west-1")


def test_the_domain_prefix_ends_in_the_pool_ids_own_part() -> None:
    assert domain_prefix("fault-tolerant-tasks-dev", "eu-west-1_AbC123xyz") == (
        "fault-tolerant-tasks-dev-abc123xyz"
    )
