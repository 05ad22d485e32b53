"""API discovery: ``/api``, ``/apis`` (aggregated v2 and legacy), ``/api/v1``, ``/apis/<g>/<v>``.

kubectl prefers aggregated discovery and recognises it only by the response Content-Type
(``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``); it still fetches the
legacy ``/api/v1`` for drain and ``auth can-i``. Everything here is generated from the registry.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pilothouse.apiserver import codec
from pilothouse.machinery.kinds import ResourceRegistry, ResourceType

__all__ = ["Discovery"]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# The response kinds of subresources whose shape differs from the resource's own kind.
_SUBRESOURCE_KINDS: dict[str, tuple[str, str, str]] = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "log": ("", "v1", "Pod"),
    "exec": ("", "v1", "PodExecOptions"),
    "attach": ("", "v1", "PodAttachOptions"),
    "portforward": ("", "v1", "PodPortForwardOptions"),
    "proxy": ("", "v1", "PodProxyOptions"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}
_SUBRESOURCE_VERBS: dict[str, list[str]] = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "portforward": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
    "finalize": ["update"],
    "approval": ["get", "patch", "update"],
    "token": ["create"],
}


class Discovery:
    def __init__(self, registry: ResourceRegistry) -> None:
        self.registry = registry

    # ------------------------------------------------------------ aggregated

    def _aggregated_resource(self, r: ResourceType) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "resource": r.plural,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular,
            "verbs": sorted(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        subresources = []
        for sub in r.subresources:
            group, version, kind = _SUBRESOURCE_KINDS.get(sub, (r.group, r.version, r.kind))
            subresources.append({"subresource": sub,
                                 "responseKind": {"group": group, "version": version, "kind": kind},
                                 "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"])})
        if subresources:
            entry["subresources"] = subresources
        return entry

    def aggregated(self, core: bool) -> dict[str, Any]:
        items = []
        for group, versions in self.registry.group_versions().items():
            if (group == "") != core:
                continue
            items.append({
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [{
                    "version": version,
                    "resources": [self._aggregated_resource(r)
                                  for r in self.registry.in_group_version(group, version)],
                    "freshness": "Current",
                } for version in versions],
            })
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {}, "items": items}

    # ---------------------------------------------------------------- legacy

    def api_versions(self) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": self.registry.group_versions().get("", ["v1"]),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}

    def api_group_list(self) -> dict[str, Any]:
        groups = []
        for group, versions in self.registry.group_versions().items():
            if group == "":
                continue
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.registry.group_versions().get(group)
        if not versions or group == "":
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources = self.registry.in_group_version(group, version)
        if not resources:
            return None
        entries: list[dict[str, Any]] = []
        for r in resources:
            entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                     "kind": r.kind, "verbs": sorted(r.verbs)}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            entries.append(entry)
            for sub in r.subresources:
                sub_group, sub_version, kind = _SUBRESOURCE_KINDS.get(sub, (r.group, r.version, r.kind))
                sub_entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "",
                                             "namespaced": r.namespaced, "kind": kind,
                                             "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"])}
                if (sub_group, sub_version) != (r.group, r.version):
                    sub_entry["group"] = sub_group
                    sub_entry["version"] = sub_version
                entries.append(sub_entry)
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": entries}

    # -------------------------------------------------------------- handlers

    def _negotiated(self, request: web.Request, core: bool) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "as=APIGroupDiscoveryList" in accept:
            content_type = AGGREGATED_V2 if "v=v2;" in accept or accept.endswith("v=v2") else AGGREGATED_V2BETA1
            body = self.aggregated(core)
            if content_type == AGGREGATED_V2BETA1:
                body["apiVersion"] = "apidiscovery.k8s.io/v2beta1"
            response = codec.json_response(body)
            # aiohttp's content_type setter would drop the parameters that carry the meaning here.
            response.headers["Content-Type"] = content_type
            return response
        return codec.json_response(self.api_versions() if core else self.api_group_list())

    async def handle_api(self, request: web.Request) -> web.Response:
        return self._negotiated(request, core=True)

    async def handle_apis(self, request: web.Request) -> web.Response:
        return self._negotiated(request, core=False)
