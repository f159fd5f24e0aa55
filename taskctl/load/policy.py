"""Where a load run's policy comes from: a stack file (`--stack`) or flags."""

from __future__ import annotations

from taskctl.load.client import LoadError
from taskctl.load.report import LoadPolicy


def policy_from_stack(stack: str) -> LoadPolicy:
    """The stack's validated policy, read the way the Pulumi program reads it."""
    # Imported here: the Pulumi program's config reader pulls in pulumi, which a run with
    # explicit flags does not need.
    from taskctl.program import StackConfigError, load_stack_settings

    try:
        settings = load_stack_settings(stack)
    except StackConfigError as exc:
        raise LoadError(str(exc)) from None
    return LoadPolicy(
        max_attempts=settings.maxAttempts,
        error_rate=settings.errorRate,
        source=f"stack {stack}",
        stack_policy=settings.policy,
    )


def resolve_policy(
    *, stack: str | None, max_attempts: int | None, error_rate: float | None
) -> LoadPolicy:
    """Exactly one source: `--stack`, or both policy flags; neither means the dev stack."""
    flags_given = max_attempts is not None or error_rate is not None
    if stack is not None and flags_given:
        raise LoadError("give either --stack or --max-attempts with --error-rate, not both")
    if flags_given:
        if max_attempts is None or error_rate is None:
            raise LoadError("--max-attempts and --error-rate go together; give both")
        source = "--max-attempts/--error-rate"
        return LoadPolicy(max_attempts=max_attempts, error_rate=error_rate, source=source)
    return policy_from_stack(stack or "dev")
