"""The queue message format (pure)."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.queue import UnreadableMessage, parse_task_message, task_message_body


@given(task_id=st.uuids())
def test_a_task_message_names_its_task_and_parses_back(task_id: uuid.UUID) -> None:
    body = task_message_body(str(task_id))

    assert json.loads(body) == {"taskId": str(task_id)}
    assert parse_task_message(body) == str(task_id)


def test_an_upper_case_id_parses_to_the_stored_lower_case_form() -> None:
    task_id = "3F0C9A52-4E0B-4A8E-9A6E-1C2D3E4F5A6B"

    assert parse_task_message(json.dumps({"taskId": task_id})) == task_id.lower()


@pytest.mark.parametrize(
    "body", ["", "garbage", "[]", "{}", '{"taskId": null}', '{"taskId": "x"}', '{"id": "1"}']
)
def test_anything_else_is_unreadable_and_says_so(body: str) -> None:
    with pytest.raises(UnreadableMessage, match="taskId"):
        parse_task_message(body)


def test_an_unreadable_huge_body_is_not_echoed_whole() -> None:
    with pytest.raises(UnreadableMessage) as caught:
        parse_task_message("x" * 100_000)

    assert len(str(caught.value)) < 400
