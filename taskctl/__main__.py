"""`python -m taskctl`, and the virtualenv's `taskctl` command (pyproject's [project.scripts])."""

from taskctl.exit_codes import exit_for_missing_virtualenv


def main(prog_name: str | None = None) -> None:
    try:
        from taskctl.cli import app
    except ModuleNotFoundError as missing:  # run by an interpreter without the project's packages
        exit_for_missing_virtualenv(missing)
    app(prog_name=prog_name)


if __name__ == "__main__":
    main(prog_name="python -m taskctl")
