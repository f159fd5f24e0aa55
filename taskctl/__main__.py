from taskctl.cli import app

app(prog_name="python -m taskctl")
