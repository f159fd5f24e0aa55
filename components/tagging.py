"""The stack's AWS provider, which tags every resource it manages with the same default tags.

Tags are set once, on the provider (`default_tags`), not on each resource: every taggable AWS
resource the program declares gets them, a new resource cannot forget them, and cost reports can
split by `project`, `stack` and `service`. The program passes the provider to every component
(`ResourceOptions(providers=[...])`); their children inherit it through `parent=self`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi_aws as aws

# AWS's tag value limit and characters, the rules common to every service (keys here are fixed).
TAG_VALUE_MAX_CHARS = 256
_TAG_CHARACTERS = re.compile(r"^[\w .:/=+\-@]*$")


@dataclass(frozen=True, kw_only=True)
class DefaultTags:
    """The tags every resource of a stack carries: which project, which stack, which service."""

    project: str
    stack: str
    service: str

    def __post_init__(self) -> None:
        for key, value in self.as_dict().items():
            if not value or len(value) > TAG_VALUE_MAX_CHARS or not _TAG_CHARACTERS.match(value):
                raise ValueError(
                    f"tag {key}={value!r} must be 1..{TAG_VALUE_MAX_CHARS} characters of letters, "
                    f"digits, spaces and _ . : / = + - @"
                )

    def as_dict(self) -> dict[str, str]:
        return {"project": self.project, "stack": self.stack, "service": self.service}


def tagged_provider(name: str, *, region: str, tags: DefaultTags) -> aws.Provider:
    """An AWS provider for `region` that applies `tags` to every resource it manages.

    An explicit provider reads no `aws:` stack config by itself, so the region is passed in.
    """
    return aws.Provider(
        name,
        region=region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=tags.as_dict()),
    )
