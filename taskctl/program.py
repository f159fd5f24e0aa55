"""Run the Pulumi program without the Pulumi CLI: the stack config as the CLI would hand it over
(`load_stack_config`; validated, `load_stack_settings`), and `__main__.py` run under mocks
(`run_program`), such as `RecordingMocks`, which record every resource the program declares.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import runpy
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.stack_settings import read_stack_settings
from functions.policy import SettingsError
from functions.settings import StackSettings
from taskctl.local.paths import PROJECT_DIR

PROJECT_FILE = PROJECT_DIR / "Pulumi.yaml"
PROGRAM = PROJECT_DIR / "__main__.py"
# A Pulumi secret in a stack file (`key: {secure: <ciphertext>}`) only the Pulumi CLI can decrypt.
# The keys here may be secret anyway: the tooling reads them as set to this stand-in, a value that
# changes nothing it does (the local stack's e-mail delivery is a stub). Any other secret key is
# refused, naming it, since a stand-in for it would change what runs or what is judged.
UNDECRYPTED_SECRET_STAND_INS = {"alarmEmail": "secret-alarm-email@example.invalid"}


class StackConfigError(ValueError):
    """A stack or project file that cannot be read; the message names the file."""


def project_name() -> str:
    return str(_read_yaml(PROJECT_FILE)["name"])


def load_stack_config(stack: str) -> dict[str, str]:
    """The stack's config as the Pulumi CLI gives it to the program: namespaced keys
    (`aws:region`), string values (`"2"`, `"true"`), `Pulumi.yaml`'s defaults for every key the
    stack file leaves out, and secrets as `UNDECRYPTED_SECRET_STAND_INS` says."""
    project = _read_yaml(PROJECT_FILE)
    namespace = str(project["name"])
    path = PROJECT_DIR / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
        raise StackConfigError(f"no stack file {path.name}; known stacks: {', '.join(known)}")
    config: dict[str, str] = {}
    for key, declaration in (project.get("config") or {}).items():
        default = declaration.get("default") if isinstance(declaration, dict) else declaration
        if default is not None:
            config[_namespaced(key, namespace)] = _config_string(default)
    for key, value in (_read_yaml(path).get("config") or {}).items():
        if value is None:
            continue
        full_key = _namespaced(key, namespace)
        config[full_key] = (
            _secret_stand_in(full_key, namespace, path)
            if is_secret(value)
            else _config_string(value)
        )
    return config


def is_secret(value: object) -> bool:
    """Whether a stack file value is a Pulumi secret, `{secure: <ciphertext>}`."""
    return isinstance(value, dict) and set(value) == {"secure"}


def _secret_stand_in(full_key: str, namespace: str, path: Path) -> str:
    prefix, _, key = full_key.partition(":")
    if prefix == namespace and key in UNDECRYPTED_SECRET_STAND_INS:
        return UNDECRYPTED_SECRET_STAND_INS[key]
    allowed = ", ".join(UNDECRYPTED_SECRET_STAND_INS)
    raise StackConfigError(
        f"{path.name}: {full_key} is a Pulumi secret, which only the Pulumi CLI can decrypt and "
        f"taskctl needs its value; keep it in plain text (`pulumi config set --plaintext "
        f"{key} ...`). Only {allowed} may be secret for taskctl."
    )


def load_stack_settings(stack: str, overrides: Mapping[str, str] | None = None) -> StackSettings:
    """The validated settings of `stack`. Every command reports what is wrong with them in the
    same words: a `StackConfigError` that names the stack, then the file or each bad key."""
    try:
        config = {**load_stack_config(stack), **(overrides or {})}
        namespace = project_name()
        return read_stack_settings(lambda key: config.get(f"{namespace}:{key}"))
    except (StackConfigError, SettingsError) as exc:
        raise StackConfigError(f"stack {stack}: {exc}") from None


def run_program(
    stack: str,
    mocks: pulumi.runtime.Mocks,
    *,
    config_overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run `__main__.py` for `stack` under `mocks`; return its resolved exported outputs, as
    `pulumi stack output --json` shows them. `config_overrides` replaces config entries
    (namespaced keys, string values). Each call runs in a fresh context, so runs do not see each
    other's resources or config; an error in the program propagates as the program raised it."""
    config = {**load_stack_config(stack), **(config_overrides or {})}
    _ensure_event_loop()
    return contextvars.Context().run(_run_in_fresh_context, stack, mocks, config)


def _ensure_event_loop() -> None:
    """Make this thread's own loop for program runs its current event loop (a new one if it was
    closed). The Pulumi runtime runs on the current loop, which code that ran before (an
    `asyncio.run`, an async HTTP client) may have closed or unset. Not by asking asyncio which
    loop is current: asking when none is set is deprecated since Python 3.12, and the policy API
    that answers without a warning is deprecated in 3.14."""
    loop = getattr(_program_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _program_loops.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)


_program_loops = threading.local()


def _run_in_fresh_context(
    stack: str, mocks: pulumi.runtime.Mocks, config: dict[str, str]
) -> dict[str, Any]:
    pulumi.runtime.set_all_config(config)
    pulumi.runtime.set_mocks(
        mocks,
        project=project_name(),
        stack=stack,
        preview=False,
        monitor=_RegistrationRecordingMonitor(mocks),
    )
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))  # the program imports `components` and `functions`
    resolved: dict[str, Any] = {}

    async def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        # `pulumi.export` records outputs on the root stack resource; resolving them all also
        # waits for every resource they depend on. Awaited, not `_sync_await`ed: a nested
        # `_sync_await` pumps the loop from inside this task, and a Ctrl-C that lands there
        # leaves asyncio's current-task record broken (it logs a RuntimeError traceback).
        exported = dict(get_root_resource().outputs)  # type: ignore[union-attr]
        resolved.update(await pulumi.Output.from_input(exported).future() or {})

    _sync_await(run_pulumi_func(program))
    return resolved


# -- recording mocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedResource:
    """One resource the program declared: its type token, logical name, inputs and outputs."""

    type_token: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    resource_id: str
    parent_urn: str = ""  # the URN of the component (or of the stack) it was declared under
    provider: str = ""  # "<provider URN>::<provider id>", or "" for the default provider
    protect: bool = False  # Pulumi refuses to delete it (`ResourceOptions(protect=True)`)


# The ARN of each named resource type the program declares, by its physical name.
_ARNS = {
    "aws:sqs/queue:Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "aws:dynamodb/table:Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "aws:iam/role:Role": "arn:aws:iam::{account}:role/{name}",
    "aws:cloudwatch/logGroup:LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}",
    "aws:lambda/function:Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    # A rule on the default event bus is identified by its name.
    "aws:cloudwatch/eventRule:EventRule": "arn:aws:events:{region}:{account}:rule/{name}",
    "aws:sns/topic:Topic": "arn:aws:sns:{region}:{account}:{name}",
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; answers with AWS-shaped identifiers so references resolve.

    Physical names follow Pulumi's auto-naming (logical name plus a suffix) unless the program
    sets one. The suffix is derived from the name, so two runs give the same identifiers.
    Invokes are not faked: the program uses none, and a new one should fail loudly here.
    """

    region = "eu-west-1"
    account_id = "123456789012"

    def __init__(self) -> None:
        self.resources: list[CreatedResource] = []
        # (type, name) -> (parent URN, protect), set by the monitor just before `new_resource`.
        self.registrations: dict[tuple[str, str], tuple[str, bool]] = {}

    def created(self, type_token: str) -> list[CreatedResource]:
        """The resources of one type, in declaration order."""
        return [resource for resource in self.resources if resource.type_token == type_token]

    def one(self, type_token: str, name: str) -> CreatedResource:
        """The resource of `type_token` with logical name `name` (exactly one must exist)."""
        matches = [r for r in self.created(type_token) if r.name == name]
        if len(matches) != 1:
            names = [r.name for r in self.created(type_token)]
            raise LookupError(f"{len(matches)} {type_token} named {name!r}; declared: {names}")
        return matches[0]

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs, resource_id = self._outputs_for(args.typ, args.name, inputs)
        parent, protect = self.registrations.pop((args.typ, args.name), ("", False))
        self.resources.append(
            CreatedResource(
                args.typ,
                args.name,
                inputs,
                outputs,
                resource_id,
                parent,
                provider=args.provider or "",
                protect=protect,
            )
        )
        return resource_id, outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise NotImplementedError(f"RecordingMocks does not fake the invoke {args.token}")

    def _outputs_for(
        self, type_token: str, logical_name: str, inputs: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        suffix = hashlib.sha256(logical_name.encode()).hexdigest()[:7]
        physical = inputs.get("name") or f"{logical_name}-{suffix}"
        region, account = self.region, self.account_id
        outputs = dict(inputs)
        resource_id = f"{logical_name}-id"
        if type_token in _ARNS:
            arn = _ARNS[type_token].format(region=region, account=account, name=physical)
            outputs |= {"name": physical, "arn": arn}
            resource_id = physical
        if type_token == "aws:sqs/queue:Queue":
            resource_id = f"https://sqs.{region}.amazonaws.com/{account}/{physical}"
            outputs["url"] = resource_id
        elif type_token == "aws:sns/topic:Topic":
            resource_id = outputs["arn"]
        elif type_token == "aws:lambda/function:Function":
            outputs["invokeArn"] = (
                f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{outputs['arn']}"
                "/invocations"
            )
        elif type_token == "aws:apigatewayv2/api:Api":
            resource_id = suffix
            outputs |= {
                "name": physical,
                "apiEndpoint": f"https://{suffix}.execute-api.{region}.amazonaws.com",
                "executionArn": f"arn:aws:execute-api:{region}:{account}:{suffix}",
                "arn": f"arn:aws:apigateway:{region}::/apis/{suffix}",
            }
        elif type_token == "aws:cloudwatch/dashboard:Dashboard":
            resource_id = str(inputs.get("dashboardName", physical))
        elif type_token == "aws:lambda/eventSourceMapping:EventSourceMapping":
            # Lambda names a mapping by a UUID it chooses; tags and ListTags act on this ARN.
            resource_id = str(uuid.uuid5(uuid.NAMESPACE_URL, logical_name))
            outputs |= {
                "uuid": resource_id,
                "arn": f"arn:aws:lambda:{region}:{account}:event-source-mapping:{resource_id}",
            }
        return outputs, resource_id


class _RegistrationRecordingMonitor(MockMonitor):
    """The standard mock monitor that also tells recording mocks each resource's parent URN and
    `protect` option, which the `Mocks` interface does not carry (the engine sees them here)."""

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method it overrides
        if isinstance(self.mocks, RecordingMocks):
            key = (request.type, request.name)
            self.mocks.registrations[key] = (request.parent, request.protect)
        return super().RegisterResource(request)


# -- helpers -----------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as error:  # its own text spans lines: an error is one line here
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StackConfigError(f"{path.name} is not valid YAML: {error.problem}{where}") from None
    except (OSError, yaml.YAMLError) as error:
        raise StackConfigError(f"cannot read {path.name}: {' '.join(str(error).split())}") from None
    if not isinstance(loaded, dict):
        raise StackConfigError(f"{path.name} is not a YAML mapping")
    return loaded


def _namespaced(key: str, namespace: str) -> str:
    return key if ":" in key else f"{namespace}:{key}"


def _config_string(value: object) -> str:
    """A YAML value as the CLI passes it: booleans (`true`) and structures as JSON."""
    if isinstance(value, bool | dict | list):
        return json.dumps(value)
    return str(value)
