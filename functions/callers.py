"""Who is calling, and the task ids their Idempotency-Keys name (pure; DESIGN §2).

Every task has an owner. With `apiAuth: jwt`, API Gateway has verified the caller's token before
the function runs and hands over its claims; the owner is the token's `sub` (for Cognito's
client-credentials tokens that is the app client's id, the same as `client_id`), or its
`client_id` where an issuer leaves `sub` out of a client-credentials token. With `apiAuth: none`
every caller is the one anonymous owner.

An Idempotency-Key is scoped to its owner: the task id it names is derived from the owner AND
the key, so two callers using the same key get two tasks, and no caller can claim, and so block,
a key for another. Knowing another owner's id gives nothing either: reading a task that is not
the caller's is a 404 like an unknown id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from functions.policy import ApiAuth

ANONYMOUS_OWNER = "anonymous"
# Task ids for an Idempotency-Key are uuid5(owner and key) in this namespace: the same caller's
# same key always names the same task, so a repeat is caught by the table's
# `attribute_not_exists(taskId)` condition.
IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fault-tolerant-tasks:idempotency-key")


class Unauthenticated(Exception):
    """A task route reached without verified claims although the stack authenticates callers
    (API Gateway answers 401 before that can happen; this is the function's own guard)."""


def owner_of(api_auth: ApiAuth, claims: Mapping[str, Any]) -> str:
    """The owner of a request: the anonymous owner on an open stack, else from the claims the
    JWT authorizer verified. `Unauthenticated` if those name nobody."""
    if api_auth == "none":
        return ANONYMOUS_OWNER
    owner = claims.get("sub") or claims.get("client_id")
    if not isinstance(owner, str) or not owner:
        raise Unauthenticated("no verified token claims name the caller")
    if owner == ANONYMOUS_OWNER:
        # Reserved: it owns what an open stack (or one from before owners) stored, which no
        # token may read, whatever an issuer puts in `sub`.
        raise Unauthenticated(f"a token whose subject is {ANONYMOUS_OWNER!r} names nobody")
    return owner


def idempotent_task_id(owner: str, idempotency_key: str) -> str:
    """The task id `owner`'s `idempotency_key` names. The owner is length-prefixed, so no
    (owner, key) pair can spell another's."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{len(owner)}:{owner}:{idempotency_key}"))
