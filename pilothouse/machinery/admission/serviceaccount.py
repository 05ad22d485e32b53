"""ServiceAccount admission (plugin/pkg/admission/serviceaccount, 1.32): a new pod runs as its
namespace's ``default`` ServiceAccount unless it names one, the account must exist, and every
container mounts the ``kube-api-access-<random>`` projected volume (a bound token, the cluster CA
from the ``kube-root-ca.crt`` ConfigMap, the namespace) at :data:`MOUNT_PATH`, unless the pod or the
account sets ``automountServiceAccountToken: false``. An account annotated
``kubernetes.io/enforce-mountable-secrets: "true"`` limits its pods to the secrets it lists. Mirror
pods (a node's static pods) are not mutated and may reference no service account, secret or token.
"""

from __future__ import annotations

from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.meta import Object

__all__ = ["DEFAULT", "ENFORCE_MOUNTABLE_SECRETS", "MIRROR_ANNOTATION", "MOUNT_PATH", "ROOT_CA_CONFIGMAP",
           "TOKEN_EXPIRATION_SECONDS", "VOLUME_PREFIX", "admit_pod", "is_mirror", "limit_secret_references",
           "token_volume_source", "validate_mirror"]


DEFAULT = "default"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ENFORCE_MOUNTABLE_SECRETS = "kubernetes.io/enforce-mountable-secrets"
#: serviceaccount.WarnOnlyBoundTokenExpirationSeconds: an hour and seven seconds, so a token the
#: kubelet has not refreshed can be told apart (and only warned about) when it is used late.
TOKEN_EXPIRATION_SECONDS = 3607


def is_mirror(pod: Object) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def token_volume_source() -> Object:
    """TokenVolumeSource, with the default mode written out as Kubernetes does (#104464)."""
    return {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def _should_automount(account: Object, spec: Object) -> bool:
    # The pod's preference wins, then the account's; true by default.
    for choice in (spec.get("automountServiceAccountToken"), account.get("automountServiceAccountToken")):
        if choice is not None:
            return bool(choice)
    return True


def _mount_token(spec: Object, suffix: str) -> None:
    volumes = spec.get("volumes") or []
    existing = next((v["name"] for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    name = existing or VOLUME_PREFIX + suffix
    needed = False
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            mounts = container.get("volumeMounts") or []
            # A container that mounts something at the token path keeps it.
            if not any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                container["volumeMounts"] = [*mounts, {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}]
                needed = True
    if existing is None and needed:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


def admit_pod(pod: Object, account: Object, suffix: str) -> None:
    """The mutating half for a pod whose ``serviceAccountName`` is set and whose account exists:
    the token volume (``suffix`` names it) and the account's image pull secrets."""
    spec = pod.setdefault("spec", {})
    if _should_automount(account, spec):
        _mount_token(spec, suffix)
    if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in account["imagePullSecrets"]]


def _references_secrets(spec: Object) -> bool:
    if spec.get("imagePullSecrets"):
        return True
    for volume in spec.get("volumes") or []:
        if volume.get("secret") is not None or any(
                source.get("secret") is not None for source in (volume.get("projected") or {}).get("sources") or []):
            return True
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if any((e.get("valueFrom") or {}).get("secretKeyRef") for e in container.get("env") or []) \
                    or any(e.get("secretRef") for e in container.get("envFrom") or []):
                return True
    return False


def validate_mirror(pod: Object) -> None:
    spec = pod.get("spec") or {}
    if spec.get("serviceAccountName"):
        raise Refusal("a mirror pod may not reference service accounts")
    if _references_secrets(spec):
        raise Refusal("a mirror pod may not reference secrets")
    for volume in spec.get("volumes") or []:
        if any(s.get("serviceAccountToken") is not None for s in (volume.get("projected") or {}).get("sources") or []):
            raise Refusal("a mirror pod may not use ServiceAccountToken volume projections")


def _parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, an unparsable value being false."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


def limit_secret_references(account: Object, pod: Object) -> None:
    """limitSecretReferences, for an account with the enforce-mountable-secrets annotation: secret
    volumes, env and envFrom of (init) containers, and image pull secrets must be ones it lists."""
    if not _parse_bool(((account.get("metadata") or {}).get("annotations") or {}).get(ENFORCE_MOUNTABLE_SECRETS, "")):
        return
    account_name = account["metadata"]["name"]
    because = f"is not allowed because service account {account_name} does not reference that"
    mountable = {s.get("name") for s in account.get("secrets") or []}
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if volume.get("secret") is not None and (name := volume["secret"].get("secretName", "")) not in mountable:
            raise Refusal(f'volume with secret.secretName="{name}" {because} secret')
    for field, what in (("initContainers", "init container"), ("containers", "container")):
        for container in spec.get(field) or []:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None and ref.get("name", "") not in mountable:
                    raise Refusal(f'{what} {container.get("name")} with envVar {env.get("name")} referencing '
                                  f'secret.secretName="{ref.get("name", "")}" {because} secret')
            for source in container.get("envFrom") or []:
                ref = source.get("secretRef")
                if ref is not None and ref.get("name", "") not in mountable:
                    raise Refusal(f'{what} {container.get("name")} with envFrom referencing '
                                  f'secret.secretName="{ref.get("name", "")}" {because} secret')
    pull = {s.get("name") for s in account.get("imagePullSecrets") or []}
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if ref.get("name", "") not in pull:
            raise Refusal(f'imagePullSecrets[{i}].name="{ref.get("name", "")}" {because} imagePullSecret')
