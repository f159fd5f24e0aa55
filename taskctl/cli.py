"""`python -m taskctl`: one Typer app; each area registers its commands here."""

import typer

from taskctl.bench.cli import bench
from taskctl.load.cli import load
from taskctl.local.cli import app as local_app
from taskctl.ops.cli import redrive

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(local_app, name="local", help="Run the whole stack on this machine (ministack).")
app.command(help="Submit N tasks to a deployed API and check them against the retry policy.")(load)
app.command(help="Print cost, cold-start and throughput figures; save bench/results.json.")(bench)
app.command(help="Give FAILED tasks more attempts from their records; requeue them.")(redrive)
