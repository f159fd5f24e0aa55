"""Typed policy statements refuse anything broader than exact actions on exact resources."""

from __future__ import annotations

import pytest

from components.iam import PolicyError, PolicyStatement


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
