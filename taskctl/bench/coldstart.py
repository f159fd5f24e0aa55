"""Cold-start proxy and artifact sizes.

Import time of each handler module against a bare `import boto3`, the median of fresh
interpreters, from one bundle (built by the same builder and requirements as the Lambda bundles)
extracted twice: as built, and without its bytecode (what a Lambda bundle is when no interpreter
of its Python version was at hand to compile it).

Each import runs as Lambda runs it: no site-packages (`-I -S`), the bundle first on the path
(Lambda's `/var/task`), then what the runtime provides (boto3 and its dependencies, with their
bytecode), and no bytecode written (`-B`: Lambda's code directory is read-only). Rounds are
interleaved (boto3, then each handler in both variants) so drift in machine load spreads over all
figures alike. Each import is timed twice: the importing process's CPU time (reported first: on a
busy machine it hardly depends on what else runs) and the wall-clock time (what a cold start
waits, but here inflated by every other process waiting for the same cores). A proxy: compare
the ratios, not the absolute times.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from functions.metrics import METRICS_NAMESPACE
from taskctl.local.paths import PROJECT_DIR

BASELINE_MODULE = "boto3"
HANDLER_MODULES = (
    "functions.api",
    "functions.worker",
    "functions.dead_letter",
    "functions.reconciler",
)
SOURCE_ONLY, BYTECODE = "sourceOnly", "bytecode"
# What the Lambda Python runtime provides besides the standard library: boto3 and its
# dependencies. The bundle does not carry the first three (the runtime's own are used).
LAMBDA_RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "urllib3",
    "six",
)
# `os` is imported before the clocks start: Lambda's runtime has loaded it before any handler
# module, and `-S` (no site) would otherwise charge it to whichever import comes first.
_TIMER = (
    "import sys; sys.path[:0] = {path!r}; import os, time; "
    "wall, cpu = time.perf_counter(), time.process_time(); import {module}; "
    "print(time.process_time() - cpu, time.perf_counter() - wall)"
)


class ImportTime(NamedTuple):
    """One import: the importing process's CPU seconds and the wall-clock seconds."""

    cpu_s: float
    wall_s: float


def link_runtime_provided_packages(into: Path) -> Path:
    """A directory holding only boto3 and its dependencies (links to this environment's), as
    Lambda's Python runtime provides them."""
    into.mkdir(parents=True, exist_ok=True)
    for distribution_name in LAMBDA_RUNTIME_PROVIDED:
        distribution = importlib.metadata.distribution(distribution_name)
        tops = {
            file.parts[0]
            for file in distribution.files or []
            if not file.parts[0].endswith(".dist-info")
            and file.parts[0] not in ("..", "bin", "__pycache__")
        }
        for top in tops:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)
    return into


def import_seconds(module: str, python_path: list[str], python: str) -> ImportTime:
    """How long one fresh, isolated interpreter takes to import `module` from `python_path`."""
    env = dict(os.environ)
    # Settings the handlers read lazily; set anyway so an eager read cannot fail the import.
    env.setdefault("POWERTOOLS_SERVICE_NAME", "bench")
    env.setdefault("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", _TIMER.format(path=python_path, module=module)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),  # not the project: only the path above decides what is imported
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"import {module} failed: {last}")
    return ImportTime(*map(float, result.stdout.split()))


def measure_bundle(
    bundle_path: Path, *, runs: int, python: str, progress: Callable[[str], None]
) -> dict[str, Any]:
    """The timings the module docstring describes, on `python` (this interpreter, or another the
    bundle was built and compiled for): medians, and ratios to boto3's, per variant and clock."""
    with tempfile.TemporaryDirectory(prefix="taskctl-bench-bundle-") as scratch:
        root = Path(scratch)
        bundles = {
            SOURCE_ONLY: extract(bundle_path, root / SOURCE_ONLY, bytecode=False),
            BYTECODE: extract(bundle_path, root / BYTECODE),
        }
        runtime_packages = link_runtime_provided_packages(root / "runtime")
        if python != sys.executable:
            # The runtime's boto3 comes with bytecode for its own Python: compile a copy so.
            compiled = root / "runtime-compiled"
            ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(runtime_packages, compiled, ignore=ignored)
            compile_all = [python, "-m", "compileall", "-q", str(compiled)]
            subprocess.run(compile_all, capture_output=True, check=True)
            runtime_packages = compiled
        baseline: list[ImportTime] = []
        samples: dict[str, dict[str, list[ImportTime]]] = {
            variant: {module: [] for module in HANDLER_MODULES} for variant in bundles
        }
        for run in range(runs):
            progress(f"import {BASELINE_MODULE} ({run + 1}/{runs})")
            baseline.append(import_seconds(BASELINE_MODULE, [str(runtime_packages)], python))
            for module in HANDLER_MODULES:
                for variant, bundle_dir in bundles.items():
                    progress(f"import {module}, {variant} ({run + 1}/{runs})")
                    path = [str(bundle_dir), str(runtime_packages)]
                    samples[variant][module].append(import_seconds(module, path, python))
    cpu_baseline = statistics.median(t.cpu_s for t in baseline)
    wall_baseline = statistics.median(t.wall_s for t in baseline)
    variants = {}
    for variant, by_module in samples.items():
        cpu = {m: statistics.median(t.cpu_s for t in times) for m, times in by_module.items()}
        wall = {m: statistics.median(t.wall_s for t in times) for m, times in by_module.items()}
        variants[variant] = {
            "medianSeconds": cpu,
            "ratioToBoto3": {m: seconds / cpu_baseline for m, seconds in cpu.items()},
            "wallMedianSeconds": wall,
            "wallRatioToBoto3": {m: seconds / wall_baseline for m, seconds in wall.items()},
        }
    return {
        "runs": runs,
        "interpreter": _describe(python),
        "clock": "CPU time of the importing process (wall-clock time in the wall... keys)",
        "baselineMedianSeconds": cpu_baseline,
        "baselineWallMedianSeconds": wall_baseline,
        "variants": variants,
        "samplesSeconds": {
            BASELINE_MODULE: [t.cpu_s for t in baseline],
            **{v: {m: [t.cpu_s for t in ts] for m, ts in ms.items()} for v, ms in samples.items()},
        },
        "wallSamplesSeconds": {
            BASELINE_MODULE: [t.wall_s for t in baseline],
            **{v: {m: [t.wall_s for t in ts] for m, ts in ms.items()} for v, ms in samples.items()},
        },
    }


def _describe(python: str) -> str:
    probe = "import platform; print(platform.python_implementation(), platform.python_version())"
    done = subprocess.run([python, "-S", "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def build_bundles(python_version: str, progress: Callable[[str], None]) -> dict[str, Any]:
    """Build the deployment bundle for each target (the Lambda ones for `python_version`);
    sizes and bytecode, or why a target could not be built."""
    from components.packaging import BundleError, BundleTarget, build_bundle

    targets = {
        "lambda-arm64": lambda: BundleTarget.lambda_runtime("arm64", python_version),
        "lambda-x86_64": lambda: BundleTarget.lambda_runtime("x86_64", python_version),
        "local": BundleTarget.local,
    }
    results: dict[str, Any] = {}
    for name, target in targets.items():
        progress(f"bundle {name}")
        try:
            bundle = build_bundle(target(), progress=progress, warn=progress)
        except BundleError as exc:
            results[name] = {"error": str(exc).splitlines()[0]}
            continue
        with zipfile.ZipFile(bundle.path) as archive:
            entries = archive.infolist()
        results[name] = {
            "path": str(bundle.path.relative_to(PROJECT_DIR)),
            "python": bundle.target.python_version,
            "zipBytes": bundle.size_bytes,
            "unzippedBytes": sum(entry.file_size for entry in entries),
            "files": len(entries),
            "bytecode": str(bundle.compiled_with) if bundle.compiled_with else None,
        }
    return results


def extract(bundle_path: Path, into: Path, *, bytecode: bool = True) -> Path:
    """Unpack `bundle_path` into `into`, leaving out its `__pycache__` entries unless `bytecode`."""
    with zipfile.ZipFile(bundle_path) as archive:
        members = [
            name for name in archive.namelist() if bytecode or "/__pycache__/" not in f"/{name}"
        ]
        archive.extractall(into, members=members)
    return into
