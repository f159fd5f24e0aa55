import sys

try:
    from taskctl.cli import app
except ModuleNotFoundError as missing:  # run by an interpreter without the project's packages
    sys.exit(
        f"error: the project virtualenv is missing or incomplete ({missing.name} not "
        "importable): run `make venv` and use .venv/bin/python (or just `make local`)"
    )

app(prog_name="python -m taskctl")
