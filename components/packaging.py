"""The functions' deployment bundle: `functions/` plus its requirements, built for one platform.

One builder serves both ways the code runs:

- `BundleTarget.lambda_runtime(arch)`: wheels for the Lambda runtime (CPython 3.12 on Amazon Linux,
  manylinux, aarch64 or x86_64) fetched with `pip install --platform ... --only-binary=:all:`, so
  the bundle never carries a native extension built for the machine that ran `pulumi up`.
- `BundleTarget.local()`: the running interpreter's own platform and version, for the local
  emulator, which runs the functions in local subprocesses.

The archive is reproducible: entries sorted, fixed timestamps and permissions, no bytecode. The
same inputs give the same bytes and so the same `sha256_b64`, which the function passes as
`source_code_hash`, so `pulumi up` does not redeploy unchanged code.

Installed dependencies are cached under `.build/deps/`, keyed by the requirements file and the
target; archives under `.build/bundles/`, keyed by their content.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = PROJECT_DIR / "functions"
FUNCTIONS_REQUIREMENTS = FUNCTIONS_DIR / "requirements.txt"
BUILD_DIR = PROJECT_DIR / ".build"

LAMBDA_PYTHON_VERSION = "3.12"  # the functions' runtime, python3.12
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

_LAMBDA_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
_INSTALL_MARKER = ".installed"
_SKIPPED_DIRS = {"__pycache__", "bin"}  # bytecode, and console scripts pip adds next to packages
_SKIPPED_SUFFIXES = (".pyc", ".pyo")

Progress = Callable[[str], None]


class BundleError(RuntimeError):
    """The bundle could not be built; the message says which step failed and why."""


@dataclass(frozen=True, kw_only=True)
class BundleTarget:
    """Where a bundle will run: names the cache entries and selects the wheels pip installs."""

    name: str
    python_version: str
    pip_platform_args: tuple[str, ...]

    @classmethod
    def lambda_runtime(cls, architecture: str, python: str = LAMBDA_PYTHON_VERSION) -> BundleTarget:
        """The Lambda runtime: CPython `python` on manylinux for `architecture` (arm64/x86_64)."""
        machine = _LAMBDA_MACHINES.get(architecture)
        if machine is None:
            raise BundleError(
                f"architecture={architecture!r} is not a Lambda architecture; "
                f"choose one of {', '.join(_LAMBDA_MACHINES)}"
            )
        platform_args: list[str] = []
        # manylinux2014 (glibc 2.17) is what most wheels publish; 2_28 lets pip take newer wheels
        # too, since the python3.12 runtime (Amazon Linux 2023) has glibc 2.34.
        for platform in (f"manylinux2014_{machine}", f"manylinux_2_28_{machine}"):
            platform_args += ["--platform", platform]
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
        )

    @classmethod
    def local(cls) -> BundleTarget:
        """This interpreter: pip installs what the running Python itself would import."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return cls(
            name=f"local-{sys.implementation.name}{version}-{platform}",
            python_version=version,
            pip_platform_args=(),
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], architecture: str) -> BundleTarget:
        """`TASKS_BUNDLE_TARGET=local` selects this interpreter; unset, the Lambda runtime."""
        requested = environ.get(BUNDLE_TARGET_ENV, "").strip()
        if requested == LOCAL_TARGET:
            return cls.local()
        if requested not in ("", "lambda"):
            raise BundleError(
                f"{BUNDLE_TARGET_ENV}={requested!r} is not a bundle target; use '{LOCAL_TARGET}' "
                "or leave it unset for the Lambda runtime"
            )
        return cls.lambda_runtime(architecture)


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A built archive: its path and the base64 SHA-256 of its bytes (Lambda's CodeSha256 form)."""

    path: Path
    sha256_b64: str
    size_bytes: int
    target: BundleTarget


def build_bundle(
    target: BundleTarget,
    *,
    source_dir: Path = FUNCTIONS_DIR,
    requirements: Path = FUNCTIONS_REQUIREMENTS,
    build_dir: Path = BUILD_DIR,
    progress: Progress | None = None,
) -> Bundle:
    """Build (or reuse) the zip of `source_dir` and its requirements for `target`.

    The archive holds `<source_dir name>/...` plus the installed requirements at its root, so the
    handler `functions.worker.handler` imports as it does here. Needs PyPI the first time a
    target's dependencies are installed; later builds reuse `.build/deps/`.
    """
    say = progress or _print_progress
    deps_dir = _install_dependencies(target, requirements, build_dir, say)
    entries = sorted(
        [*_files_under(deps_dir, prefix=""), *_files_under(source_dir, prefix=source_dir.name)]
    )
    _reject_duplicates(entries)
    content_key = _content_digest(entries)
    bundles_dir = build_dir / "bundles"
    bundle_path = bundles_dir / f"{target.name}-{content_key[:20]}.zip"
    if not bundle_path.exists():
        bundles_dir.mkdir(parents=True, exist_ok=True)
        _write_zip(bundle_path, entries)
        _remove_stale_bundles(bundles_dir, target, keep=bundle_path)
    data = bundle_path.read_bytes()
    return Bundle(
        path=bundle_path,
        sha256_b64=base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"),
        size_bytes=len(data),
        target=target,
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
        "--no-compile",  # bytecode would make the archive differ between builds
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


def _files_under(root: Path, *, prefix: str) -> Iterator[tuple[str, Path]]:
    """(archive name, path) for every file that belongs in the bundle, bytecode and markers out."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if name not in _SKIPPED_DIRS]
        for file_name in files:
            if file_name.endswith(_SKIPPED_SUFFIXES) or file_name == _INSTALL_MARKER:
                continue
            path = Path(directory) / file_name
            relative = path.relative_to(root).as_posix()
            yield (f"{prefix}/{relative}" if prefix else relative), path


def _reject_duplicates(entries: list[tuple[str, Path]]) -> None:
    names = [name for name, _ in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BundleError(f"two sources give the same bundle entries: {', '.join(duplicates[:5])}")


def _content_digest(entries: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for name, path in entries:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
    for old in bundles_dir.glob(f"{target.name}-*.zip"):
        if old != keep:
            old.unlink(missing_ok=True)


def _print_progress(message: str) -> None:
    # stderr, so progress never mixes with a command's machine-readable output on stdout.
    print(message, file=sys.stderr, flush=True)
