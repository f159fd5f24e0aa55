"""One exit-status convention for every taskctl command (clig.dev), in one place:

- 0: it did what was asked;
- 1: it ran, and a check it makes failed (tasks unfinished, a FAILED rate off, a redrive refused,
  a stack not running when asked whether it is);
- 2: it could not do what was asked: a usage error (Typer's own exit status for a bad flag) or a
  runtime error, reported as one `error: ...` line on stderr that says what to do.

A command stopped by Ctrl-C before it did what was asked exits 130, as shells expect. The two
that run until Ctrl-C, a foreground `local up` once its stack is ready and a following
`local logs`, end 0 on it: that is how they are meant to end.

Standard library only: the entry points use this before they know the virtualenv is complete.
"""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def exit_with_error(message: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    """Stop the command: `message` as its one `error: ...` line on stderr, then `exit_code`."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def exit_for_missing_virtualenv(missing: ModuleNotFoundError) -> NoReturn:
    """What an entry point does when the interpreter lacks the project's packages."""
    exit_with_error(
        f"the project virtualenv is missing or incomplete ({missing.name} not importable): run "
        "`make venv` and use .venv/bin/python (or just `make local`)"
    )
