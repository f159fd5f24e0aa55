"""The deploy workflow's smoke test (`.github/workflows/deploy.yml`), its script run as the GitHub
runner runs it (`bash -eo pipefail`), against the local stack.

`pulumi` is a stand-in that answers `pulumi stack output NAME` from the stack's outputs, as the CLI
does (an error for an output the stack lacks). `authTokenUrl` names the emulator's token endpoint,
since the local stack does not serve the Cognito domain; everything else is what the step runs on
a runner: `taskctl token` with the deploy role's AWS access (here the emulator's), then
`taskctl load` with that token. The step sees no local stack (an empty TASKS_LOCAL_DIR), so `load`
can only use the token the step hands it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import STACK, LocalStackUnderTest, run_in_project

from taskctl.local.paths import PROJECT_DIR

pytestmark = pytest.mark.e2e

SMOKE_TEST_TASKS = 8
STEP_TIMEOUT_S = 180
OWN_POOL_OUTPUTS = ("userPoolId", "appClientId", "authTokenUrl")


def smoke_step() -> dict[str, Any]:
    workflow = yaml.safe_load((PROJECT_DIR / ".github/workflows/deploy.yml").read_text())
    steps = workflow["jobs"]["deploy"]["steps"]
    return next(step for step in steps if step.get("name", "").startswith("smoke test"))


def fake_pulumi(directory: Path, outputs: dict[str, Any]) -> Path:
    """A directory holding a `pulumi` that answers `stack output NAME` from `outputs`."""
    (directory / "outputs.json").write_text(json.dumps(outputs))
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "assert sys.argv[1:3] == ['stack', 'output'] and len(sys.argv) == 4, sys.argv\n"
        f"outputs = json.load(open({str(directory / 'outputs.json')!r}))\n"
        "if sys.argv[3] not in outputs:\n"
        "    sys.exit(f'error: current stack does not have output property {sys.argv[3]!r}')\n"
        "print(outputs[sys.argv[3]])\n"
    )
    pulumi.chmod(0o755)
    return bin_dir


def run_smoke_step(
    local_stack: LocalStackUnderTest, tmp_path: Path, outputs: dict[str, Any], secret: str = ""
) -> subprocess.CompletedProcess[str]:
    step = smoke_step()
    # The step's own environment: only the secret for an external issuer's token.
    assert step["env"] == {"EXTERNAL_ISSUER_TOKEN": "${{ secrets.SMOKE_TEST_TOKEN }}"}
    no_local_stack = tmp_path / "no-local-stack"
    no_local_stack.mkdir()
    env = {
        **local_stack.env,
        "PATH": f"{fake_pulumi(tmp_path, outputs)}{os.pathsep}{os.environ['PATH']}",
        "TASKS_LOCAL_DIR": str(no_local_stack),
        # The job's environment (deploy.yml) and the deploy role's credentials.
        "PULUMI_STACK": STACK,
        "SMOKE_TEST_TASKS": str(SMOKE_TEST_TASKS),
        "EXTERNAL_ISSUER_TOKEN": secret,
        "AWS_ENDPOINT_URL": local_stack.endpoint_url,
        "AWS_DEFAULT_REGION": local_stack.region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    script = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    return run_in_project(script, env, STEP_TIMEOUT_S)


def assert_load_ran_authenticated(step: subprocess.CompletedProcess[str]) -> None:
    """`load` submitted every task and judged them (exit 0, or 1 for a verdict it did not like),
    rather than stopping on a refused submit (exit 2)."""
    assert step.returncode in (0, 1), step.stdout + step.stderr
    assert f"Submitting {SMOKE_TEST_TASKS} tasks" in step.stdout
    assert "Outcomes" in step.stdout
    assert "error:" not in step.stderr, step.stderr


def test_the_smoke_step_gets_a_token_of_the_stacks_own_app_client(
    local_stack: LocalStackUnderTest, tmp_path: Path
) -> None:
    assert local_stack.authenticates
    outputs = {**local_stack.outputs, "authTokenUrl": f"{local_stack.endpoint_url}/oauth2/token"}

    step = run_smoke_step(local_stack, tmp_path, outputs)

    assert_load_ran_authenticated(step)
    assert "::add-mask::ey" in step.stdout  # the token is masked in the job's log


def test_the_smoke_step_uses_the_secret_token_for_an_external_issuer(
    local_stack: LocalStackUnderTest, tmp_path: Path
) -> None:
    # An external issuer's stack exports no pool; the environment secret holds a token.
    outputs = {k: v for k, v in local_stack.outputs.items() if k not in OWN_POOL_OUTPUTS}
    token = local_stack.token()

    step = run_smoke_step(local_stack, tmp_path, outputs, secret=token)

    assert_load_ran_authenticated(step)
    assert f"::add-mask::{token}" in step.stdout


def test_the_smoke_step_without_a_token_for_an_external_issuer_says_which_secret(
    local_stack: LocalStackUnderTest, tmp_path: Path
) -> None:
    outputs = {k: v for k, v in local_stack.outputs.items() if k not in OWN_POOL_OUTPUTS}

    step = run_smoke_step(local_stack, tmp_path, outputs)

    assert step.returncode == 2, step.stdout + step.stderr
    assert "::error::" in step.stdout and "SMOKE_TEST_TOKEN" in step.stdout
    assert "Submitting" not in step.stdout
