"""What the capacity model takes as given (a module of its own: the CLI reads its defaults
without importing the model and the functions behind it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Assumptions:
    """What the model takes as given. Durations are AWS estimates: the handlers measured under
    moto (`make bench`: about 6 ms per api call, 21 ms per worker record) plus a few ms of
    network for each DynamoDB and SQS call they make."""

    api_ms: float = 40.0  # PutItem + SendMessage
    worker_record_ms: float = 60.0  # GetItem, two UpdateItems, and a SendMessage on a retry
    dead_letter_record_ms: float = 20.0  # GetItem of a task the worker already made FAILED
    item_bytes: int = 600  # a task record with a short message and a few attempts (323-566 B)
    deferred_share: float = 0.001  # deliveries (duplicates) that meet a live lease and wait it out
    api_log_bytes: int = 450  # measured by `make bench`
    worker_log_bytes_per_record: int = 500
    dead_letter_log_bytes_per_record: int = 800
