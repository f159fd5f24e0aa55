"""Reading the CloudWatch embedded-metric (EMF) documents the handlers print to stdout."""

from __future__ import annotations

import json
from typing import Any


def emf_blobs(captured: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric documents printed to stdout."""
    blobs = []
    for line in captured.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def metric_total(blobs: list[dict[str, Any]], name: str) -> float:
    """The sum of every value of metric `name` (a blob holds one value or a list of them)."""
    total = 0.0
    for blob in blobs:
        value = blob.get(name, 0)
        total += sum(value) if isinstance(value, list) else value
    return total


def reported(blobs: list[dict[str, Any]], name: str) -> bool:
    """Whether any blob declares metric `name` (a zero counts: the series is there)."""
    return any(
        metric["Name"] == name
        for blob in blobs
        for directive in blob["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    )
