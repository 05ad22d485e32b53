"""kube-apiserver's authentication and authorization flags, for ``pilothouse server`` and ``up``.

They reach the command as one ``auth_flags`` dict (the fields of
:class:`pilothouse.apiserver.authchain.AuthOptions`), so the commands' signatures stay short and the
server's modules load only when a command runs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import click

__all__ = ["auth_options", "share_loopback_token"]

_OPTIONS = [
    click.option("--token-auth-file", default=None,
                 help="Static bearer tokens, CSV: token,user,uid,\"group1,group2\"."),
    # kubeadm's and k3s's setting (issue 11: closed by default); AlwaysAllow opts out.
    click.option("--authorization-mode", default="Node,RBAC", show_default=True,
                 help="Comma list of Node, RBAC, AlwaysAllow, AlwaysDeny (AlwaysAllow with --secure=false: "
                      "every caller is system:admin)."),
    click.option("--anonymous-auth/--no-anonymous-auth", default=True, show_default=True,
                 help="Requests without credentials are system:anonymous (else 401)."),
    click.option("--service-account-key-file", multiple=True,
                 help="PEM public keys that verify service-account tokens (repeatable)."),
    click.option("--service-account-signing-key-file", default=None,
                 help="PEM private key that signs service-account tokens (default <data-dir>/pki/sa.key)."),
    click.option("--service-account-issuer", default="https://kubernetes.default.svc.cluster.local",
                 show_default=True, help="The iss claim of service-account tokens."),
]


def auth_options(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, token_auth_file: str | None, authorization_mode: str, anonymous_auth: bool,
                service_account_key_file: tuple[str, ...], service_account_signing_key_file: str | None,
                service_account_issuer: str, **kwargs: Any) -> Any:
        from pilothouse.apiserver.authchain import AuthOptions

        options = AuthOptions(token_auth_file=token_auth_file, authorization_mode=authorization_mode,
                              anonymous_auth=anonymous_auth,
                              service_account_key_files=list(service_account_key_file),
                              service_account_signing_key_file=service_account_signing_key_file,
                              service_account_issuer=service_account_issuer)
        try:
            options.modes()
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--authorization-mode") from None
        return function(*args, auth=options, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def share_loopback_token(running: Any) -> None:
    """Components this process starts (and its own clients) authenticate with the server's loopback
    token (system:masters), as kube-apiserver's own loopback clients do: APIClient reads it from the
    environment, which the supervisor's children inherit. Not over HTTPS: there each component has a
    kubeconfig with a certificate for its own user, and RBAC is to see that user, not system:masters."""
    from pilothouse.client.rest import LOOPBACK_TOKEN_ENV

    if running.pki is not None:
        return
    os.environ[LOOPBACK_TOKEN_ENV] = running.api.auth.loopback_token
