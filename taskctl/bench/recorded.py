"""Dataclasses read from the figures recorded in `bench/` (`prices.json`, `quotas.json`): each
field says where in its file it is found, so a file's layout is written down once."""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
from pathlib import Path
from typing import Any


def at(*keys: str) -> Any:
    """A field read from the JSON file at `keys`, outermost first."""
    return dataclasses.field(metadata={"keys": keys})


def load_recorded(cls: Any, file: Path) -> Any:
    """An instance of dataclass `cls`, its fields (each an `at`) read from the JSON `file`."""
    raw = json.loads(file.read_text())
    paths = {field.name: field.metadata["keys"] for field in dataclasses.fields(cls)}
    return cls(
        **{name: functools.reduce(operator.getitem, path, raw) for name, path in paths.items()}
    )
