"""The functions' deployment bundle: `functions/` plus its requirements, built for one platform.

One builder serves both ways the code runs:

- `BundleTarget.lambda_runtime(arch, python)`: wheels for a Lambda Python runtime (CPython
  `python`, the stack's `functionPythonVersion`, on Amazon Linux 2023, manylinux, aarch64 or
  x86_64) fetched with `pip install --platform ... --only-binary=:all:`, so the bundle never
  carries a native extension built for the machine that ran `pulumi up`.
- `BundleTarget.local()`: the running interpreter's own platform and version, for the local
  emulator, which runs the functions in local subprocesses.

Bytecode: Lambda's code directory is read-only, so a bundle without `.pyc` files makes every cold
start compile every module a handler imports: 40 to 50 % of its import time (README, "Cold
start"). The builder compiles the bundle's modules when it can run a CPython of exactly the
target's version: the interpreter running the build, or `python3.X` on PATH (the local target
always has one). Otherwise the bundle ships source only and the build says so in one warning line.

The archive is reproducible: entries sorted, fixed timestamps and permissions, and the bytecode
written as unchecked-hash `.pyc` files (PEP 552: no source timestamp inside; the interpreter
trusts them without reading the source) compiled in a fixed order with a fixed hash seed. The
same inputs (sources, requirements, target, and the compiling interpreter's version) give the
same bytes and so the same `sha256_b64`, which the function passes as `source_code_hash`, so
`pulumi up` does not redeploy unchanged code.

Installed dependencies are cached under `.build/deps/`, keyed by the requirements file and the
target; archives under `.build/bundles/`, keyed by their content.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import typing
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from functions.settings import LambdaPythonVersion

PROJECT_DIR = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = PROJECT_DIR / "functions"
FUNCTIONS_REQUIREMENTS = FUNCTIONS_DIR / "requirements.txt"
BUILD_DIR = PROJECT_DIR / ".build"

LAMBDA_PYTHON_VERSIONS: tuple[str, ...] = typing.get_args(LambdaPythonVersion)
# Set by the local-stack tooling (`taskctl local`) to build for this machine's interpreter; unset
# (as under `pulumi up`) the bundle targets the Lambda runtime of the stack's architecture.
BUNDLE_TARGET_ENV = "TASKS_BUNDLE_TARGET"
LOCAL_TARGET = "local"

# The earliest timestamp a zip entry can carry: every entry gets it, so the archive's bytes do not
# depend on when or where the files were checked out.
ZIP_FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--: Lambda needs files readable, nothing more
ZIP_CREATE_SYSTEM_UNIX = 3  # what the mode bits above mean; the default varies by host OS
ZIP_COMPRESS_LEVEL = 9
# A bundle of other content than the one just built is removed once unused for this long.
STALE_BUNDLE_AFTER_S = 3600

_LAMBDA_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
_INSTALL_MARKER = ".installed"
# Bytecode found in a source tree (a local run's __pycache__) is never shipped: the builder
# compiles its own, reproducibly. `bin`: console scripts pip adds next to packages.
_SKIPPED_DIRS = {"__pycache__", "bin"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
# How long a found `python3.X` may take to say what it is (a cold pyenv shim is slow).
_PROBE_TIMEOUT_S = 30
_PROBE = "import platform, sys; print(sys.implementation.name, platform.python_version())"
# Run by the compiling interpreter: one unchecked-hash .pyc per (source, archive name) read from
# stdin, named as that interpreter caches it (`__pycache__/<mod>.cpython-3X.pyc`); prints the
# archive names of the sources it could not compile. `dfile` puts the archive name, not this
# machine's path, in the code objects (the import system replaces it with the real path).
_COMPILER = """
import importlib.util, json, py_compile, sys
out, failed = sys.argv[1], []
for source, name in json.load(sys.stdin):
    cache = importlib.util.cache_from_source(name, optimization="")
    try:
        py_compile.compile(
            source, cfile=f"{out}/{cache}", dfile=name, doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError:
        failed.append(name)
json.dump(failed, sys.stdout)
"""

Progress = Callable[[str], None]


class BundleError(RuntimeError):
    """The bundle could not be built; the message says which step failed and why."""


@dataclass(frozen=True, kw_only=True)
class BundleTarget:
    """Where a bundle will run: names the cache entries and selects the wheels pip installs.

    `lambda_runtime_id` is the Lambda runtime the bundle is built for (`python3.14`), or None
    for the local target, which runs on this machine's interpreter.
    """

    name: str
    python_version: str
    pip_platform_args: tuple[str, ...]
    lambda_runtime_id: str | None = None

    @classmethod
    def lambda_runtime(cls, architecture: str, python: str) -> BundleTarget:
        """The Lambda runtime `python3.X` (`python` = "3.X") on manylinux for `architecture`."""
        machine = _LAMBDA_MACHINES.get(architecture)
        if machine is None:
            raise BundleError(
                f"architecture={architecture!r} is not a Lambda architecture; "
                f"choose one of {', '.join(_LAMBDA_MACHINES)}"
            )
        if python not in LAMBDA_PYTHON_VERSIONS:
            raise BundleError(
                f"python={python!r} is not a Lambda Python runtime this bundle supports; "
                f"choose one of {', '.join(LAMBDA_PYTHON_VERSIONS)}"
            )
        platform_args: list[str] = []
        # manylinux2014 (glibc 2.17) is what most wheels publish; 2_28 lets pip take newer wheels
        # too, since every supported runtime (Amazon Linux 2023) has glibc 2.34.
        for platform_tag in (f"manylinux2014_{machine}", f"manylinux_2_28_{machine}"):
            platform_args += ["--platform", platform_tag]
        platform_args += [
            "--implementation",
            "cp",
            "--python-version",
            python,
            "--only-binary=:all:",
        ]
        return cls(
            name=f"lambda-{architecture}-py{python}",
            python_version=python,
            pip_platform_args=tuple(platform_args),
            lambda_runtime_id=f"python{python}",
        )

    @classmethod
    def local(cls) -> BundleTarget:
        """This interpreter: pip installs what the running Python itself would import."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        platform_tag = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return cls(
            name=f"local-{sys.implementation.name}{version}-{platform_tag}",
            python_version=version,
            pip_platform_args=(),
        )

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str], architecture: str, python: str
    ) -> BundleTarget:
        """`TASKS_BUNDLE_TARGET=local` selects this interpreter; unset, the Lambda runtime
        `python3.X` (`python`) for `architecture`."""
        requested = environ.get(BUNDLE_TARGET_ENV, "").strip()
        if requested == LOCAL_TARGET:
            return cls.local()
        if requested not in ("", "lambda"):
            raise BundleError(
                f"{BUNDLE_TARGET_ENV}={requested!r} is not a bundle target; use '{LOCAL_TARGET}' "
                "or leave it unset for the Lambda runtime"
            )
        return cls.lambda_runtime(architecture, python)


@dataclass(frozen=True)
class Interpreter:
    """A CPython that compiles a bundle's bytecode: where it is and its full version."""

    path: str
    version: str  # "3.14.2": bytecode can differ between patch releases, so it keys the cache

    def __str__(self) -> str:
        return f"CPython {self.version}"


def find_python(version: str, *, search_path: str | None = None) -> Interpreter | None:
    """A CPython of exactly `version` ("3.X"): this one, else `python3.X` on PATH, else None.

    A candidate on PATH is run to ask its version, so a stale link or a pyenv shim for a version
    that is not active (it exits non-zero) does not count.
    """
    if sys.implementation.name == "cpython" and _minor(platform.python_version()) == version:
        return Interpreter(sys.executable, platform.python_version())
    found = shutil.which(f"python{version}", path=search_path)
    if found is None:
        return None
    try:
        probe = subprocess.run(
            [found, "-S", "-c", _PROBE],
            env=_clean_python_env(),
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    implementation, _, full_version = probe.stdout.strip().partition(" ")
    if probe.returncode != 0 or implementation != "cpython" or _minor(full_version) != version:
        return None
    return Interpreter(found, full_version)


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A built archive: its path and the base64 SHA-256 of its bytes (Lambda's CodeSha256 form).

    `compiled_with` is the interpreter whose bytecode it carries, None when it ships source only.
    """

    path: Path
    sha256_b64: str
    size_bytes: int
    target: BundleTarget
    compiled_with: Interpreter | None


def build_bundle(
    target: BundleTarget,
    *,
    source_dir: Path = FUNCTIONS_DIR,
    requirements: Path = FUNCTIONS_REQUIREMENTS,
    build_dir: Path = BUILD_DIR,
    progress: Progress | None = None,
    warn: Progress | None = None,
    python_finder: Callable[[str], Interpreter | None] = find_python,
) -> Bundle:
    """Build (or reuse) the zip of `source_dir` and its requirements for `target`.

    The archive holds `<source_dir name>/...` plus the installed requirements at its root, so the
    handler `functions.worker.handler` imports as it does here, and the bytecode of every module
    when `python_finder` finds a CPython of the target's version. Without one, `warn` (by default
    a line on stderr; the program passes `pulumi.log.warn`) gets one line: what is missing, what
    it costs, how to fix it. Needs PyPI the first time a target's dependencies are installed;
    later builds reuse `.build/deps/`.
    """
    say = progress or _print_progress
    deps_dir = _install_dependencies(target, requirements, build_dir, say)
    sources = sorted(
        [*_files_under(deps_dir, prefix=""), *_files_under(source_dir, prefix=source_dir.name)]
    )
    _reject_duplicates(sources)
    compiler = python_finder(target.python_version)
    if compiler is None:
        (warn or _print_warning)(_source_only_warning(target, sources))
    # The compiling interpreter's version is an input: its bytecode is part of the archive.
    content_key = _content_digest(sources, f"bytecode {compiler.version}" if compiler else "")
    bundles_dir = build_dir / "bundles"
    bundle_path = bundles_dir / f"{target.name}-{content_key[:20]}.zip"
    if bundle_path.exists():
        os.utime(bundle_path)  # in use again: not stale for a build of other content
    else:
        bundles_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".bytecode-", dir=build_dir) as scratch:
            bytecode = _compile(compiler, sources, Path(scratch), say) if compiler else []
            _write_zip(bundle_path, sorted([*sources, *bytecode]))
        _remove_stale_bundles(bundles_dir, target, keep=bundle_path)
    data = bundle_path.read_bytes()
    return Bundle(
        path=bundle_path,
        sha256_b64=base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"),
        size_bytes=len(data),
        target=target,
        compiled_with=compiler,
    )


# -- dependencies -----------------------------------------------------------------------------


def _install_dependencies(
    target: BundleTarget, requirements: Path, build_dir: Path, say: Progress
) -> Path:
    """pip-install `requirements` for `target` into a cached directory; return that directory."""
    if not requirements.is_file():
        raise BundleError(f"requirements file {requirements} does not exist")
    key = hashlib.sha256(
        requirements.read_bytes() + "\0".join(target.pip_platform_args).encode()
    ).hexdigest()[:16]
    deps_root = build_dir / "deps"
    deps_dir = deps_root / f"{target.name}-{key}"
    if (deps_dir / _INSTALL_MARKER).exists():
        return deps_dir

    # Install into a private directory and rename it into place only when complete, so an
    # interrupted build never leaves a half-filled cache entry that later builds would trust.
    staging = deps_root / f".staging-{target.name}-{key}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    say(f"bundle {target.name}: installing {requirements.name} (first build downloads wheels)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",  # pip's bytecode is not reproducible; the builder compiles its own
        "--quiet",
        "--target",
        str(staging),
        *target.pip_platform_args,
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(
            f"pip could not install {requirements} for {target.name} "
            f"(exit {result.returncode}):\n{result.stderr.strip()[-2000:]}"
        )
    for skipped in _SKIPPED_DIRS:
        shutil.rmtree(staging / skipped, ignore_errors=True)
    (staging / _INSTALL_MARKER).write_text(" ".join(command[3:]) + "\n")
    try:
        staging.rename(deps_dir)
    except OSError:  # another build finished the same entry first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    say(f"bundle {target.name}: dependencies cached in {deps_dir.relative_to(build_dir.parent)}")
    return deps_dir


# -- the archive ------------------------------------------------------------------------------


def _files_under(
    root: Path, *, prefix: str, include_bytecode: bool = False
) -> Iterator[tuple[str, Path]]:
    """(archive name, path) for every file that belongs in the bundle; bytecode (unless
    `include_bytecode`: the builder's own), scripts and markers out."""
    skipped_dirs = _SKIPPED_DIRS - {"__pycache__"} if include_bytecode else _SKIPPED_DIRS
    skipped_suffixes = () if include_bytecode else _SKIPPED_SUFFIXES
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if name not in skipped_dirs]
        for file_name in files:
            if file_name.endswith(skipped_suffixes) or file_name == _INSTALL_MARKER:
                continue
            path = Path(directory) / file_name
            relative = path.relative_to(root).as_posix()
            yield (f"{prefix}/{relative}" if prefix else relative), path


def _reject_duplicates(entries: list[tuple[str, Path]]) -> None:
    names = [name for name, _ in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BundleError(f"two sources give the same bundle entries: {', '.join(duplicates[:5])}")


def _content_digest(entries: list[tuple[str, Path]], variant: str) -> str:
    digest = hashlib.sha256(variant.encode() + b"\0")
    for name, path in entries:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# -- bytecode ---------------------------------------------------------------------------------


def _compile(
    compiler: Interpreter, sources: list[tuple[str, Path]], into: Path, say: Progress
) -> list[tuple[str, Path]]:
    """(archive name, path) of an unchecked-hash .pyc for every module in `sources`.

    One process compiles them all, in archive-name order and with a fixed hash seed, so the same
    sources give the same bytes. A source the interpreter cannot compile (Python 2 leftovers in a
    package's examples) gets no .pyc, as pip does it: Python compiles it if it is ever imported.
    """
    modules = [(str(path), name) for name, path in sources if name.endswith(".py")]
    result = subprocess.run(
        [compiler.path, "-S", "-c", _COMPILER, str(into)],
        input=json.dumps(modules),
        env={**_clean_python_env(), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BundleError(
            f"{compiler} ({compiler.path}) could not compile the bundle's bytecode "
            f"(exit {result.returncode}):\n{result.stderr.strip()[-2000:]}"
        )
    skipped = json.loads(result.stdout)
    if skipped:
        say(f"bundle: {len(skipped)} module(s) ship without bytecode: {', '.join(skipped[:5])}")
    compiled = _files_under(into, prefix="", include_bytecode=True)
    return sorted((name, path) for name, path in compiled if name.endswith(".pyc"))


def _source_only_warning(target: BundleTarget, sources: list[tuple[str, Path]]) -> str:
    version = target.python_version
    others = [v for v in LAMBDA_PYTHON_VERSIONS if v != version]
    source_mb = sum(path.stat().st_size for name, path in sources if name.endswith(".py")) / 1e6
    return (
        f"bundle {target.name} ships source only: no CPython {version} here (this is "
        f"{platform.python_implementation()} {platform.python_version()}, and no working "
        f"python{version} on PATH), so every cold start compiles what its handler imports from "
        f"the bundle's {source_mb:.0f} MB of Python source: imports take 1.6 to 2 times as long "
        f'(README, "Cold start"). To ship bytecode, put python{version} on PATH and run again, '
        f"or set functionPythonVersion to a version you have ({', '.join(others)})."
    )


def _clean_python_env() -> dict[str, str]:
    """This environment without PYTHON* variables (PYTHONPATH, PYTHONSTARTUP, ...): they would
    change what a child interpreter imports or compiles. PATH and pyenv's variables stay."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


def _minor(version: str) -> str:
    """ "3.14.2" -> "3.14"."""
    return ".".join(version.split(".")[:2])


def _write_zip(bundle_path: Path, entries: list[tuple[str, Path]]) -> None:
    staging = bundle_path.with_suffix(f".{os.getpid()}.tmp")
    with zipfile.ZipFile(staging, "w") as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_FIXED_TIMESTAMP)
            info.create_system = ZIP_CREATE_SYSTEM_UNIX
            info.external_attr = ZIP_FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=ZIP_COMPRESS_LEVEL)
    staging.replace(bundle_path)


def _remove_stale_bundles(bundles_dir: Path, target: BundleTarget, *, keep: Path) -> None:
    """Remove the target's bundles of other content that no build has used for a while. Not
    every other one: a build of other content in this checkout at the same time (`make test`
    beside `make local` or `pulumi up`, or two test workers) may still be reading its own."""
    unused_since = time.time() - STALE_BUNDLE_AFTER_S
    for old in bundles_dir.glob(f"{target.name}-*.zip"):
        with contextlib.suppress(FileNotFoundError):  # another build removed it first
            if old != keep and old.stat().st_mtime < unused_since:
                old.unlink()


def _print_progress(message: str) -> None:
    # stderr, so progress never mixes with a command's machine-readable output on stdout.
    print(message, file=sys.stderr, flush=True)


def _print_warning(message: str) -> None:
    _print_progress(f"warning: {message}")
