"""The HTTP layer between botocore and the simulation: read a request botocore is about to send,
and build the response it will parse, success or error, as the real service would send it (JSON
protocol for both DynamoDB and SQS), so the SDK's own parsing, retries and error classes apply."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.botocore_stubber import MockRawResponse  # the body botocore reads a reply from

REGION = "us-east-1"
ACCOUNT = "123456789012"
SQS_ENDPOINT = f"https://sqs.{REGION}.amazonaws.com"
# Error `__type` prefixes of the two services' JSON protocols.
DYNAMODB_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
SQS_ERROR_PREFIX = "com.amazonaws.sqs#"


def params(request: AWSPreparedRequest) -> dict[str, Any]:
    """The operation's parameters as sent (both services speak JSON)."""
    return json.loads(request.body) if request.body else {}  # str or bytes


def sdk_attempt(request: AWSPreparedRequest) -> tuple[str, int]:
    """(the SDK call's invocation id, the 1-based attempt of this request), from the headers the
    SDK adds to every try; tries of one call share the id."""
    attempt = re.search(r"\battempt=(\d+)", _header(request, "amz-sdk-request"))
    return _header(request, "amz-sdk-invocation-id"), int(attempt[1]) if attempt else 1


def _header(request: AWSPreparedRequest, name: str) -> str:
    value = request.headers.get(name, "")
    return value.decode() if isinstance(value, bytes) else value


def json_response(
    request: AWSPreparedRequest,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> AWSResponse:
    content = json.dumps(body, separators=(",", ":")).encode()
    all_headers = {
        "content-type": "application/x-amz-json-1.0",
        "content-length": str(len(content)),
        "x-amzn-requestid": "chaos",
        **(headers or {}),
    }
    return AWSResponse(request.url, status, all_headers, MockRawResponse(content))


def error_response(
    request: AWSPreparedRequest, service: str, code: str, message: str, status: int = 400
) -> AWSResponse:
    """An error reply of `service` ("dynamodb" or "sqs") with error code `code`."""
    if service == "sqs":
        fault = "Sender" if status < 500 else "Receiver"
        return json_response(
            request,
            status,
            {"__type": SQS_ERROR_PREFIX + code, "message": message},
            # SQS is "awsQueryCompatible": botocore takes the code from this header.
            {"x-amzn-query-error": f"{code};{fault}"},
        )
    return json_response(
        request, status, {"__type": DYNAMODB_ERROR_PREFIX + code, "message": message}
    )


@contextlib.contextmanager
def offline_aws_environment(**extra: str) -> Iterator[None]:
    """Fake credentials, and none of the developer's AWS settings (a profile, an endpoint):
    nothing run inside may reach a real account or the local stack. `extra` variables are set
    too; the process's environment is as it was afterwards."""
    with mock.patch.dict(os.environ):
        for name in list(os.environ):
            if name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")):
                del os.environ[name]
        os.environ.update(
            AWS_ACCESS_KEY_ID="simulated",
            AWS_SECRET_ACCESS_KEY="simulated",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            **extra,
        )
        yield
