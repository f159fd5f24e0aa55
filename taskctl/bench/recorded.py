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


class RecordedFileError(ValueError):
    """A recorded file that cannot be read, or lacks a figure: says which, and where."""


def load_recorded(cls: Any, file: Path) -> Any:
    """An instance of dataclass `cls`, its fields (each an `at`) read from the JSON `file`."""
    try:
        raw = json.loads(file.read_text())
    except OSError as exc:
        raise RecordedFileError(f"cannot read {file}: {exc.strerror}") from None
    except ValueError as exc:
        raise RecordedFileError(f"{file} is not valid JSON: {exc}") from None
    values = {}
    for field in dataclasses.fields(cls):
        try:
            values[field.name] = functools.reduce(operator.getitem, field.metadata["keys"], raw)
        except (KeyError, IndexError, TypeError):
            where = ".".join(field.metadata["keys"])
            raise RecordedFileError(f"{file} has no {where}") from None
    return cls(**values)
