"""The OpenAPI v3 documents kube-apiserver serves at ``/openapi/v3`` and ``/openapi/v3/<gv>``.

Why: kubectl 1.32 needs them. ``apply``/``create``/``edit`` (default ``--validate=strict``) look for
a ``patch`` operation whose ``x-kubernetes-group-version-kind`` matches and that takes a
``fieldValidation`` parameter, before they dare send ``fieldValidation=Strict``; with
``application/strategic-merge-patch+json`` in its ``requestBody`` they compute strategic merge
patches from ``components.schemas``; ``explain`` prints those schemas. Documents are shaped like
upstream's generated ``api/openapi-spec/v3/*.json``, trimmed to the resources actually served, and
built once per resource set (they are large).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from pilothouse.machinery import openapi_components
from pilothouse.machinery.kinds.types import ResourceType
from pilothouse.machinery.schema import KUBERNETES_VERSION, definition_name

__all__ = [
    "group_version_path",
    "openapi_v3_document",
    "openapi_v3_document_bytes",
    "openapi_v3_index",
]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_PATCH = _META + "Patch"
_WATCH_EVENT = _META + "WatchEvent"
_SCALE = "io.k8s.api.autoscaling.v1.Scale"
_SCALE_GVK = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json")
_MEDIA = ("application/json", "application/yaml")
_LIST_MEDIA = ("application/json", "application/json;stream=watch", "application/yaml")


def _param(name: str, description: str, type_: str = "string", where: str = "query") -> dict[str, Any]:
    param: dict[str, Any] = {"description": description, "in": where, "name": name,
                             "schema": {"type": type_, "uniqueItems": True}}
    if where == "path":
        param["required"] = True
    return param


_P = {
    "pretty": _param("pretty", "If 'true', then the output is pretty printed."),
    "namespace": _param("namespace", "object name and auth scope, such as for teams and projects",
                        where="path"),
    "dryRun": _param("dryRun", "When present, indicates that modifications should not be persisted. An "
                     "invalid or unrecognized dryRun directive will result in an error response and no "
                     "further processing of the request. Valid values are: - All: all dry run stages will "
                     "be processed"),
    "fieldManager": _param("fieldManager", "fieldManager is a name associated with the actor or entity "
                           "that is making these changes. The value must be less than or 128 characters "
                           "long, and only contain printable characters."),
    "fieldValidation": _param("fieldValidation", "fieldValidation instructs the server on how to handle "
                              "objects in the request containing unknown or duplicate fields. Valid values "
                              "are: - Ignore: drops unknown fields silently. - Warn: sends a warning for "
                              "each unknown field, and serves the request. - Strict: fails the request on "
                              "unknown fields."),
    "force": _param("force", "Force is going to \"force\" Apply requests. It means user will re-acquire "
                    "conflicting fields owned by other people. Force flag must be unset for non-apply patch "
                    "requests.", "boolean"),
    "gracePeriodSeconds": _param("gracePeriodSeconds", "The duration in seconds before the object should "
                                 "be deleted. Value must be non-negative integer. The value zero indicates "
                                 "delete immediately.", "integer"),
    "orphanDependents": _param("orphanDependents", "Deprecated: please use the PropagationPolicy. Should "
                               "the dependent objects be orphaned.", "boolean"),
    "propagationPolicy": _param("propagationPolicy", "Whether and how garbage collection will be "
                                "performed: 'Orphan', 'Background' or 'Foreground'."),
    "allowWatchBookmarks": _param("allowWatchBookmarks", "allowWatchBookmarks requests watch events with "
                                  "type \"BOOKMARK\".", "boolean"),
    "continue": _param("continue", "The continue option should be set when retrieving more results from "
                       "the server, with the value of a previous list's metadata.continue."),
    "fieldSelector": _param("fieldSelector", "A selector to restrict the list of returned objects by their "
                            "fields. Defaults to everything."),
    "labelSelector": _param("labelSelector", "A selector to restrict the list of returned objects by their "
                            "labels. Defaults to everything."),
    "limit": _param("limit", "limit is a maximum number of responses to return for a list call.",
                    "integer"),
    "resourceVersion": _param("resourceVersion", "resourceVersion sets a constraint on what resource "
                              "versions a request may be served from.\n\nDefaults to unset"),
    "resourceVersionMatch": _param("resourceVersionMatch", "resourceVersionMatch determines how "
                                   "resourceVersion is applied to list calls.\n\nDefaults to unset"),
    "sendInitialEvents": _param("sendInitialEvents", "`sendInitialEvents=true` may be set together with "
                                "`watch=true`: the stream then starts with synthetic events for the "
                                "current state of objects.", "boolean"),
    "timeoutSeconds": _param("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    "watch": _param("watch", "Watch for changes to the described resources and return them as a stream "
                    "of add, update, and remove notifications. Specify resourceVersion.", "boolean"),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")


def group_version_path(group: str, version: str) -> str:
    """``api/v1`` for the core group, ``apis/<group>/<version>`` otherwise."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _camel_group(group: str) -> str:
    # rbac.authorization.k8s.io -> RbacAuthorization; "" -> Core (as in operation ids).
    if not group:
        return "Core"
    words = re.split(r"[.\-]", group.removesuffix(".k8s.io"))
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def _tag(group: str, version: str) -> str:
    camel = _camel_group(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": openapi_components.COMPONENT_PREFIX + name}


def _content(name: str, media: Sequence[str] = _MEDIA) -> dict[str, Any]:
    return {m: {"schema": _ref(name)} for m in media}


def _responses(name: str, codes: Sequence[str], media: Sequence[str] = _MEDIA) -> dict[str, Any]:
    words = {"200": "OK", "201": "Created", "202": "Accepted"}
    responses: dict[str, Any] = {
        code: {"content": _content(name, media), "description": words[code]} for code in codes
    }
    responses["401"] = {"description": "Unauthorized"}
    return responses


class _Builder:
    """Paths for one resource; ``schema`` names its definition, ``list_schema`` its list."""

    def __init__(self, rt: ResourceType, schema: str, list_schema: str | None) -> None:
        self.rt = rt
        self.schema = schema
        self.list_schema = list_schema
        self.gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
        self.tag = _tag(rt.group, rt.version)
        self.id_prefix = _camel_group(rt.group) + rt.version[:1].upper() + rt.version[1:]
        self.ns = "Namespaced" if rt.namespaced else ""

    def op(self, verb: str, action: str, what: str, params: Sequence[str], responses: dict[str, Any],
           body: dict[str, Any] | None = None, gvk: dict[str, str] | None = None, op_id: str = "",
           ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "description": what,
            "operationId": op_id or f"{verb}{self.id_prefix}{self.ns}{self.rt.kind}",
        }
        if params:
            operation["parameters"] = [_P[p] for p in params]
        if body is not None:
            operation["requestBody"] = body
        operation["responses"] = responses
        operation["tags"] = [self.tag]
        operation["x-kubernetes-action"] = action
        operation["x-kubernetes-group-version-kind"] = gvk or self.gvk
        return operation

    def body(self, name: str) -> dict[str, Any]:
        return {"content": {"*/*": {"schema": _ref(name)}}, "required": True}

    def patch_body(self) -> dict[str, Any]:
        # kubectl apply computes a strategic merge patch only where the operation offers that type.
        types = [m for m in _PATCH_TYPES if self.rt.strategic_merge_patch or "strategic" not in m]
        return {"content": {m: {"schema": _ref(_PATCH)} for m in types}, "required": True}

    def base(self) -> str:
        prefix = "/" + group_version_path(self.rt.group, self.rt.version)
        if self.rt.namespaced:
            return f"{prefix}/namespaces/{{namespace}}/{self.rt.plural}"
        return f"{prefix}/{self.rt.plural}"

    def scope_params(self) -> list[dict[str, Any]]:
        return [_P["namespace"]] if self.rt.namespaced else []

    def name_param(self) -> dict[str, Any]:
        return _param("name", f"name of the {self.rt.kind}", where="path")

    def collection(self) -> dict[str, Any]:
        kind, verbs = self.rt.kind, set(self.rt.verbs)
        item: dict[str, Any] = {}
        if "deletecollection" in verbs:
            item["delete"] = self.op(
                "delete", "deletecollection", f"delete collection of {kind}",
                (*_DELETE_PARAMS, *(p for p in _LIST_PARAMS if p not in ("watch", "allowWatchBookmarks"))),
                _responses(_STATUS, ("200",)), self.body(_DELETE_OPTIONS),
                op_id=f"delete{self.id_prefix}Collection{self.ns}{kind}")
        if "list" in verbs and self.list_schema:
            item["get"] = self.op("list", "list", f"list or watch objects of kind {kind}", _LIST_PARAMS,
                                  _responses(self.list_schema, ("200",), _LIST_MEDIA))
        if "create" in verbs:
            item["post"] = self.op("create", "post", f"create a {kind}",
                                   ("dryRun", "fieldManager", "fieldValidation"),
                                   _responses(self.schema, ("200", "201", "202")), self.body(self.schema))
        item["parameters"] = [*self.scope_params(), _P["pretty"]]
        return dict(sorted(item.items()))

    def single(self, suffix: str = "", schema: str = "", gvk: dict[str, str] | None = None) -> dict[str, Any]:
        kind, verbs = self.rt.kind, set(self.rt.verbs)
        schema = schema or self.schema
        word = {"": "", "/status": "Status", "/scale": "Scale"}.get(suffix, suffix.strip("/").title())
        sub = f" {suffix.strip('/')} of" if suffix else ""
        the = f"the specified {kind}"
        item: dict[str, Any] = {}
        if "delete" in verbs and not suffix:
            item["delete"] = self.op("delete", "delete", f"delete a {kind}", _DELETE_PARAMS,
                                     _responses(_STATUS, ("200", "202")), self.body(_DELETE_OPTIONS))
        if "get" in verbs:
            item["get"] = self.op("read", "get", f"read{sub} {the}", (), _responses(schema, ("200",)),
                                  gvk=gvk, op_id=f"read{self.id_prefix}{self.ns}{kind}{word}")
        if "patch" in verbs:
            item["patch"] = self.op(
                "patch", "patch", f"partially update{sub} {the}",
                ("dryRun", "fieldManager", "fieldValidation", "force"),
                _responses(schema, ("200", "201")), self.patch_body(), gvk=gvk,
                op_id=f"patch{self.id_prefix}{self.ns}{kind}{word}")
        if "update" in verbs:
            item["put"] = self.op(
                "replace", "put", f"replace{sub} {the}", ("dryRun", "fieldManager", "fieldValidation"),
                _responses(schema, ("200", "201")), self.body(schema), gvk=gvk,
                op_id=f"replace{self.id_prefix}{self.ns}{kind}{word}")
        item["parameters"] = [self.name_param(), *self.scope_params(), _P["pretty"]]
        return dict(sorted(item.items()))

    def watch_paths(self) -> dict[str, Any]:
        rt, kind = self.rt, self.rt.kind
        gv = "/" + group_version_path(rt.group, rt.version)
        events = _responses(_WATCH_EVENT, ("200",), _LIST_MEDIA)
        params = [_P[p] for p in _LIST_PARAMS]
        paths: dict[str, Any] = {}
        scoped = (f"{gv}/watch/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced
                  else f"{gv}/watch/{rt.plural}")
        paths[scoped] = {
            "get": self.op("watch", "watchlist", f"watch individual changes to a list of {kind}. deprecated: "
                           "use the 'watch' parameter with a list operation instead.", (), events,
                           op_id=f"watch{self.id_prefix}{self.ns}{kind}List"),
            "parameters": [*params[:-1], *self.scope_params(), _P["pretty"], params[-1]],
        }
        paths[f"{scoped}/{{name}}"] = {
            "get": self.op("watch", "watch", f"watch changes to an object of kind {kind}. deprecated: use "
                           "the 'watch' parameter with a list operation instead, filtered to a single item "
                           "with the 'fieldSelector' parameter.", (), events),
            "parameters": [*params[:-1], self.name_param(), *self.scope_params(), _P["pretty"], params[-1]],
        }
        if rt.namespaced:
            paths[f"{gv}/watch/{rt.plural}"] = {
                "get": self.op("watch", "watchlist", f"watch individual changes to a list of {kind}. "
                               "deprecated: use the 'watch' parameter with a list operation instead.", (),
                               events, op_id=f"watch{self.id_prefix}{kind}ListForAllNamespaces"),
                "parameters": [*params[:-1], _P["pretty"], params[-1]],
            }
        return paths

    def paths(self) -> dict[str, Any]:
        rt = self.rt
        base = self.base()
        paths: dict[str, Any] = {base: self.collection(), f"{base}/{{name}}": self.single()}
        if rt.status_strategy is not None:
            paths[f"{base}/{{name}}/status"] = self.single("/status")
        if rt.scale is not None:
            paths[f"{base}/{{name}}/scale"] = self.single("/scale", _SCALE, _SCALE_GVK)
        if rt.namespaced and "list" in rt.verbs and self.list_schema:
            gv = "/" + group_version_path(rt.group, rt.version)
            paths[f"{gv}/{rt.plural}"] = {
                "get": self.op("list", "list", f"list or watch objects of kind {rt.kind}", (),
                               _responses(self.list_schema, ("200",), _LIST_MEDIA),
                               op_id=f"list{self.id_prefix}{rt.kind}ForAllNamespaces"),
                "parameters": [_P[p] for p in _LIST_PARAMS[:-1]] + [_P["pretty"], _P["watch"]],
            }
        if "watch" in rt.verbs:
            paths.update(self.watch_paths())
        return paths


def _build_document(resources: Sequence[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    roots = {_STATUS, _DELETE_OPTIONS, _PATCH, _WATCH_EVENT}
    own: dict[str, Any] = {}  # definitions a row carries itself (custom resources)
    for rt in resources:
        schema: str | None
        list_schema: str | None
        if rt.openapi is not None:
            schema, list_schema = rt.openapi.definition, rt.openapi.list_definition
            own.update(rt.openapi.schemas)
            roots.update((_META + "ObjectMeta", _META + "ListMeta"))
        else:
            schema = definition_name(rt.group, rt.version, rt.kind)
            list_schema = definition_name(rt.group, rt.version, rt.kind + "List")
        if schema is None:
            continue  # no published schema: nothing to describe
        roots.add(schema)
        if list_schema:
            roots.add(list_schema)
        if rt.scale is not None:
            roots.add(_SCALE)
        paths.update(_Builder(rt, schema, list_schema).paths())
    schemas = {name: openapi_components.component_schema(name)
               for name in openapi_components.reachable_definitions(roots)}
    schemas.update(own)
    return {
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"description": "Bearer Token authentication",
                                                "in": "header", "name": "authorization", "type": "apiKey"}},
        },
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "openapi": "3.0.0",
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
    }


class _Built:
    """Every group-version document for one resource set, with its bytes and hash."""

    def __init__(self, resources: Sequence[ResourceType]) -> None:
        by_gv: dict[tuple[str, str], list[ResourceType]] = {}
        for rt in resources:
            by_gv.setdefault((rt.group, rt.version), []).append(rt)
        self.documents: dict[str, dict[str, Any]] = {}
        self.bytes: dict[str, bytes] = {}
        self.hashes: dict[str, str] = {}
        for (group, version), members in sorted(by_gv.items()):
            path = group_version_path(group, version)
            document = _build_document(members)
            if not document["paths"]:
                # Nothing described (no published schema): kubectl then treats the group as it treats
                # custom resources, which is better than a document without a patch operation.
                continue
            data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
            self.documents[path] = document
            self.bytes[path] = data
            # Upstream uses the upper-case hex SHA-512 of the document; kubectl caches by it.
            self.hashes[path] = hashlib.sha512(data).hexdigest().upper()


_cache: dict[tuple[Any, ...], _Built] = {}
_lock = threading.Lock()


def _signature(resources: Sequence[ResourceType]) -> tuple[Any, ...]:
    return tuple(sorted((rt.group, rt.version, rt.kind, rt.plural, rt.namespaced, rt.subresources,
                         tuple(rt.verbs), rt.openapi.revision if rt.openapi else "") for rt in resources))


def _built(resources: Sequence[ResourceType]) -> _Built:
    key = _signature(resources)
    built = _cache.get(key)
    if built is None:
        with _lock:
            built = _cache.get(key)
            if built is None:
                built = _Built(resources)
                if len(_cache) > 8:
                    _cache.clear()  # resource sets change rarely (CRDs); keep the newest few
                _cache[key] = built
    return built


def openapi_v3_index(resources: Sequence[ResourceType]) -> dict[str, Any]:
    """``GET /openapi/v3``: one ``serverRelativeURL`` per served group-version."""
    built = _built(resources)
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={built.hashes[path]}"}
                      for path in built.documents}}


def openapi_v3_document(group_version_path: str, resources: Sequence[ResourceType]) -> dict[str, Any] | None:
    """``GET /openapi/v3/<group_version_path>`` (``api/v1``, ``apis/apps/v1``); None when not served.
    The result is shared: do not modify it."""
    return _built(resources).documents.get(group_version_path.strip("/"))


def openapi_v3_document_bytes(group_version_path: str,
                              resources: Sequence[ResourceType]) -> tuple[bytes, str] | None:
    """The serialized document and its hash (for ``ETag``/caching), or None when not served."""
    built = _built(resources)
    path = group_version_path.strip("/")
    if path not in built.bytes:
        return None
    return built.bytes[path], built.hashes[path]
