"""What `local up` and `local outputs` print after the outputs: the lines to try the API with,
with a token when the stack authenticates, and a loud warning when it is open."""

from __future__ import annotations

import pytest

from taskctl.local import cli

ENDPOINT = "http://abc12345.execute-api.localhost:4566/dev/tasks"


def printed(capsys: pytest.CaptureFixture[str], outputs: dict) -> str:
    cli._print_outputs(
        {"apiUrl": ENDPOINT.removesuffix("/tasks"), "tasksEndpoint": ENDPOINT, **outputs}, "dev"
    )
    return capsys.readouterr().out


def test_an_authenticating_stack_prints_how_to_get_a_token_and_curl_with_it(capsys) -> None:
    shown = printed(capsys, {"apiAuth": "jwt", "appClientId": "7fclient"})

    assert "TOKEN=$(python -m taskctl token --stack dev)" in shown
    assert f'curl -i -X POST {ENDPOINT} -H "Authorization: Bearer $TOKEN"' in shown
    assert "OPEN" not in shown


def test_an_open_stack_says_loudly_that_it_is_open(capsys) -> None:
    shown = printed(capsys, {"apiAuth": "none"})

    assert "OPEN API (apiAuth: none)" in shown
    assert "anyone who reaches this URL" in shown
    assert "Authorization" not in shown
    assert f"curl -i -X POST {ENDPOINT} -H 'Content-Type: application/json'" in shown
