"""`python -m taskctl token`: print a bearer token for a stack's own app client.

    curl -H "Authorization: Bearer $(python -m taskctl token)" ...

Where: the running local stack of `--stack` (default dev), or, with `--user-pool-id`,
`--client-id` and `--token-url` (`pulumi stack output userPoolId appClientId authTokenUrl`), a
deployed stack, whose client secret is read with DescribeUserPoolClient through the standard AWS
environment (credentials, `AWS_DEFAULT_REGION`, `AWS_PROFILE`), never printed or stored.

For an open stack (`apiAuth: none`) it prints nothing, says so on stderr and exits 0, so the
curl line above works for both settings. Exit status 2: no token could be had (one `error:` line).
"""

from __future__ import annotations

from typing import Annotated

import typer

from taskctl.exit_codes import exit_with_error
from taskctl.token.issuer import TokenError, deployed_app_client, fetch_token, local_app_client


def token(
    stack: Annotated[
        str, typer.Option("--stack", "-s", help="Local stack whose app client to use.")
    ] = "dev",
    user_pool_id: Annotated[
        str | None,
        typer.Option(help="A deployed stack's pool (`pulumi stack output userPoolId`)."),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="Its app client (`pulumi stack output appClientId`)."),
    ] = None,
    token_url: Annotated[
        str | None,
        typer.Option(help="Its token endpoint (`pulumi stack output authTokenUrl`)."),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="Ask only for this scope (repeatable): tasks/write, tasks/read. Default: both.",
        ),
    ] = None,
) -> None:
    """Print an access token (client-credentials grant) for the stack's own app client."""
    deployed = (user_pool_id, client_id, token_url)
    try:
        if not any(deployed):
            app = local_app_client(stack)
        elif all(deployed):
            app = deployed_app_client(*deployed)  # type: ignore[arg-type]
        else:
            raise TokenError(
                "--user-pool-id, --client-id and --token-url go together; give all three"
            )
        if app is None:
            typer.echo(
                f"stack {stack!r} is OPEN (apiAuth: none): it needs no token and ignores one",
                err=True,
            )
            return
        typer.echo(fetch_token(app, scope or ()))
    except TokenError as exc:
        exit_with_error(str(exc))
