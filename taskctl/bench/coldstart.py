"""Cold-start proxy and artifact sizes.

Import time of each handler module against a bare `import boto3`, each the median of fresh
interpreters. The handlers import from the deployment bundle built for this machine (the same
builder and requirements as the Lambda bundles, extracted, first on `sys.path`), and boto3 from
the environment, as Lambda's runtime provides it. No bytecode is written: the bundle carries none
and Lambda's code directory is read-only, so the handlers' code is compiled on every cold start
there too, while boto3 (installed with bytecode here and in the runtime) is not. A proxy: compare
the ratios, not the absolute times.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
BASELINE_MODULE = "boto3"
HANDLER_MODULES = ("functions.api", "functions.worker", "functions.dead_letter")
_TIMER = (
    "import time; started = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - started)"
)


def import_seconds(module: str, python_path: str, *, python: str = sys.executable) -> float:
    """Seconds one fresh interpreter takes to import `module`."""
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONDONTWRITEBYTECODE": "1"}
    # Settings the handlers read lazily; set anyway so an eager read cannot fail the import.
    env.setdefault("POWERTOOLS_SERVICE_NAME", "bench")
    env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "FaultTolerantTasks")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result = subprocess.run(
        [python, "-c", _TIMER.format(module=module)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),  # not the project: only PYTHONPATH decides what is imported
    )
    if result.returncode != 0:
        raise RuntimeError(f"import {module} failed: {result.stderr.strip().splitlines()[-1:]}")
    return float(result.stdout.strip())


def measure_imports(
    python_path: str,
    *,
    runs: int = 9,
    progress: Callable[[str], None] = lambda _step: None,
) -> dict[str, Any]:
    """Median import time per module over `runs` interpreters, and ratios to bare boto3."""
    # Interleaved, so drift in machine load spreads over all modules alike.
    samples: dict[str, list[float]] = {m: [] for m in (BASELINE_MODULE, *HANDLER_MODULES)}
    for run in range(runs):
        for module in samples:
            progress(f"import {module} ({run + 1}/{runs})")
            samples[module].append(import_seconds(module, python_path))
    medians = {module: statistics.median(values) for module, values in samples.items()}
    baseline = medians[BASELINE_MODULE]
    return {
        "runs": runs,
        "medianSeconds": medians,
        "ratioToBoto3": {m: medians[m] / baseline for m in HANDLER_MODULES},
        "samplesSeconds": samples,
    }


def build_bundles(progress: Callable[[str], None]) -> dict[str, Any]:
    """Build the deployment bundle for each target; sizes, or why a target could not be built."""
    from components.packaging import BundleError, BundleTarget, build_bundle

    targets = {
        "lambda-arm64": lambda: BundleTarget.lambda_runtime("arm64"),
        "lambda-x86_64": lambda: BundleTarget.lambda_runtime("x86_64"),
        "local": BundleTarget.local,
    }
    results: dict[str, Any] = {}
    for name, target in targets.items():
        progress(f"bundle {name}")
        try:
            bundle = build_bundle(target(), progress=progress)
        except BundleError as exc:
            results[name] = {"error": str(exc).splitlines()[0]}
            continue
        with zipfile.ZipFile(bundle.path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
            files = len(archive.infolist())
        results[name] = {
            "path": str(bundle.path.relative_to(PROJECT_DIR)),
            "zipBytes": bundle.size_bytes,
            "unzippedBytes": unzipped,
            "files": files,
        }
    return results


def extract(bundle_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(bundle_path) as archive:
        archive.extractall(into)
    return into
