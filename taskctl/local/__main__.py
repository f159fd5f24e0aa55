"""`python -m taskctl.local ...`: the local-stack commands alone (as `python -m taskctl local`)."""

from taskctl.local.cli import app

app(prog_name="python -m taskctl.local")
