"""``--encryption-provider-config``: Kubernetes' ``apiserver.config.k8s.io/v1`` EncryptionConfiguration.

Parsed and validated as kube-apiserver does (``apis/apiserver/validation/validation_encryption.go`` and
``server/options/encryptionconfig/config.go``), with the same messages, so that a config written for
Kubernetes works here unchanged and a broken one fails startup with the words an operator would
search for. Only the local providers exist here (aescbc, aesgcm, secretbox, identity); a ``kms``
provider is refused: it needs a KMS plugin on a unix socket, which pilothouse does not speak.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "API_VERSION",
    "EncryptionConfigError",
    "EncryptionConfiguration",
    "GroupResource",
    "Key",
    "Provider",
    "ResourceConfiguration",
    "load_config",
    "parse_config",
    "parse_group_resource",
]

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"

#: Key sizes each provider accepts (AES-128/192/256; NaCl secretbox is XSalsa20 with a 32-byte key).
KEY_SIZES: dict[str, tuple[int, ...]] = {"aescbc": (16, 24, 32), "aesgcm": (16, 24, 32), "secretbox": (32,)}
PROVIDERS = ("kms", "aesgcm", "aescbc", "secretbox", "identity")

_KEY_LENGTH = "secret is not of the expected length, got {got}, expected one of [{sizes}]"
_AT_LEAST_ONE = "at least one {} is required"
_MANDATORY = "{} is a mandatory field for a {}"
_NO_PROVIDER = "provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"
_MORE_THAN_ONE = "more than one provider specified in a single element, should split into different list elements"
_OVERLAP = ("using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed "
            "as they will be masked")
_NON_REST = ("apiserveripinfo", "serviceipallocations", "servicenodeportallocations")


class EncryptionConfigError(ValueError):
    """The configuration file cannot be used; the message is the one kube-apiserver prints."""


@dataclass(frozen=True)
class GroupResource:
    group: str
    resource: str

    def yaml_string(self) -> str:
        """How the config file spells it (``*.`` for every core resource, ``deployments.apps``)."""
        if not self.group and self.resource == "*":
            return "*."
        return f"{self.resource}.{self.group}" if self.group else self.resource


ANY = GroupResource("*", "*")


def parse_group_resource(text: str) -> GroupResource:
    """apimachinery's ``ParseGroupResource``: the group is what follows the first dot."""
    resource, dot, group = text.partition(".")
    return GroupResource(group if dot else "", resource)


@dataclass(frozen=True)
class Key:
    name: str
    secret: bytes


@dataclass(frozen=True)
class Provider:
    #: "aescbc", "aesgcm", "secretbox" or "identity".
    type: str
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True)
class ResourceConfiguration:
    resources: tuple[GroupResource, ...]
    providers: tuple[Provider, ...]


@dataclass(frozen=True)
class EncryptionConfiguration:
    resources: tuple[ResourceConfiguration, ...]

    def providers_by_resource(self) -> dict[GroupResource, tuple[Provider, ...]]:
        """Each configured resource's providers in order, as ``getTransformerOverrides`` builds them:
        a resource named in several entries reads with all of them; a rule masked by an earlier
        ``*.group`` or ``*.*`` rule is an error (it could never take effect)."""
        table: dict[GroupResource, tuple[Provider, ...]] = {}
        for entry in self.resources:
            for gr in entry.resources:
                for wildcard in (GroupResource(gr.group, "*"), ANY):
                    if wildcard in table:
                        raise EncryptionConfigError(
                            f"error while parsing file: resource {json.dumps(gr.yaml_string())} is masked by "
                            f"earlier rule {json.dumps(wildcard.yaml_string())}")
                table[gr] = table.get(gr, ()) + entry.providers
        return table


def load_config(path: str | Path) -> EncryptionConfiguration:
    """Read, decode and validate the file; :class:`EncryptionConfigError` with Kubernetes' message."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise EncryptionConfigError(f"error while parsing file: error opening encryption provider "
                                    f"configuration file {json.dumps(str(path))}: {error.strerror}") from None
    if not data:
        raise EncryptionConfigError(f"error while parsing file: encryption provider configuration file "
                                    f"{json.dumps(str(path))} is empty")
    config = parse_config(data)
    config.providers_by_resource()  # the masking check
    return config


def parse_config(data: bytes) -> EncryptionConfiguration:
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise EncryptionConfigError(f"error while parsing file: {error}") from None
    if not isinstance(document, dict):
        raise EncryptionConfigError("error while parsing file: couldn't get version/kind; json parse error: "
                                    "the file is not a YAML or JSON object")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version != API_VERSION or kind != KIND:
        raise EncryptionConfigError(f"error while parsing file: no kind {json.dumps(kind)} is registered for "
                                    f"version {json.dumps(api_version)}; expected kind {KIND} of {API_VERSION}")
    errors: list[str] = []
    entries = _list(document.get("resources"))
    if not entries:
        errors.append(_required("resources", _AT_LEAST_ONE.format("resources")))
    parsed = tuple(_resource_configuration(entry, f"resources[{i}]", errors) for i, entry in enumerate(entries))
    if errors:
        # field.ErrorList.ToAggregate: one error alone, several in brackets.
        message = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        raise EncryptionConfigError(f"error while parsing file: {message}")
    return EncryptionConfiguration(parsed)


# ------------------------------------------------------------------ validation, field by field


def _resource_configuration(entry: Any, path: str, errors: list[str]) -> ResourceConfiguration:
    entry = entry if isinstance(entry, dict) else {}
    names = [str(name) for name in _list(entry.get("resources"))]
    if not names:
        errors.append(_required(f"{path}.resources", _AT_LEAST_ONE.format(f"{path}.resources")))
    _check_overlap(names, f"{path}.resources", errors)
    for j, name in enumerate(names):
        message = _resource_name_error(name)
        if message:
            errors.append(_invalid(f"{path}.resources[{j}]", json.dumps(name), message))
    providers = _list(entry.get("providers"))
    if not providers:
        errors.append(_required(f"{path}.providers", _AT_LEAST_ONE.format(f"{path}.providers")))
    parsed = [_provider(p, f"{path}.providers[{j}]", errors) for j, p in enumerate(providers)]
    return ResourceConfiguration(tuple(parse_group_resource(name) for name in names),
                                 tuple(p for p in parsed if p is not None))


def _check_overlap(names: list[str], path: str, errors: list[str]) -> None:
    parsed = [parse_group_resource(name) for name in names]
    duplicate = overlap = False
    for i, first in enumerate(parsed):
        for j, second in enumerate(parsed):
            if i == j:
                continue
            if first == second and not duplicate:
                duplicate = True
                continue
            # A second duplicate pair goes on to the overlap test, as in validateResourceOverlap.
            if first == ANY or (first.group == second.group and "*" in (first.resource, second.resource)):
                overlap = True
    value = _go_strings(names)
    if duplicate:
        errors.append(_invalid(path, value, "the same resource cannot be specified multiple times"))
    if overlap:
        errors.append(_invalid(path, value, _OVERLAP))


def _resource_name_error(name: str) -> str:
    gr = parse_group_resource(name)
    if name.lower() != name:
        return "resource name should not contain capital letters"
    if name == "*":
        return "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"
    if name in _NON_REST:
        return "resources which do not have REST API/s cannot be encrypted"
    if gr.group == "events.k8s.io":
        return ("'*.events.k8s.io' objects are stored using the 'events' API group in etcd. "
                "Use 'events' instead in the config file")
    if gr.group == "extensions":
        return "'extensions' group has been removed and cannot be used for encryption"
    if gr.group == "*" and gr.resource != "*":
        return "encrypting the same resource across groups is not supported"
    return ""


def _provider(entry: Any, path: str, errors: list[str]) -> Provider | None:
    entry = entry if isinstance(entry, dict) else {}
    found = [name for name in PROVIDERS if entry.get(name) is not None]
    if len(found) != 1:
        errors.append(_invalid(path, json.dumps(entry, sort_keys=True), _MORE_THAN_ONE if found else _NO_PROVIDER))
        return None
    kind = found[0]
    if kind == "kms":
        name = entry["kms"].get("name", "") if isinstance(entry["kms"], dict) else ""
        errors.append(_invalid(f"{path}.kms", json.dumps(name),
                               "KMS providers are not supported by pilothouse: use aescbc, aesgcm or secretbox"))
        return None
    if kind == "identity":
        return Provider("identity")
    body = entry[kind] if isinstance(entry[kind], dict) else {}
    keys_path = f"{path}.{kind}.keys"
    keys = _list(body.get("keys"))
    if not keys:
        errors.append(_required(keys_path, _AT_LEAST_ONE.format("keys")))
    parsed = [_key(key, f"{keys_path}[{i}]", KEY_SIZES[kind], errors) for i, key in enumerate(keys)]
    return Provider(kind, tuple(key for key in parsed if key is not None))


def _key(entry: Any, path: str, sizes: tuple[int, ...], errors: list[str]) -> Key | None:
    entry = entry if isinstance(entry, dict) else {}
    name, secret = str(entry.get("name") or ""), str(entry.get("secret") or "")
    if not name:
        errors.append(_required(f"{path}.name", _MANDATORY.format("name", "key")))
    if not secret:
        errors.append(_required(f"{path}.secret", _MANDATORY.format("secret", "key")))
        return None
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        errors.append(_invalid(f"{path}.secret", '"REDACTED"', "secrets must be base64 encoded"))
        return None
    if len(raw) not in sizes:
        errors.append(_invalid(f"{path}.secret", '"REDACTED"',
                               _KEY_LENGTH.format(got=len(raw), sizes=" ".join(map(str, sizes)))))
        return None
    return Key(name, raw) if name else None


# ------------------------------------------------------------------ field.Error's wording


def _required(path: str, detail: str) -> str:
    return f"{path}: Required value: {detail}"


def _invalid(path: str, value: str, detail: str) -> str:
    return f"{path}: Invalid value: {value}: {detail}"


def _go_strings(values: list[str]) -> str:
    """A ``[]string`` as Go's ``%#v`` prints it in a field error."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
