"""The functions bundle: right wheels for the target, bytecode when a matching interpreter is at
hand, reproducible bytes, importable as deployed."""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from components.packaging import (
    BUILD_DIR,
    FUNCTIONS_DIR,
    Bundle,
    BundleError,
    BundleTarget,
    Interpreter,
    build_bundle,
    find_python,
)
from functions.settings import StackSettings
from taskctl.bench.coldstart import extract, link_runtime_provided_packages

HANDLER_MODULES = (
    "functions/api.py",
    "functions/worker.py",
    "functions/dead_letter.py",
    "functions/reconciler.py",
)
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
DEFAULT_PYTHON = StackSettings().functionPythonVersion
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# The unchecked-hash .pyc of PEP 552: bit 0 "hash-based", bit 1 "check the source" clear.
PYC_FLAGS_UNCHECKED_HASH = 0b01
HEAD_BYTES = 16  # magic, flags, source hash

_built: dict[str, Bundle] = {}


def _no_python(_version: str) -> None:
    return None


def _bundle(target: BundleTarget, *, bytecode: bool = True) -> Bundle:
    """Build each target once per session, in the project's shared `.build/` cache; without
    bytecode (as where no interpreter of its version is at hand) unless `bytecode`."""
    key = f"{target.name}-{bytecode}"
    if key not in _built:
        _built[key] = build_bundle(
            target,
            progress=lambda _: None,
            warn=lambda _: None,
            python_finder=find_python if bytecode else _no_python,
        )
    return _built[key]


def _lambda_target(architecture: str = "arm64") -> BundleTarget:
    return BundleTarget.lambda_runtime(architecture, DEFAULT_PYTHON)


def _names(bundle: Bundle) -> list[str]:
    with zipfile.ZipFile(bundle.path) as archive:
        return archive.namelist()


@pytest.mark.parametrize("architecture", sorted(MACHINES))
def test_lambda_bundle_holds_the_handlers_and_wheels_for_its_architecture(architecture):
    bundle = _bundle(_lambda_target(architecture), bytecode=False)
    names = _names(bundle)
    machine = MACHINES[architecture]
    cp = "cp" + DEFAULT_PYTHON.replace(".", "")
    for module in HANDLER_MODULES:
        assert module in names
    assert any(name.startswith("aws_lambda_powertools/") for name in names)
    assert any(name.startswith("pydantic/") for name in names)
    # THEN pydantic-core's native extension is built for the stack's CPython on this architecture
    (extension,) = [n for n in names if n.startswith("pydantic_core/_pydantic_core.")]
    assert extension == f"pydantic_core/_pydantic_core.cpython-{cp[2:]}-{machine}-linux-gnu.so"
    (wheel_file,) = [n for n in names if n.startswith("pydantic_core-") and n.endswith("/WHEEL")]
    with zipfile.ZipFile(bundle.path) as archive:
        wheel = archive.read(wheel_file).decode()
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags
    for tag in tags:
        python, abi, platform_tag = tag.split("-")
        assert (python, abi) == (cp, cp)
        assert platform_tag.startswith("manylinux") and platform_tag.endswith(f"_{machine}"), tag


def test_a_bundle_without_an_interpreter_of_its_version_ships_source_and_says_so_once():
    # GIVEN no CPython of the target's version at hand
    warnings: list[str] = []
    bundle = build_bundle(
        _lambda_target(),
        progress=lambda _: None,
        warn=warnings.append,
        python_finder=_no_python,
    )
    names = _names(bundle)
    # THEN it carries no bytecode, no scripts and nothing the runtime provides
    assert bundle.compiled_with is None
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.startswith("bin/")]
    top_levels = {name.split("/")[0] for name in names}
    assert not top_levels & {"boto3", "botocore", "s3transfer"}
    # AND one warning says what is missing, what it costs and how to fix it
    (warning,) = warnings
    assert f"no CPython {DEFAULT_PYTHON}" in warning
    assert "cold start" in warning
    assert f"put python{DEFAULT_PYTHON} on PATH" in warning
    assert "functionPythonVersion" in warning


def test_the_local_bundle_always_ships_unchecked_hash_bytecode_for_every_module():
    bundle = _bundle(BundleTarget.local())
    assert bundle.compiled_with == Interpreter(sys.executable, platform.python_version())
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(bundle.path) as archive:
        names = set(archive.namelist())
        sources = [n for n in names if n.endswith(".py")]
        pycs = {n for n in names if n.endswith(".pyc")}
        # THEN every module has its .pyc where this interpreter looks for it
        for source in sources:
            folder, _, file_name = source.rpartition("/")
            cached = f"{folder + '/' if folder else ''}__pycache__/{file_name[:-3]}.{tag}.pyc"
            assert cached in pycs, source
        # AND each is hash-based and unchecked, so no timestamp is in it and none is checked
        for pyc in ("functions/__pycache__/worker." + tag + ".pyc", *sorted(pycs)[:50]):
            head = archive.read(pyc)[:HEAD_BYTES]
            assert int.from_bytes(head[4:8], "little") == PYC_FLAGS_UNCHECKED_HASH, pyc
    assert len(pycs) == len(sources)


@pytest.mark.parametrize("bytecode", [True, False], ids=["bytecode", "source-only"])
def test_bundle_entries_have_fixed_timestamps_and_permissions(bytecode):
    target = BundleTarget.local() if bytecode else _lambda_target()
    with zipfile.ZipFile(_bundle(target, bytecode=bytecode).path) as archive:
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
    """A copy of `functions/` at `into/functions` (the archive names its files by that name)."""
    return Path(
        shutil.copytree(
            FUNCTIONS_DIR, into / "functions", ignore=shutil.ignore_patterns("__pycache__")
        )
    )


def _quiet_build(target: BundleTarget, source: Path, build_dir: Path) -> Bundle:
    return build_bundle(
        target, source_dir=source, build_dir=build_dir, progress=lambda _: None, warn=lambda _: None
    )


_from_scratch: dict[str, Bundle] = {}


def _built_from_scratch(target: BundleTarget, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The target's bundle built from a copy of the code in a fresh build directory (its
    bytecode compiled there too): once per session, the reference the tests below build against
    again, changed or not."""
    if target.name not in _from_scratch:
        _bundle(target)  # makes sure the target's dependencies are in the shared cache
        scratch = tmp_path_factory.mktemp(f"from-scratch-{target.name}")
        source = _copy_of_functions(scratch / "code")
        build_dir = _build_dir_with_cached_dependencies(scratch / "build", target)
        _from_scratch[target.name] = _quiet_build(target, source, build_dir)
    return _from_scratch[target.name]


@pytest.mark.parametrize(
    "target", [BundleTarget.local(), _lambda_target()], ids=["local-bytecode", "lambda"]
)
def test_rebuilding_from_scratch_gives_the_identical_hash(tmp_path, tmp_path_factory, target):
    # GIVEN the code built once from scratch (the local target with its bytecode)
    first = _built_from_scratch(target, tmp_path_factory)
    # WHEN another copy of it is built again in another fresh directory (the bytecode compiled
    # again), every file carrying another modification time and the sources other permissions
    source = _copy_of_functions(tmp_path)
    second_dir = _build_dir_with_cached_dependencies(tmp_path / "b", target)
    for path in [*second_dir.rglob("*"), *source.rglob("*")]:
        os.utime(path, (1_000_000_000, 1_000_000_000))
    for module in source.glob("*.py"):
        module.chmod(stat.S_IRUSR | stat.S_IWUSR)
    second = _quiet_build(target, source, second_dir)
    # THEN the two archives are byte for byte the same
    assert second.path != first.path
    assert second.sha256_b64 == first.sha256_b64
    assert second.path.read_bytes() == first.path.read_bytes()
    if target.python_version == RUNNING_PYTHON:
        assert first.compiled_with is not None
        assert "functions/__pycache__/settings." + sys.implementation.cache_tag + ".pyc" in (
            _names(first)
        )


def test_changing_the_code_changes_the_hash_and_its_bytecode(tmp_path, tmp_path_factory):
    target = BundleTarget.local()
    before = _built_from_scratch(target, tmp_path_factory)
    source = _copy_of_functions(tmp_path)
    with (source / "settings.py").open("a") as module:
        module.write("\n# changed\n")
    after = _quiet_build(
        target, source, _build_dir_with_cached_dependencies(tmp_path / "b", target)
    )
    assert after.sha256_b64 != before.sha256_b64
    pyc = "functions/__pycache__/settings." + sys.implementation.cache_tag + ".pyc"
    with zipfile.ZipFile(before.path) as old, zipfile.ZipFile(after.path) as new:
        assert old.read(pyc) != new.read(pyc)


def test_unknown_architecture_python_and_target_are_rejected_by_name():
    with pytest.raises(BundleError, match="architecture='sparc'"):
        BundleTarget.lambda_runtime("sparc", DEFAULT_PYTHON)
    with pytest.raises(BundleError, match=r"python='3\.9' is not a Lambda Python runtime"):
        BundleTarget.lambda_runtime("arm64", "3.9")
    with pytest.raises(BundleError, match="TASKS_BUNDLE_TARGET='docker'"):
        BundleTarget.from_environment({"TASKS_BUNDLE_TARGET": "docker"}, "arm64", DEFAULT_PYTHON)


def test_bundle_target_comes_from_the_environment_defaulting_to_the_lambda_runtime():
    assert BundleTarget.from_environment({}, "x86_64", "3.13") == BundleTarget.lambda_runtime(
        "x86_64", "3.13"
    )
    assert BundleTarget.lambda_runtime("x86_64", "3.13").lambda_runtime_id == "python3.13"
    assert BundleTarget.from_environment({"TASKS_BUNDLE_TARGET": "local"}, "arm64", "3.13") == (
        BundleTarget.local()
    )


# -- finding an interpreter to compile with ----------------------------------------------------


def _fake_python(directory: Path, name: str, script: str) -> Path:
    """An executable `name` in `directory` running `script` (sh), whatever its arguments."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_the_running_interpreter_compiles_for_its_own_version():
    assert find_python(RUNNING_PYTHON, search_path="") == Interpreter(
        sys.executable, platform.python_version()
    )


def test_a_python3_x_on_path_is_used_only_if_it_is_that_cpython(tmp_path):
    # A version other than the running interpreter's, which find_python would take first.
    wanted = "3.12" if sys.version_info[:2] == (3, 13) else "3.13"
    # GIVEN executables on PATH that claim to be, or fail to be, the version sought
    good = _fake_python(tmp_path / "good", f"python{wanted}", f"echo cpython {wanted}.5")
    _fake_python(
        tmp_path / "shim",
        f"python{wanted}",
        f"echo 'pyenv: python{wanted}: not found' >&2; exit 127",
    )
    _fake_python(tmp_path / "older", f"python{wanted}", "echo cpython 3.11.7")
    _fake_python(tmp_path / "pypy", f"python{wanted}", f"echo pypy {wanted}.1")
    # THEN only the one that runs and reports CPython of that version counts
    assert find_python(wanted, search_path=str(good.parent)) == Interpreter(
        str(good), f"{wanted}.5"
    )
    for name in ("shim", "older", "pypy"):
        assert find_python(wanted, search_path=str(tmp_path / name)) is None, name
    assert find_python(wanted, search_path=str(tmp_path / "nothing-here")) is None


# Imports every handler from `sys.argv[1]` (the task root), then `sys.argv[2]` (what the
# runtime provides), as Lambda would; prints where pydantic-core came from, then each module of
# the task root that was compiled from source rather than loaded from bytecode.
_IMPORT_PROBE = """
import importlib, sys
sys.path[:0] = sys.argv[1:3]
import importlib._bootstrap_external as loading
compiled, to_code = [], loading.SourceLoader.source_to_code
def noting(self, data, path, *args, **kwargs):
    compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)
loading.SourceLoader.source_to_code = noting
import pydantic_core
modules = [importlib.import_module(name) for name in {handlers!r}]
assert all(callable(module.handler) for module in modules)
print(pydantic_core.__file__)
print(*[path for path in compiled if path.startswith(sys.argv[1])], sep="\\n")
"""


def _import_handlers(task_root: Path, runtime_packages: Path) -> tuple[Path, list[str]]:
    """Import every handler in an isolated interpreter without site-packages that writes no
    bytecode (Lambda's code directory is read-only): pydantic-core's file, and the modules of
    the task root compiled from source."""
    handlers = [module.removesuffix(".py").replace("/", ".") for module in HANDLER_MODULES]
    probe = _IMPORT_PROBE.format(handlers=handlers)
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", probe, str(task_root), str(runtime_packages)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    extension, *compiled_from_source = result.stdout.strip().splitlines()
    return Path(extension), compiled_from_source


def test_handlers_import_from_the_local_bundle_in_a_clean_interpreter_using_its_bytecode(tmp_path):
    # GIVEN the bundle built for this interpreter, unpacked as Lambda unpacks it
    task_root = extract(_bundle(BundleTarget.local()).path, tmp_path / "task")
    runtime_packages = link_runtime_provided_packages(tmp_path / "runtime")
    assert {path.name for path in runtime_packages.iterdir()} >= {"boto3", "botocore"}
    # WHEN an interpreter as Lambda's imports every handler
    extension, compiled_from_source = _import_handlers(task_root, runtime_packages)
    # THEN they import, pydantic-core came from the bundle, not from this virtualenv
    assert extension.is_relative_to(task_root)
    # AND no module of the bundle was compiled: the interpreter took the bundle's bytecode
    assert compiled_from_source == []


def test_without_its_bytecode_the_same_bundle_is_compiled_on_import(tmp_path):
    # The check above would pass vacuously if the probe could not see compilation: here it
    # sees every module the handlers import from a source-only copy of the same bundle.
    bundle = _bundle(BundleTarget.local())
    task_root = extract(bundle.path, tmp_path / "task", bytecode=False)
    runtime_packages = link_runtime_provided_packages(tmp_path / "runtime")
    _, compiled_from_source = _import_handlers(task_root, runtime_packages)
    assert str(task_root / "functions" / "worker.py") in compiled_from_source
    assert any("/pydantic/" in path for path in compiled_from_source)


def test_a_build_removes_only_bundles_of_other_content_that_nothing_used_lately(tmp_path):
    # GIVEN a build directory holding, beside the target's dependencies, a bundle of other
    # content unused for a day and one another build (a test worker, `make local`) just made
    target = BundleTarget.local()
    build_dir = _build_dir_with_cached_dependencies(tmp_path / "build", target)
    bundles = build_dir / "bundles"
    bundles.mkdir()
    forgotten, in_use = bundles / f"{target.name}-0ld.zip", bundles / f"{target.name}-n3w.zip"
    for other in (forgotten, in_use):
        other.write_bytes(b"another version of the code")
    day_ago = time.time() - 86_400
    os.utime(forgotten, (day_ago, day_ago))

    # WHEN this code's bundle is built
    built = build_bundle(
        target, build_dir=build_dir, progress=lambda _: None, python_finder=_no_python,
        warn=lambda _: None,
    )  # fmt: skip

    # THEN the forgotten one is gone, and the one in use is still there to be read
    assert sorted(path.name for path in bundles.glob("*.zip")) == sorted(
        [built.path.name, in_use.name]
    )
