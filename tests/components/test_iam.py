"""Typed policy statements refuse anything broader than exact actions on exact resources."""

from __future__ import annotations

import pytest

from components.iam import PolicyError, PolicyStatement, index_query, table_access


@pytest.mark.parametrize("action", ["sqs:*", "*", "dynamodb:Get*", "GetItem"])
def test_statement_rejects_wildcard_or_unqualified_actions_naming_them(action):
    with pytest.raises(PolicyError, match=f"action '{action}'".replace("*", r"\*")):
        PolicyStatement(sid="Bad", actions=(action,), resources=("arn:aws:sqs:eu-west-1:1:q",))


def test_statement_rejects_resource_star_and_empty_lists():
    with pytest.raises(PolicyError, match=r"Resource '\*'"):
        PolicyStatement(sid="Bad", actions=("sqs:SendMessage",), resources=("*",))
    with pytest.raises(PolicyError, match="names no resource"):
        PolicyStatement(sid="Bad", actions=("sqs:SendMessage",), resources=())
    with pytest.raises(PolicyError, match="allows no action"):
        PolicyStatement(sid="Bad", actions=(), resources=("arn:aws:sqs:eu-west-1:1:q",))


def test_statement_renders_the_iam_json_shape():
    statement = PolicyStatement(
        sid="Send", actions=("sqs:SendMessage",), resources=("arn:aws:sqs:eu-west-1:1:q",)
    )
    assert statement.to_document() == {
        "Sid": "Send",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": ["arn:aws:sqs:eu-west-1:1:q"],
    }


TABLE_ARN = "arn:aws:dynamodb:eu-west-1:1:table/tasks"


def test_table_access_grants_exactly_the_named_operations_on_the_table_only():
    statement = table_access(TABLE_ARN, "GetItem", "UpdateItem")
    assert statement.to_document() == {
        "Sid": "TaskTable",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "Resource": [TABLE_ARN],
    }


def test_table_access_with_no_operation_is_refused():
    with pytest.raises(PolicyError, match="allows no action"):
        table_access(TABLE_ARN)


def test_index_query_allows_only_query_on_the_index():
    index_arn = f"{TABLE_ARN}/index/by-check-time"
    assert index_query(index_arn).to_document() == {
        "Sid": "CheckIndex",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": [index_arn],
    }


def test_table_access_refuses_a_wildcard_operation():
    with pytest.raises(PolicyError, match=r"operation '\*' must be a bare DynamoDB operation"):
        table_access(TABLE_ARN, "*")


def test_table_access_refuses_an_operation_already_prefixed_with_the_service():
    """`dynamodb:dynamodb:GetItem` would pass IAM's syntax and grant nothing."""
    with pytest.raises(PolicyError, match=r"operation 'dynamodb:GetItem' must be a bare"):
        table_access(TABLE_ARN, "dynamodb:GetItem")
