"""The functions bundle: right wheels for the target, reproducible bytes, importable as deployed."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from components.packaging import (
    BUILD_DIR,
    FUNCTIONS_DIR,
    Bundle,
    BundleError,
    BundleTarget,
    build_bundle,
)

HANDLER_MODULES = (
    "functions/api.py",
    "functions/worker.py",
    "functions/dead_letter.py",
    "functions/reconciler.py",
)
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
# What the Lambda runtime provides and the bundle must not carry (boto3 and its dependencies).
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "urllib3",
    "six",
)

_built: dict[str, Bundle] = {}


def _bundle(target: BundleTarget) -> Bundle:
    """Build each target once per session, in the project's shared `.build/` cache."""
    if target.name not in _built:
        _built[target.name] = build_bundle(target, progress=lambda _: None)
    return _built[target.name]


def _names(bundle: Bundle) -> list[str]:
    with zipfile.ZipFile(bundle.path) as archive:
        return archive.namelist()


@pytest.mark.parametrize("architecture", sorted(MACHINES))
def test_lambda_bundle_holds_the_handlers_and_wheels_for_its_architecture(architecture):
    bundle = _bundle(BundleTarget.lambda_runtime(architecture))
    names = _names(bundle)
    machine = MACHINES[architecture]
    for module in HANDLER_MODULES:
        assert module in names
    assert any(name.startswith("aws_lambda_powertools/") for name in names)
    assert any(name.startswith("pydantic/") for name in names)
    # THEN pydantic-core's native extension is built for CPython 3.12 on this architecture
    (extension,) = [n for n in names if n.startswith("pydantic_core/_pydantic_core.")]
    assert extension == f"pydantic_core/_pydantic_core.cpython-312-{machine}-linux-gnu.so"
    (wheel_file,) = [n for n in names if n.startswith("pydantic_core-") and n.endswith("/WHEEL")]
    with zipfile.ZipFile(bundle.path) as archive:
        wheel = archive.read(wheel_file).decode()
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags
    for tag in tags:
        python, abi, platform = tag.split("-")
        assert (python, abi) == ("cp312", "cp312")
        assert platform.startswith("manylinux") and platform.endswith(f"_{machine}"), tag


def test_bundle_carries_no_bytecode_no_scripts_and_nothing_the_runtime_provides():
    names = _names(_bundle(BundleTarget.lambda_runtime("arm64")))
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.startswith("bin/")]
    top_levels = {name.split("/")[0] for name in names}
    assert not top_levels & {"boto3", "botocore", "s3transfer"}


def test_bundle_entries_have_fixed_timestamps_and_permissions():
    with zipfile.ZipFile(_bundle(BundleTarget.lambda_runtime("arm64")).path) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def _build_dir_with_cached_dependencies(build_dir: Path, target: BundleTarget) -> Path:
    """A fresh build directory holding only the target's installed dependencies (no archive)."""
    for deps in (BUILD_DIR / "deps").glob(f"{target.name}-*"):
        shutil.copytree(deps, build_dir / "deps" / deps.name)
    return build_dir


def _copy_of_functions(into: Path) -> Path:
    return Path(shutil.copytree(FUNCTIONS_DIR, into, ignore=shutil.ignore_patterns("__pycache__")))


def _quiet_build(target: BundleTarget, source: Path, build_dir: Path) -> Bundle:
    return build_bundle(target, source_dir=source, build_dir=build_dir, progress=lambda _: None)


def test_rebuilding_from_scratch_gives_the_identical_hash(tmp_path):
    # GIVEN one copy of the code, built once
    target = BundleTarget.lambda_runtime("arm64")
    _bundle(target)  # makes sure the target's dependencies are in the shared cache
    source = _copy_of_functions(tmp_path / "functions")
    first = _quiet_build(
        target, source, _build_dir_with_cached_dependencies(tmp_path / "a", target)
    )
    # WHEN it is built again in a fresh directory, every file carrying another modification time
    second_dir = _build_dir_with_cached_dependencies(tmp_path / "b", target)
    for path in [*second_dir.rglob("*"), *source.rglob("*")]:
        os.utime(path, (1_000_000_000, 1_000_000_000))
    second = _quiet_build(target, source, second_dir)
    # THEN the two archives are byte for byte the same
    assert second.path != first.path
    assert second.sha256_b64 == first.sha256_b64
    assert second.path.read_bytes() == first.path.read_bytes()


def test_changing_the_code_changes_the_hash(tmp_path):
    target = BundleTarget.lambda_runtime("arm64")
    _bundle(target)
    source = _copy_of_functions(tmp_path / "functions")
    before = _quiet_build(
        target, source, _build_dir_with_cached_dependencies(tmp_path / "a", target)
    )
    with (source / "settings.py").open("a") as module:
        module.write("\n# changed\n")
    after = _quiet_build(
        target, source, _build_dir_with_cached_dependencies(tmp_path / "b", target)
    )
    assert after.sha256_b64 != before.sha256_b64


def test_unknown_architecture_and_target_are_rejected_by_name():
    with pytest.raises(BundleError, match="architecture='sparc'"):
        BundleTarget.lambda_runtime("sparc")
    with pytest.raises(BundleError, match="TASKS_BUNDLE_TARGET='docker'"):
        BundleTarget.from_environment({"TASKS_BUNDLE_TARGET": "docker"}, "arm64")


def test_bundle_target_comes_from_the_environment_defaulting_to_the_lambda_runtime():
    assert BundleTarget.from_environment({}, "x86_64") == BundleTarget.lambda_runtime("x86_64")
    assert BundleTarget.from_environment({"TASKS_BUNDLE_TARGET": "local"}, "arm64") == (
        BundleTarget.local()
    )


def _runtime_provided_packages(into: Path) -> Path:
    """A directory with only boto3 and its dependencies, as the Lambda runtime provides them."""
    into.mkdir()
    for distribution_name in RUNTIME_PROVIDED:
        distribution = importlib.metadata.distribution(distribution_name)
        tops = {
            file.parts[0]
            for file in distribution.files or []
            if not file.parts[0].endswith(".dist-info") and file.parts[0] not in ("..", "bin")
        }
        for top in tops:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)
    return into


def test_handlers_import_from_the_local_bundle_in_a_clean_interpreter(tmp_path):
    # GIVEN the bundle built for this interpreter, unpacked as Lambda unpacks it
    bundle = _bundle(BundleTarget.local())
    task_root = tmp_path / "task"
    with zipfile.ZipFile(bundle.path) as archive:
        archive.extractall(task_root)
    runtime_packages = _runtime_provided_packages(tmp_path / "runtime")
    # WHEN an isolated interpreter without site-packages imports every handler
    handlers = [module.removesuffix(".py").replace("/", ".") for module in HANDLER_MODULES]
    probe = (
        "import importlib, sys; sys.path[:0] = sys.argv[1:3]\n"
        "import pydantic_core\n"
        f"modules = [importlib.import_module(name) for name in {handlers!r}]\n"
        "assert all(callable(module.handler) for module in modules)\n"
        "print(pydantic_core.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(task_root), str(runtime_packages)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    # THEN they import, and pydantic-core came from the bundle, not from this virtualenv
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(task_root)
