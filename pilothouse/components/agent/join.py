"""Joining a cluster with a join token (``pilothouse agent --server URL --token T``): kubeadm's token
discovery (``cmd/kubeadm/app/discovery/token``), then the TLS bootstrap of :mod:`.bootstrap`.

The agent reads ``kube-public/cluster-info`` anonymously, over TLS it does not verify yet, and trusts
nothing in it until two checks pass, in kubeadm's order:

1. the ConfigMap's ``jws-kubeconfig-<token-id>`` is the detached JWS of its kubeconfig keyed by the
   token's secret: the server holds this token (so the token is right, and it is never sent to a
   server that does not already know it); a missing signature is retried until the discovery
   timeout (the bootstrap signer may not have signed a fresh token yet), a wrong one is refused at once;
2. over HTTPS, the CA in that kubeconfig hashes to the token's pin (``K10<hash>::...``; see
   :mod:`pilothouse.machinery.bootstraptoken`): the server's certificates are then verified against it.

It then writes a bootstrap kubeconfig (the ``--server`` URL, the verified CA, the bootstrap token) for
the CSR bootstrap. Over plain HTTP (a server without ``--secure``) there is no CA to pin: the
signature check alone stands, and the agent runs with that kubeconfig as its credentials.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import yaml

from pilothouse.client import errors
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import bootstraptoken as bt
from pilothouse.machinery.kubeconfig import build_kubeconfig

__all__ = ["JoinError", "discover"]

CONFIGMAPS = resource("", "v1", "configmaps")


class JoinError(Exception):
    """The server cannot be trusted with, or does not accept, the token: the agent must not start."""


def _unverified() -> ssl.SSLContext:
    # Only for reading cluster-info, whose content is verified by signature and pin before any use.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _cluster_info(server: str) -> dict[str, Any] | None:
    """The ConfigMap, or None while it is not there (yet); JoinError when the server refuses us."""
    config = ClientConfig(server, ssl_context=_unverified() if server.startswith("https:") else None)
    async with APIClient(config, user_agent="pilothouse-agent/join") as client:
        try:
            return await client.get(CONFIGMAPS, bt.CLUSTER_INFO, "kube-public")
        except errors.NotFoundError:
            return None
        except errors.APIError as error:
            if error.code in (401, 403):
                raise JoinError(f"{server} does not let anonymous clients read kube-public/{bt.CLUSTER_INFO} "
                                f"({error.message}); `pilothouse token create` grants it") from None
            raise


def _verified_ca(cluster_info: dict[str, Any], token: bt.JoinToken, secure: bool) -> bytes | None:
    """The CA to trust once the token's signature and the CA pin check out; None while unsigned."""
    data = cluster_info.get("data") or {}
    signature = data.get(bt.JWS_PREFIX + token.token_id)
    if signature is None:
        return None
    if not bt.signature_valid(data.get("kubeconfig", ""), signature, token.token_id, token.secret):
        raise JoinError(f"the token is wrong: the server's signature for token id {token.token_id!r} does not "
                        "match its secret (kube-public/cluster-info); nothing was sent to the server")
    ca_pem = bt.cluster_info_ca(cluster_info)
    if not secure:
        return ca_pem or b""
    if not ca_pem:
        raise JoinError("the server's cluster-info carries no CA certificate to verify")
    actual = bt.ca_cert_hash(ca_pem)
    if actual != token.ca_hash:
        raise JoinError(f"the server's CA does not match the token's CA hash (the server's is {actual}, the "
                        f"token pins {token.ca_hash}): refusing to trust it")
    return ca_pem


async def discover(server: str, token_text: str, bootstrap_kubeconfig: Path, timeout: float = 60.0) -> None:
    """Verify ``server`` with the join token and write ``bootstrap_kubeconfig``; JoinError if refused."""
    try:
        token = bt.JoinToken.parse(token_text)
    except ValueError as error:
        raise JoinError(str(error)) from None
    secure = server.startswith("https:")
    if secure and not token.ca_hash:
        raise JoinError("joining over HTTPS needs a token that pins the CA (K10<sha256>::<id>.<secret>, "
                        "as `pilothouse token create` prints it)")
    deadline = asyncio.get_running_loop().time() + timeout
    why = ""
    while True:
        try:
            cluster_info = await _cluster_info(server)
            if cluster_info is None:
                why = f"{server} has no kube-public/{bt.CLUSTER_INFO} ConfigMap (make a token with " \
                      "`pilothouse token create`)"
            else:
                ca_pem = _verified_ca(cluster_info, token, secure)
                if ca_pem is not None:
                    break
                why = (f"the token is unknown to the server: kube-public/{bt.CLUSTER_INFO} has no signature for "
                       f"token id {token.token_id!r} (wrong, expired or deleted token, or no bootstrap signer)")
        except (errors.ConnectionFailed, errors.ServerError, OSError) as error:
            why = f"cannot reach {server}: {error}"
        if asyncio.get_running_loop().time() >= deadline:
            raise JoinError(why)
        await asyncio.sleep(1.0)
    document = build_kubeconfig(server, user="kubelet-bootstrap", ca_pem=ca_pem or None)
    document["users"][0]["user"] = {"token": token.bootstrap_token}
    bootstrap_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(bootstrap_kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(yaml.safe_dump(document, sort_keys=False))
