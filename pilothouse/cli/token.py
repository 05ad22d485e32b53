"""``pilothouse token create|list|delete``: bootstrap tokens for joining nodes, as ``kubeadm token``
does them, printed as k3s-style join tokens (``K10<CA hash>::<id>.<secret>``, see
:mod:`pilothouse.machinery.bootstraptoken`).

``create`` also makes sure of what kubeadm's init sets up once for token joins (``kubeadm init phase
bootstrap-token``): the ``kube-public/cluster-info`` ConfigMap (the server URL and the CA, which the
controller manager's bootstrap signer signs with every token), anonymous read access to it, and the
RBAC bindings that let bootstrap tokens ask for node certificates and have them approved. Everything
goes through the API with the admin kubeconfig.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from pilothouse.client import errors
from pilothouse.client.kubeconfig import ClientConfig, load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import bootstraptoken as bt
from pilothouse.machinery.meta import Object

__all__ = ["token"]


SECRETS = resource("", "v1", "secrets")
CONFIGMAPS = resource("", "v1", "configmaps")
ROLES = resource("rbac.authorization.k8s.io", "v1", "roles")
ROLEBINDINGS = resource("rbac.authorization.k8s.io", "v1", "rolebindings")
CLUSTERROLEBINDINGS = resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
RBAC = "rbac.authorization.k8s.io"
_DURATION = re.compile(r"(\d+)([hms])")


def _parse_ttl(text: str) -> timedelta | None:
    """Go's duration in the forms kubeadm's --ttl takes (``24h``, ``1h30m``, ``0`` = never expires)."""
    if text.strip() in ("0", "0s"):
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise click.BadParameter(f"{text!r} is not a duration like 24h, 90m or 1h30m", param_hint="--ttl")
    seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    return timedelta(seconds=seconds) if seconds else None


def _binding(kind: str, name: str, role_kind: str, role: str, subject: Object, namespace: str = "") -> Object:
    metadata: Object = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": metadata,
            "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}, "subjects": [subject]}


def _join_rbac() -> list[tuple[Any, Object]]:
    """kubeadm's objects for token joins (``cmd/kubeadm/app/phases/bootstraptoken``), for its group."""
    group = {"apiGroup": RBAC, "kind": "Group", "name": bt.DEFAULT_GROUP}
    nodes = {"apiGroup": RBAC, "kind": "Group", "name": "system:nodes"}
    anonymous = {"apiGroup": RBAC, "kind": "User", "name": "system:anonymous"}
    csr_roles = "system:certificates.k8s.io:certificatesigningrequests:"
    cluster_info_role = "kubeadm:bootstrap-signer-clusterinfo"
    return [
        (ROLES, {"apiVersion": f"{RBAC}/v1", "kind": "Role",
                 "metadata": {"name": cluster_info_role, "namespace": "kube-public"},
                 "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [bt.CLUSTER_INFO],
                            "verbs": ["get"]}]}),
        (ROLEBINDINGS, _binding("RoleBinding", cluster_info_role, "Role", cluster_info_role, anonymous,
                                "kube-public")),
        (CLUSTERROLEBINDINGS, _binding("ClusterRoleBinding", "kubeadm:kubelet-bootstrap", "ClusterRole",
                                       "system:node-bootstrapper", group)),
        (CLUSTERROLEBINDINGS, _binding("ClusterRoleBinding", "kubeadm:node-autoapprove-bootstrap", "ClusterRole",
                                       csr_roles + "nodeclient", group)),
        (CLUSTERROLEBINDINGS, _binding("ClusterRoleBinding", "kubeadm:node-autoapprove-certificate-rotation",
                                       "ClusterRole", csr_roles + "selfnodeclient", nodes)),
    ]


async def _ensure(client: APIClient, kind: Any, obj: Object) -> None:
    try:
        await client.create(kind, obj, obj["metadata"].get("namespace"))
    except errors.AlreadyExistsError:
        pass


async def _ensure_cluster_info(client: APIClient, server: str, ca_pem: bytes | None) -> None:
    """Create cluster-info, or point it at this CA when it holds another (signatures are the signer's)."""
    content = bt.cluster_info_kubeconfig(server, ca_pem)
    try:
        current = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, "kube-public")
    except errors.NotFoundError:
        await _ensure(client, CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": bt.CLUSTER_INFO, "namespace": "kube-public"},
                                           "data": {"kubeconfig": content}})
        return
    if bt.cluster_info_ca(current) != ca_pem:
        await client.update(CONFIGMAPS, {**current, "data": {**(current.get("data") or {}), "kubeconfig": content}})


async def _wait_signed(client: APIClient, token_id: str, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        current = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, "kube-public")
        if bt.JWS_PREFIX + token_id in (current.get("data") or {}):
            return True
        await asyncio.sleep(0.2)
    return False


async def _create(target: ClientConfig, token_text: str, ttl: timedelta | None, description: str,
                  wait: float) -> bt.JoinToken:
    token_id, _, secret = token_text.partition(".")
    async with APIClient(target, user_agent="pilothouse-token") as client:
        await _ensure_cluster_info(client, target.server, target.ca_pem)
        for kind, obj in _join_rbac():
            await _ensure(client, kind, obj)
        await client.create(SECRETS, bt.token_secret(token_text, ttl, description=description), "kube-system")
        if not await _wait_signed(client, token_id, wait):
            click.echo(f"warning: kube-public/{bt.CLUSTER_INFO} is not signed with token {token_id} yet (is the "
                       "controller manager's bootstrapsigner running?); agents wait for it", err=True)
    return bt.JoinToken(token_id, secret, bt.ca_cert_hash(target.ca_pem) if target.ca_pem else "")


def _admin(data_dir: Path | None, kubeconfig: str | None) -> ClientConfig:
    from pilothouse.cli.main import default_data_dir

    path = kubeconfig or str((data_dir or default_data_dir()) / "kubeconfig.yaml")
    try:
        return load_kubeconfig(path)
    except (OSError, ValueError, KeyError) as error:
        raise click.ClickException(f"cannot read the admin kubeconfig {path}: {error}") from None


def _api(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except (errors.APIError, errors.ConnectionFailed) as error:
        raise click.ClickException(str(error)) from None


def _admin_options(function: Any) -> Any:
    function = click.option("--kubeconfig", default=None,
                            help="Admin kubeconfig (default: <data-dir>/kubeconfig.yaml).")(function)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="The server's data dir (default: the user state dir).")(function)


@click.group()
def token() -> None:
    """Bootstrap tokens for joining nodes (kubeadm token, k3s token)."""


@token.command("create")
@click.argument("token_text", metavar="[TOKEN]", required=False)
@_admin_options
@click.option("--ttl", default="24h", show_default=True, help="Lifetime (0: never expires).")
@click.option("--description", default="", help="A note kept with the token.")
@click.option("--print-join-command", is_flag=True, help="Print the whole `pilothouse agent` command.")
@click.option("--server", "server_url", default=None,
              help="The address agents join (default: the kubeconfig's), e.g. https://10.1.0.1:6443.")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the bootstrap signer to sign cluster-info with the token.")
def create(token_text: str | None, data_dir: Path | None, kubeconfig: str | None, ttl: str, description: str,
           print_join_command: bool, server_url: str | None, wait: float) -> None:
    """Create a bootstrap token and print the join token (K10<sha256 of the CA key>::<id>.<secret>)."""
    token_text = token_text or bt.generate_token()
    if bt.TOKEN_RE.match(token_text) is None:
        raise click.BadParameter("a token is [a-z0-9]{6}.[a-z0-9]{16}", param_hint="TOKEN")
    target = _admin(data_dir, kubeconfig)
    if server_url:
        target = ClientConfig(server_url, target.ssl_context, target.token, target.ca_pem)
    joined = _api(_create(target, token_text, _parse_ttl(ttl), description, wait))
    if print_join_command:
        click.echo(f"pilothouse agent --server {target.server} --token {joined}")
    else:
        click.echo(str(joined))


@token.command("list")
@_admin_options
def list_tokens(data_dir: Path | None, kubeconfig: str | None) -> None:
    """The bootstrap tokens, as ``kubeadm token list`` shows them."""
    async def run() -> list[Object]:
        async with APIClient(_admin(data_dir, kubeconfig), user_agent="pilothouse-token") as client:
            return list((await client.list(SECRETS, "kube-system")).get("items") or [])

    now = datetime.now(UTC)
    rows = [("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")]
    for secret in _api(run()):
        if secret.get("type") != bt.SECRET_TYPE:
            continue
        expiration = bt.secret_data(secret, "expiration")
        when = bt.expiration(secret)
        ttl = "<forever>"
        if when is not None:
            left = (when - now).total_seconds()
            ttl = "<invalid>" if left <= 0 else f"{int(left // 3600)}h"
        usages = ",".join(sorted(key.removeprefix("usage-bootstrap-") for key in (secret.get("data") or {})
                                 if key.startswith("usage-bootstrap-") and bt.secret_data(secret, key) == "true"))
        rows.append((f"{bt.secret_data(secret, 'token-id')}.<secret>", ttl, expiration or "<never>", usages,
                     bt.secret_data(secret, "description") or "<none>", bt.secret_data(secret, "auth-extra-groups")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@token.command("delete")
@click.argument("tokens", nargs=-1, required=True)
@_admin_options
def delete(tokens: tuple[str, ...], data_dir: Path | None, kubeconfig: str | None) -> None:
    """Delete tokens, named by id, by <id>.<secret> or by join token."""
    ids = []
    for text in tokens:
        try:
            ids.append(bt.JoinToken.parse(text).token_id)
        except ValueError:
            if not re.fullmatch(r"[a-z0-9]{6}", text):
                raise click.BadParameter(f"{text!r} is neither a token id nor a token", param_hint="TOKENS") \
                    from None
            ids.append(text)

    async def run() -> None:
        async with APIClient(_admin(data_dir, kubeconfig), user_agent="pilothouse-token") as client:
            for token_id in ids:
                await client.delete(SECRETS, bt.SECRET_PREFIX + token_id, "kube-system")
                click.echo(f"bootstrap token {token_id!r} deleted")

    _api(run())
