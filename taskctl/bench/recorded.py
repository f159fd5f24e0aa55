"""Dataclasses read from the figures recorded in `bench/` (`prices.json`, `quotas.json`): each
field says where in its file it is found, so a file's layout is written down once."""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
from pathlib import Path
from typing import Any, TypeVar

Recorded = TypeVar("Recorded")


def at(*keys: str) -> Any:
    """A field read from the JSON file at `keys`, outermost first."""
    return dataclasses.field(metadata={"keys": keys})


def load_recorded(cls: type[Recorded], file: Path) -> Recorded:
    raw = json.loads(file.read_text())
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    return cls(
        **{f.name: functools.reduce(operator.getitem, f.metadata["keys"], raw) for f in fields}
    )
