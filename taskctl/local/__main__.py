"""`python -m taskctl.local ...`: the local-stack commands alone (as `python -m taskctl local`)."""

import sys

try:
    from taskctl.local.cli import app
except ModuleNotFoundError as missing:
    # Run with an interpreter that lacks the project's packages (typer, pulumi, boto3...).
    sys.exit(
        f"error: the project virtualenv is missing or incomplete ({missing.name} not "
        "importable): run `make venv` and use .venv/bin/python (or just `make local`)"
    )

app(prog_name="python -m taskctl.local")
