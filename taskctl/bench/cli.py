"""`python -m taskctl bench` (`make bench`): cost per million tasks, cold-start proxy, throughput.

Prints the figures and writes them to `bench/results.json`. Measurements, not assertions.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from taskctl.bench import coldstart, throughput
from taskctl.bench.cost import PRICES_FILE, Prices
from taskctl.bench.recorded import RecordedFileError
from taskctl.bench.requests import FUNCTIONS, Design, cost_table, measure, ratio, scenarios
from taskctl.exit_codes import exit_with_error
from taskctl.local.paths import PROJECT_DIR

RESULTS_FILE = PROJECT_DIR / "bench" / "results.json"
OURS, ORIGINAL = "ours", "original"
OURS_WITHOUT_BACKSTOP = "ours without the reconciler"
OURS_WITHOUT_STATUS_INDEX = "ours without the status index"
OURS_VARIANTS = (OURS, OURS_WITHOUT_BACKSTOP, OURS_WITHOUT_STATUS_INDEX)
REPORT_WIDTH = 120


def bench(
    stack: Annotated[str, typer.Option(help="Stack whose settings are priced and run.")] = "dev",
    repetitions: Annotated[
        int, typer.Option(min=1, max=50, help="Runs of each task scenario under moto.")
    ] = 5,
    import_runs: Annotated[
        int,
        typer.Option(
            min=9, max=51, help="Interleaved rounds of fresh interpreters for the import timing."
        ),
    ] = 9,
    import_python: Annotated[
        str | None,
        typer.Option(
            help="Time the imports on CPython 3.X (a Lambda runtime's version; its python3.X on "
            "PATH) with the Lambda bundle for this machine's architecture, instead of on this "
            "interpreter with the local bundle.",
        ),
    ] = None,
    throughput_tasks: Annotated[
        int, typer.Option(min=0, max=5000, help="Tasks for the local throughput run; 0 skips it.")
    ] = 200,
    output: Annotated[
        Path,
        typer.Option(
            help="Where to write the JSON results.",
            show_default=str(RESULTS_FILE.relative_to(PROJECT_DIR)),
        ),
    ] = RESULTS_FILE,
) -> None:
    """Measure and print; see the module docstring."""
    console = Console()
    if not console.is_terminal:  # piped or logged: wide enough for the tables to stay readable
        console = Console(width=max(console.width, REPORT_WIDTH))
    from taskctl.program import StackConfigError, load_stack_settings

    try:
        settings = load_stack_settings(stack)
    except StackConfigError as error:
        exit_with_error(str(error))
    _refuse_what_would_fail_at_the_end(stack, settings.maxAttempts, import_python, output)
    try:
        prices = Prices.load()
    except RecordedFileError as exc:
        exit_with_error(str(exc))
    results: dict[str, Any] = {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "stack": stack,
        "settings": {
            key: getattr(settings, key)
            for key in (
                "maxAttempts",
                "errorRate",
                "backoffBaseSeconds",
                "workerBatchSize",
                "functionMemoryMb",
                "functionArchitecture",
                "taskTtlDays",
            )
        },
        "prices": {
            "file": str(PRICES_FILE.relative_to(PROJECT_DIR)),
            "recorded": prices.recorded,
            "region": prices.region,
        },
    }

    with console.status("measuring", spinner="dots") as status:
        step = status.update
        # 1. Requests per task and cost.
        measurements = measure(
            settings, settings.functionMemoryMb, repetitions=repetitions, progress=step
        )
        ours = Design(
            name=OURS,
            api_kind="http",
            batch_size=settings.workerBatchSize,
            memory_mb=settings.functionMemoryMb,
            architecture=settings.functionArchitecture,
            original_writes=False,
            reconciler=True,
            status_index=True,
        )
        designs = [
            ours,
            # The same design without its backstop: what the reconciler adds.
            dataclasses.replace(ours, name=OURS_WITHOUT_BACKSTOP, reconciler=False),
            # ... and without the operator's status index: what `taskctl tasks list` costs.
            dataclasses.replace(ours, name=OURS_WITHOUT_STATUS_INDEX, status_index=False),
            Design(
                name=ORIGINAL,
                api_kind="rest",
                batch_size=1,
                memory_mb=1024,
                architecture="x86_64",
                original_writes=True,
            ),
        ]
        costs = cost_table(
            measurements,
            designs,
            prices,
            ttl_days=settings.taskTtlDays,
            error_rate=settings.errorRate,
            max_attempts=settings.maxAttempts,
        )
        results["requestsPerTask"] = {
            m.name: {
                "description": m.description,
                "finalStatus": m.final_status,
                "attempts": m.attempts,
                "requestsByFunction": m.calls,
                "requestsByService": m.requests_by_service(),
                "dynamodbWriteUnits": m.wru,
                "dynamodbReadUnits": m.rru,
                "invocations": m.invocations,
                "handlerMsMedian": m.duration_ms,
                "logBytes": m.log_bytes,
                "storedItemBytes": m.item_bytes,
            }
            for m in measurements
        }
        results["costPerMillionTasks"] = costs
        ours_total, without, unindexed = (_total(costs, name) for name in OURS_VARIANTS)
        results["costRatioOriginalToOurs"] = ratio(_total(costs, ORIGINAL), ours_total)
        results["reconcilerCostIncrease"] = ratio(ours_total - without, without)
        results["statusIndexCostIncrease"] = ratio(ours_total - unindexed, unindexed)

        # 2. Artifacts and the cold-start proxy.
        artifacts = coldstart.build_bundles(settings.functionPythonVersion, step)
        results["artifacts"] = artifacts
        results["coldStart"] = _cold_start(artifacts, import_python, import_runs, step)

        # 3. Local throughput.
        if throughput_tasks:
            results["throughput"] = throughput.measure_throughput(
                stack, tasks=throughput_tasks, concurrency=5, progress=step
            )
        else:
            results["throughput"] = throughput.not_measured("skipped (--throughput-tasks 0)")

    results["notes"] = NOTES
    _print(results, console)  # first: the figures are seen even if the file cannot be written
    try:
        output.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        exit_with_error(f"cannot write the results to {output}: {exc.strerror}")
    console.print(f"\nWritten to {output}")


def _refuse_what_would_fail_at_the_end(
    stack: str, max_attempts: int, import_python: str | None, output: Path
) -> None:
    """One line and exit 2 now, rather than after minutes of measuring: a stack the scenarios
    cannot play, an --import-python that cannot run, an --output that cannot be written."""
    from components.packaging import LAMBDA_PYTHON_VERSIONS, find_python

    try:
        scenarios(max_attempts)
    except ValueError as exc:
        exit_with_error(f"stack {stack}: {exc}")
    if import_python is not None:
        if import_python not in LAMBDA_PYTHON_VERSIONS:
            exit_with_error(
                f"--import-python {import_python!r} is not a Lambda Python runtime "
                f"({', '.join(LAMBDA_PYTHON_VERSIONS)})"
            )
        if find_python(import_python) is None:
            exit_with_error(
                f"--import-python {import_python}: no CPython {import_python} here "
                f"(python{import_python} on PATH)"
            )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a directory")
        if not os.access(output.parent, os.W_OK):
            raise PermissionError(errno.EACCES, f"{output.parent} is not writable")
    except (FileExistsError, NotADirectoryError):  # a file stands where a folder must be
        in_the_way = next(path for path in (output.parent, *output.parent.parents) if path.exists())
        exit_with_error(f"cannot write the results to {output}: {in_the_way} is a file")
    except OSError as exc:
        exit_with_error(f"cannot write the results to {output}: {exc.strerror}")


NOTES = [
    "Requests are counted with botocore hooks on the clients the real handlers use, under moto; "
    "the harness plays API Gateway and the SQS event source mappings with unmetered clients.",
    "Handler durations are wall time under moto on this machine, warm invocations: a proxy. "
    "In AWS each DynamoDB/SQS call adds network latency, so real durations are longer.",
    "A worker batch of B records is priced as B times one record's measured time (an upper bound).",
    "SQS event source requests are estimated: one ReceiveMessage per batch and one "
    "DeleteMessageBatch per batch with acknowledged records; empty polls of an idle queue "
    "(a fixed monthly cost) are excluded.",
    "A retry waits as a delayed message: one SendMessage per retry (measured, the worker's) "
    "instead of a ChangeMessageVisibility, and its original delivery is deleted, so it is "
    "acknowledged; the fallback when that send fails (hide the original) is not priced.",
    "DynamoDB units are computed from item sizes (1 KB per WRU, 4 KB per strongly consistent "
    "RRU); the original design is priced at two 1-WRU writes per attempt.",
    "Logs: bytes the functions logged (measured) plus about 270 bytes of Lambda's own "
    "START/END/REPORT lines per invocation (estimated).",
    "Status reads (GET /tasks/{id}) are not part of a task's cost: clients decide how often.",
    "Import times use the bundle built for this machine's interpreter, imported as Lambda does "
    "(no site-packages; the bundle, then boto3 and its dependencies as the runtime provides "
    "them; no bytecode written), once as built (with bytecode) and once without its bytecode "
    "(what a Lambda bundle ships when no interpreter of its Python version was at hand). The "
    "first figures are the importing process's CPU time, which other work on the machine "
    "hardly moves; the wall... figures are wall-clock time. Ratios to a bare `import boto3` are "
    "the figures to compare, not the absolute times.",
]


def _cold_start(artifacts: dict[str, Any], version: str | None, runs: int, step) -> dict[str, Any]:
    """The cold-start proxy on this interpreter with the local bundle; or, given a `version`, on
    CPython `version` from python3.X on PATH with the Lambda bundle for this machine's
    architecture (its manylinux wheels load here) compiled by it."""
    from components.packaging import BundleError, BundleTarget, build_bundle, find_python

    try:
        if version is None:
            local = artifacts["local"]
            if "error" in local:
                raise RuntimeError(f"no local bundle: {local['error']}")
            if not local["bytecode"]:
                raise RuntimeError("the local bundle carries no bytecode")
            bundle_path, compiled_with = PROJECT_DIR / local["path"], local["bytecode"]
            python, described = sys.executable, "the local bundle"
        else:
            interpreter = find_python(version)
            if interpreter is None:
                raise RuntimeError(f"no CPython {version} (python{version} on PATH)")
            machine = platform.machine()
            bundle = build_bundle(
                BundleTarget.lambda_runtime("arm64" if machine == "aarch64" else machine, version),
                progress=step,
                python_finder=lambda _version: interpreter,
            )
            bundle_path, compiled_with = bundle.path, str(bundle.compiled_with)
            python, described = interpreter.path, "the Lambda bundle for this architecture"
        figures = coldstart.measure_bundle(bundle_path, runs=runs, python=python, progress=step)
    except (BundleError, RuntimeError) as exc:
        return throughput.not_measured(str(exc).splitlines()[0])
    return {
        "measured": True,
        "bundle": str(bundle_path.relative_to(PROJECT_DIR)),
        "compiledWith": compiled_with,
        "pythonPath": f"{described}, extracted; then boto3 and its dependencies only",
        **figures,
    }


def _total(costs: dict[str, Any], design: str) -> float:
    return costs[design]["mix"]["costPerMillionTasks"]["total"]


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _print(results: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]Benchmark[/] (stack {results['stack']}, prices {results['prices']['region']} "
        f"as of {results['prices']['recorded']})"
    )

    per_task = results["requestsPerTask"]
    requests = Table(title="AWS requests per task (the functions' own calls, counted under moto)")
    requests.add_column("function: call")
    for m in per_task.values():
        requests.add_column(
            f"{m['description']}\n-> {m['finalStatus']} ({m['attempts']})", justify="right"
        )
    counts = [  # per scenario: (function, service, operation) -> requests
        {
            (function, service, operation): count
            for function, services in m["requestsByFunction"].items()
            for service, operations in services.items()
            for operation, count in operations.items()
        }
        for m in per_task.values()
    ]
    for function, service, operation in sorted(set().union(*counts)):
        cells = (str(c.get((function, service, operation), 0)) for c in counts)
        requests.add_row(f"{function}: {service}.{operation}", *cells)
    totals = {
        "DynamoDB write units": lambda m: f"{sum(m['dynamodbWriteUnits'].values()):g}",
        "DynamoDB read units": lambda m: f"{sum(m['dynamodbReadUnits'].values()):g}",
        "invocations api/worker/dead-letter": lambda m: "/".join(
            str(m["invocations"][f]) for f in FUNCTIONS
        ),
        "handler ms (median, moto)": lambda m: "/".join(
            f"{m['handlerMsMedian'][f]:.0f}" for f in FUNCTIONS
        ),
        "bytes logged": lambda m: f"{sum(m['logBytes'].values())}",
    }
    for label, cell in totals.items():
        requests.add_row(label, *(cell(m) for m in per_task.values()))
    console.print(requests)

    costs = results["costPerMillionTasks"]
    ours, original = costs[OURS], costs[ORIGINAL]
    table = Table(
        title="Cost per million tasks, USD (policy mix: "
        + ", ".join(f"{k} {v:.0%}" for k, v in ours["mix"]["weights"].items())
        + ")"
    )
    table.add_column("line")
    table.add_column(f"ours ({_design(ours['design'])})", justify="right")
    table.add_column(f"original ({_design(original['design'])})", justify="right")
    for line, value in ours["mix"]["costPerMillionTasks"].items():
        table.add_row(line, _money(value), _money(original["mix"]["costPerMillionTasks"][line]))
    for scenario in ours["scenarios"]:
        table.add_row(
            f"total if every task {results['requestsPerTask'][scenario]['description']}",
            _money(ours["scenarios"][scenario]["costPerMillionTasks"]["total"]),
            _money(original["scenarios"][scenario]["costPerMillionTasks"]["total"]),
        )
    console.print(table)
    if results["costRatioOriginalToOurs"]:
        console.print(
            f"The original design costs {results['costRatioOriginalToOurs']:.2f}x ours "
            "per million tasks (policy mix)."
        )
    ours_total, without, unindexed = (_total(costs, name) for name in OURS_VARIANTS)
    console.print(
        "The reconciler backstop (check index, status reads, cursor, compute) adds "
        f"{_money(ours_total - without)} per million tasks: "
        f"{results['reconcilerCostIncrease']:.1%} over {_money(without)} without it."
    )
    console.print(
        f"The status index (`taskctl tasks list`; KEYS_ONLY, 1 WRU per entry write, 2 a task, "
        f"3 if it fails) adds {_money(ours_total - unindexed)} per million tasks: "
        f"{results['statusIndexCostIncrease']:.1%} over {_money(unindexed)} without it."
    )

    cold = results["coldStart"]
    if cold.get("measured"):
        imports = Table(
            title=(
                f"Cold-start proxy: import time (CPU), median of {cold['runs']} interleaved fresh "
                f"{cold['interpreter']} interpreters; bytecode compiled with {cold['compiledWith']}"
            ),
            caption="x import boto3: CPU time (wall-clock time)",
        )
        imports.add_column("module")
        for label in ("source only", "with bytecode"):
            imports.add_column(f"{label} ms", justify="right")
            imports.add_column("x import boto3", justify="right")
        baseline_ms = f"{cold['baselineMedianSeconds'] * 1000:.0f}"
        imports.add_row(coldstart.BASELINE_MODULE, *[baseline_ms, "1.00"] * 2)
        variants = [cold["variants"][v] for v in (coldstart.SOURCE_ONLY, coldstart.BYTECODE)]
        for module in coldstart.HANDLER_MODULES:
            cells = []
            for figures in variants:
                ms = figures["medianSeconds"][module] * 1000
                cpu, wall = figures["ratioToBoto3"][module], figures["wallRatioToBoto3"][module]
                cells += [f"{ms:.0f}", f"{cpu:.2f} ({wall:.2f})"]
            imports.add_row(module, *cells)
        console.print(imports)
    else:
        console.print(f"Cold-start proxy not measured: {cold['reason']}")

    sizes = Table(title="Deployment artifacts (one bundle serves all four functions)")
    sizes.add_column("target")
    for column in ("python", "zip", "unzipped"):
        sizes.add_column(column, justify="right")
    sizes.add_column("bytecode")
    for target, artifact in results["artifacts"].items():
        if "error" in artifact:
            sizes.add_row(target, "", "not built", "", artifact["error"][:60])
        else:
            sizes.add_row(
                target,
                artifact["python"],
                f"{artifact['zipBytes'] / 1e6:.2f} MB",
                f"{artifact['unzippedBytes'] / 1e6:.2f} MB",
                artifact["bytecode"] or f"none: no CPython {artifact['python']} here",
            )
    console.print(sizes)

    run = results["throughput"]
    if run.get("measured"):
        console.print(
            f"Local end-to-end throughput: {run['tasksPerSecond']:.1f} tasks/s "
            f"({run['tasks']} tasks, {run['concurrency']} in flight; "
            f"{run['unfinished']} unfinished)."
        )
    else:
        console.print(f"Local end-to-end throughput not measured: {run['reason']}")


def _design(design: dict[str, Any]) -> str:
    return (
        f"{design['api']}, batch {design['batchSize']}, {design['memoryMb']} MB "
        f"{design['architecture']}"
    )
