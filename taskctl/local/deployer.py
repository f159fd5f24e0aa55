"""Deploy the Pulumi program into the emulator: `__main__.py` under mocks that create for real.

`EmulatorMocks.new_resource` hands each declared resource's resolved inputs to the creator
registered for its type token (`taskctl.local.creators.CREATORS`) and returns the emulator's real
ids and outputs, so later resources receive real ARNs and URLs. Component resources and the AWS
provider (in the emulator's region) pass through; another provider, an unknown type, an input its
creator does not apply, or any invoke (the program makes none) fails the deployment, naming it.

The functions are bundled by the program's own packaging code, targeted at this interpreter
(`TASKS_BUNDLE_TARGET=local`), so a dependency missing from the bundle fails here as in AWS.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from unittest import mock

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

from components.packaging import BUNDLE_TARGET_ENV, LOCAL_TARGET
from taskctl.local.creators import CREATORS, EmulatorContext, UnsupportedInputs
from taskctl.local.emulator import LocalStackError

# The program's one explicit provider (components/tagging.py); any other provider's resources
# would have no creators, so only this one is accepted.
AWS_PROVIDER = "pulumi:providers:aws"


class DeploymentError(LocalStackError):
    """The program could not be deployed into the emulator; the message names the resource."""


@dataclass
class DeployedResource:
    """One resource as deployed: what the program declared and what the emulator returned."""

    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class EmulatorMocks(Mocks):
    """Pulumi mocks whose resources are real ones in the emulator."""

    def __init__(self, context: EmulatorContext, on_created: Callable[[str, str], None]) -> None:
        self.context = context
        self.resources: list[DeployedResource] = []
        self.errors: list[str] = []
        self._on_created = on_created
        # The runtime registers resources from several threads; the emulator calls are serialised
        # so ids are assigned in a stable order and boto3 clients are built once.
        self._lock = threading.Lock()

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict]:
        region = args.inputs.get("region")
        if args.typ == AWS_PROVIDER and region != self.context.region:  # the ARNs would disagree
            raise self._failed(
                f"the program's AWS provider {args.name!r} targets region {region!r}, but the "
                f"local stack runs in {self.context.region!r}"
            )
        if not args.custom or args.typ == AWS_PROVIDER:
            # Nothing to create: a component, or the AWS provider (every resource reaches the
            # emulator through the context's clients; its default tags are not applied, as the
            # emulator keeps no cost reports).
            return f"{args.name}-id", dict(args.inputs)
        creator = CREATORS.get(args.typ)
        if creator is None:
            raise self._failed(
                f"resource {args.name!r} has type {args.typ}, which the local stack cannot "
                f"create; add a creator for it in taskctl/local/creators.py"
            )
        with self._lock:
            try:
                created = creator(self.context, args.name, _whole_numbers(args.inputs))
            except UnsupportedInputs as exc:
                raise self._failed(str(exc)) from exc
            except Exception as exc:
                message = f"creating {args.typ} {args.name!r} in the emulator failed: {exc}"
                raise self._failed(message) from exc
            self.resources.append(
                DeployedResource(
                    type=args.typ,
                    name=args.name,
                    id=created.id,
                    inputs=_plain(args.inputs),
                    outputs=_plain(created.outputs),
                    notes=created.notes,
                )
            )
        self._on_created(args.typ, args.name)
        return created.id, {**args.inputs, **created.outputs}

    def call(self, args: MockCallArgs) -> tuple[dict, list | None]:
        # The program makes no invokes (its policy documents are rendered by components/iam.py,
        # its region comes from the config): a new one must be answered here on purpose.
        raise self._failed(
            f"the program calls the invoke {args.token}, which the local stack does not answer"
        )

    def _failed(self, message: str) -> DeploymentError:
        """The error to raise, recorded too: the runtime may log an error here, not raise it."""
        self.errors.append(message)
        return DeploymentError(message)


# -- running the program ----------------------------------------------------------------------


def deploy(
    stack: str, context: EmulatorContext, on_created: Callable[[str, str], None]
) -> dict[str, Any]:
    """Run the program for `stack` against the emulator; return its outputs and resources as
    `deployment.json` holds them."""
    from taskctl.program import run_program  # the Pulumi helper's runner (loads the stack config)

    mocks = EmulatorMocks(context, on_created)
    # Bundle for this interpreter, not Lambda's; the environment is as it was afterwards.
    with mock.patch.dict(os.environ, {BUNDLE_TARGET_ENV: LOCAL_TARGET}):
        try:
            outputs = run_program(stack, mocks)
        except Exception as exc:
            if mocks.errors:
                raise DeploymentError(mocks.errors[0]) from exc
            raise DeploymentError(f"the Pulumi program failed for stack {stack}: {exc}") from exc
    if mocks.errors:  # an error the runtime logged instead of raising
        raise DeploymentError(mocks.errors[0])
    return {"outputs": _plain(dict(outputs)), "resources": [asdict(r) for r in mocks.resources]}


def _whole_numbers(value: Any) -> Any:
    """Pulumi hands every number over as a float (`60.0`); AWS APIs typed integer refuse those."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSON-friendly copy of resolved inputs (the code archive becomes its path)."""
    return json.loads(json.dumps(value, default=_json_leaf))


def _json_leaf(value: Any) -> Any:
    return {"path": str(value.path)} if isinstance(value, pulumi.FileArchive) else str(value)
