"""Stack config -> validated `StackSettings`: the one reader used by the program and the tooling.

Pure: it takes a getter (the program passes `pulumi.Config().get`, the tooling a dict's `get`),
so it reads no Pulumi state itself.
"""

from __future__ import annotations

from collections.abc import Callable

from functions.settings import StackSettings

ConfigGetter = Callable[[str], "str | None"]


def read_stack_settings(get: ConfigGetter) -> StackSettings:
    """Read every `StackSettings` field by its config key and validate them together.

    An unset key takes the model's default. An empty string counts as unset too: Pulumi's config
    schema cannot declare an optional key without a default, so `Pulumi.yaml` declares the
    optional `alarmEmail` with default "" and this is where "" becomes "no value".
    A Pulumi secret (`pulumi config set --secret alarmEmail ...`) is read like any value: under
    the CLI `pulumi.Config().get` returns it decrypted, and the tooling, which cannot decrypt,
    passes a stand-in or refuses the key (`taskctl.program.load_stack_config`).
    Raises `SettingsError` naming each bad key, its value and the limit.
    """
    raw: dict[str, object] = {}
    for key in StackSettings.model_fields:
        value = get(key)
        if value is not None and value != "":
            raw[key] = value
    return StackSettings.from_config(raw)
