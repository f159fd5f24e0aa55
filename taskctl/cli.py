"""Try the task pipeline on this machine, check a deployment against its retry policy, and
operate it: `local up`, `load`, `tasks`, `redrive`, `bench`, `chaos`, `capacity`."""

import typer

from taskctl.bench.cli import bench
from taskctl.capacity.cli import capacity
from taskctl.chaos.cli import chaos
from taskctl.load.cli import load
from taskctl.local.cli import app as local_app
from taskctl.ops.cli import redrive
from taskctl.ops.tasks_cli import app as tasks_app
from taskctl.token.cli import token

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(local_app, name="local", help="Run the whole stack on this machine (ministack).")
app.command(help="Submit N tasks to a deployed API and check them against the retry policy.")(load)
app.command(help="Print cost, cold-start and throughput figures; save bench/results.json.")(bench)
app.add_typer(tasks_app, name="tasks", help="List the tasks that need attention; show a timeline.")
app.command(help="Give FAILED tasks more attempts from their records; requeue them.")(redrive)
app.command(help="Print a bearer token for the stack's own app client (apiAuth: jwt).")(token)
app.command(help="Inject seeded faults into the real handlers; check every task still ends.")(chaos)
app.command(help="What a steady submit rate needs from AWS; flags each quota crossed.")(capacity)
