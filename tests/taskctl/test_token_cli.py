"""`python -m taskctl token`: a deployed stack's app client (Cognito on moto, a token endpoint on
127.0.0.1), an open local stack, and the error paths."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
import typer
from botocore.stub import Stubber
from typer.testing import CliRunner

from taskctl.token.cli import token

ISSUED = "header.payload.signature"


@pytest.fixture
def run_token_cli() -> Iterator:
    app = typer.Typer(add_completion=False)
    app.command()(token)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["token", *args])


class TokenEndpoint:
    """A client-credentials token endpoint that accepts one client id and secret (or, `html`, a
    web page answering 200 to anything: a wrong --token-url)."""

    def __init__(self, client_id: str, secret: str, *, html: bool = False) -> None:
        self.requests: list[dict] = []
        expected = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                endpoint.requests.append(form)
                ok = self.headers.get("Authorization") == expected
                body = json.dumps(
                    {"access_token": ISSUED, "token_type": "Bearer"}
                    if ok
                    else {"error": "invalid_client"}
                ).encode()
                if html:
                    ok, body = True, b"<html><body>Sign in</body></html>"
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html" if html else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> TokenEndpoint:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def deployed_token(run_token_cli, deployed_client, endpoint: TokenEndpoint, *flags: str):
    """`taskctl token` for the deployed app client, against `endpoint` (closed after)."""
    pool_id, client_id, _secret = deployed_client
    with endpoint:
        return run_token_cli(
            "--user-pool-id", pool_id, "--client-id", client_id, "--token-url", endpoint.url,
            *flags,
        )  # fmt: skip


@pytest.fixture
def deployed_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """(pool id, client id, secret) of an app client like the stack's: the AWS environment's
    cognito-idp client answers DescribeUserPoolClient for it (botocore's Stubber checks the
    request against the service model)."""
    pool_id, client_id, secret = (
        "eu-west-1_AbC123",
        "7fclient00000000000000000a",
        "s3cr3t0123456789abcdefghijklmnop",
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    cognito = boto3.client("cognito-idp", region_name="eu-west-1")
    stubber = Stubber(cognito)
    stubber.add_response(
        "describe_user_pool_client",
        {"UserPoolClient": {"UserPoolId": pool_id, "ClientId": client_id, "ClientSecret": secret}},
        {"UserPoolId": pool_id, "ClientId": client_id},
    )
    real_client = boto3.Session.client

    def client(session: boto3.Session, service: str, *args, **kwargs):
        return (
            cognito if service == "cognito-idp" else real_client(session, service, *args, **kwargs)
        )

    monkeypatch.setattr(boto3.Session, "client", client)
    with stubber:
        yield pool_id, client_id, secret


def test_a_deployed_stacks_token_is_fetched_with_the_secret_cognito_keeps(
    run_token_cli, deployed_client
) -> None:
    _pool_id, client_id, secret = deployed_client
    endpoint = TokenEndpoint(client_id, secret)
    result = deployed_token(run_token_cli, deployed_client, endpoint, "--scope", "tasks/read")

    assert result.exit_code == 0, result.output
    assert result.stdout == ISSUED + "\n"
    assert secret not in result.output
    assert endpoint.requests == [{"grant_type": ["client_credentials"], "scope": ["tasks/read"]}]


def test_a_refused_token_request_is_one_line_with_exit_2(run_token_cli, deployed_client) -> None:
    _pool_id, client_id, _secret = deployed_client
    endpoint = TokenEndpoint(client_id, "not-the-secret")
    result = deployed_token(run_token_cli, deployed_client, endpoint)

    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the token endpoint") and "answered 400" in line


def test_the_deployed_flags_go_together(run_token_cli) -> None:
    result = run_token_cli("--client-id", "abc")

    assert result.exit_code == 2
    assert "give all three" in result.stderr


def _local_stack_files(root: Path, outputs: dict) -> None:
    """A running local stack's record, as `local up` writes it (this process plays the
    emulator: the record only needs a live pid)."""
    stack_dir = root / "dev"
    stack_dir.mkdir(parents=True)
    record = {"pid": os.getpid(), "port": 1, "region": "eu-west-1"}
    (stack_dir / "emulator.json").write_text(json.dumps(record))
    (stack_dir / "outputs.json").write_text(json.dumps(outputs))


def test_an_open_local_stack_needs_no_token_and_says_so(
    run_token_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_LOCAL_DIR", str(tmp_path))
    _local_stack_files(tmp_path, {"apiUrl": "http://x/dev", "apiAuth": "none"})

    result = run_token_cli()

    assert result.exit_code == 0
    assert result.stdout == ""  # so `Bearer $(python -m taskctl token)` sends an empty token
    assert "OPEN" in result.stderr


def test_without_a_running_local_stack_it_says_how_to_start_one(
    run_token_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_LOCAL_DIR", str(tmp_path))

    result = run_token_cli("--stack", "dev")

    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "not running" in line and "local up --stack dev" in line


def test_a_token_url_that_answers_a_web_page_is_one_line_with_exit_2(
    run_token_cli, deployed_client
) -> None:
    _pool_id, client_id, secret = deployed_client
    endpoint = TokenEndpoint(client_id, secret, html=True)
    result = deployed_token(run_token_cli, deployed_client, endpoint)

    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: the token endpoint {endpoint.url} sent no access_token"
