"""`python -m taskctl.local ...`: the local-stack commands alone (as `python -m taskctl local`)."""

from taskctl.exit_codes import exit_for_missing_virtualenv

try:
    from taskctl.local.cli import app
except ModuleNotFoundError as missing:  # typer, pulumi, boto3... are not importable
    exit_for_missing_virtualenv(missing)

app(prog_name="python -m taskctl.local")
