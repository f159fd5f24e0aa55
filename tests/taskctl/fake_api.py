"""An in-process fake of the task API on 127.0.0.1 that keeps the HTTP contract (DESIGN §2, §3).

Each task's whole life is decided when it is submitted, from a seeded random source: attempt n
starts `retry delay` after attempt n-1 finished, fails with probability `error_rate`, and the task
ends FAILED after `max_attempts` failures. A GET shows the record as it stands at that moment, so
a client sees PENDING, PROCESSING, RETRYING and a terminal status in real time. The fake knows
each task's true outcome, which lets a test count the run independently of the tool under test.

Knobs make it misbehave the ways a broken deployment would: retry early, fail more often than the
policy says, never finish, refuse submits.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STAGE = "dev"
TASK_PATH = re.compile(rf"^/{STAGE}/tasks/(?P<task_id>[^/]+)$")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, kw_only=True)
class Attempt:
    number: int
    started_s: float
    finished_s: float
    failed: bool
    retry_delay_s: float | None  # promised wait before the next attempt; None when last


@dataclass(kw_only=True)
class FakeTask:
    task_id: str
    message: str
    max_attempts: int
    created_s: float
    attempts: list[Attempt]

    @property
    def final_status(self) -> str:
        return "FAILED" if self.attempts[-1].failed else "COMPLETED"

    def view(self, now_s: float, *, finishes: bool) -> dict:
        """The record as the API would return it at `now_s`."""
        started = [a for a in self.attempts if a.started_s <= now_s]
        if not finishes:  # a stuck worker never gets past its first attempt
            started = started[:1]
        record: dict = {
            "taskId": self.task_id,
            "message": self.message,
            "maxAttempts": self.max_attempts,
            "createdAt": _iso(self.created_s),
            "attempts": len(started),
            "history": [],
        }
        for attempt in started:
            entry = {"attempt": attempt.number, "startedAt": _iso(attempt.started_s)}
            if attempt.finished_s <= now_s and finishes:
                entry.update(
                    finishedAt=_iso(attempt.finished_s),
                    outcome="FAILED" if attempt.failed else "SUCCEEDED",
                    error="simulated failure" if attempt.failed else None,
                    retryDelaySeconds=attempt.retry_delay_s,
                )
            record["history"].append(entry)
        last = started[-1] if started else None
        if last is None:
            status, updated_s = "PENDING", self.created_s
        elif last.finished_s > now_s or not finishes:
            status, updated_s = "PROCESSING", last.started_s
        elif last.failed and last.retry_delay_s is not None:
            status, updated_s = "RETRYING", last.finished_s
            record["nextAttemptAt"] = _iso(last.finished_s + last.retry_delay_s)
            record["lastError"] = "simulated failure"
        elif last.failed:
            status, updated_s = "FAILED", last.finished_s
            record["failedAt"] = _iso(last.finished_s)
            record["lastError"] = "simulated failure"
        else:
            status, updated_s = "COMPLETED", last.finished_s
            record["completedAt"] = _iso(last.finished_s)
        record["status"] = status
        record["updatedAt"] = _iso(updated_s)
        return record


@dataclass(kw_only=True)
class FakeTaskApi:
    """Behaviour of the fake; tests change the knobs before submitting."""

    error_rate: float = 0.3
    max_attempts: int = 2
    backoff_base_s: float = 0.05
    attempt_duration_s: float = 0.005
    start_delay_s: float = 0.01
    seed: int = 7
    early_retry_s: float = 0.0  # a broken worker: starts the next attempt this much too soon
    tasks_finish: bool = True  # False: tasks stay PROCESSING forever
    submit_status: int | None = None  # answer every POST with this status instead
    read_status: int | None = None  # answer every GET with this status (403: no tasks/read)
    unavailable_submits: int = 0  # answer this many POSTs 503 first, storing nothing
    slow_submits: int = 0  # this many POSTs store the task, then answer after `slow_reply_s`
    slow_reply_s: float = 0.0
    # Like API Gateway's JWT authorizer: without `Authorization: Bearer <this>`, a 401
    bearer_token: str | None = None
    posts: int = 0
    by_idempotency_key: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def submit(self, message: str) -> FakeTask:
        with self._lock:
            created_s = time.time()
            attempts: list[Attempt] = []
            start_s = created_s + self.start_delay_s
            for number in range(1, self.max_attempts + 1):
                failed = self._random.random() < self.error_rate
                last = number == self.max_attempts or not failed
                delay_s = None if last else self.backoff_base_s * 2 ** (number - 1)
                finished_s = start_s + self.attempt_duration_s
                attempts.append(Attempt(number=number, started_s=start_s, finished_s=finished_s,
                                        failed=failed, retry_delay_s=delay_s))  # fmt: skip
                if last:
                    break
                start_s = finished_s + delay_s - self.early_retry_s
            task = FakeTask(
                task_id=str(uuid.uuid4()),
                message=message,
                max_attempts=self.max_attempts,
                created_s=created_s,
                attempts=attempts,
            )
            self.tasks[task.task_id] = task
            return task

    def final_counts(self) -> dict[str, int]:
        """The true outcome of every task submitted: the independent count."""
        counts = {"COMPLETED": 0, "FAILED": 0}
        for task in self.tasks.values():
            counts[task.final_status] += 1
        return counts


class _Handler(BaseHTTPRequestHandler):
    api: FakeTaskApi  # set on the subclass made per server

    def log_message(self, *_args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _refused_token(self) -> bool:
        expected = self.api.bearer_token
        if expected is None or self.headers.get("Authorization") == f"Bearer {expected}":
            return False
        self._reply(401, {"message": "Unauthorized"})
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self._refused_token():
            return None
        if self.path != f"/{STAGE}/tasks":
            return self._reply(404, {"error": f"no route POST {self.path}"})
        if self.api.submit_status is not None:
            return self._reply(self.api.submit_status, {"error": "submits are refused here"})
        with self.api._lock:
            self.api.posts += 1
            post_number = self.api.posts
        if post_number <= self.api.unavailable_submits:
            return self._reply(503, {"error": "briefly unavailable"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply(400, {"error": "body is not JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return self._reply(400, {"error": "body needs a string 'message'"})
        key = self.headers.get("Idempotency-Key")
        known = self.api.tasks.get(self.api.by_idempotency_key.get(key, ""))
        if known is not None and known.message != body["message"]:
            return self._reply(409, {"error": "Idempotency-Key reused with a different body"})
        task = known or self.api.submit(body["message"])
        if key:
            self.api.by_idempotency_key[key] = task.task_id
        if post_number <= self.api.unavailable_submits + self.api.slow_submits:
            time.sleep(self.api.slow_reply_s)  # stored, but the reply comes too late
        self._reply(
            202,
            {"taskId": task.task_id, "status": "PENDING", "createdAt": _iso(task.created_s)},
            {"Location": f"/tasks/{task.task_id}"},
        )

    def do_GET(self) -> None:
        if self._refused_token():
            return None
        if self.api.read_status is not None:
            return self._reply(self.api.read_status, {"message": "Forbidden"})
        match = TASK_PATH.match(self.path)
        if not match:
            return self._reply(404, {"error": f"no route GET {self.path}"})
        task = self.api.tasks.get(match["task_id"])
        if task is None:
            return self._reply(404, {"error": "no such task"})
        self._reply(200, task.view(time.time(), finishes=self.api.tasks_finish))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that has already given up (the load command stops at the first refused
        # submit) may close its connection before the reply is written: its right, not a server
        # error worth a traceback in the command's captured stderr.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


class FakeApiServer:
    """Serves a FakeTaskApi on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, api: FakeTaskApi) -> None:
        self.api = api
        handler = type("BoundHandler", (_Handler,), {"api": api})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{STAGE}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
