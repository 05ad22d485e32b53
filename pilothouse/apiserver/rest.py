"""The one generic REST handler: every resource, every verb, through :class:`ResourceStorage`.

Subresources with their own shape (scale, binding, eviction, log, exec, ...) are small handlers
registered in :mod:`pilothouse.apiserver.subresources`; ``/status`` is the same handler with the
kind's status strategy.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from pilothouse.apiserver import codec, options, strictbody, watchstream
from pilothouse.apiserver.coalesce import CoalescedBody
from pilothouse.apiserver.objects import decode_stored, stored_json_list
from pilothouse.apiserver.registry import ResourceStorage, WriteContext, Written
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.apiserver.writes import check_schema
from pilothouse.machinery import meta, tables
from pilothouse.machinery.errors import (
    StatusError,
    bad_request,
    method_not_allowed,
    not_found,
    path_not_found,
    unsupported_media_type,
)
from pilothouse.machinery.kinds import ResourceRegistry, ResourceType
from pilothouse.machinery.meta import Object
from pilothouse.machinery.patch import (
    check_patched_depth,
    json_patch,
    merge_patch,
    server_side_apply,
    strategic_merge_patch,
)
from pilothouse.machinery.protobuf import decode_kubernetes_protobuf

__all__ = ["RestHandler", "SubresourceHandler", "add_standing_warnings", "apply_patch", "apply_patch_written"]

SubresourceHandler = Callable[["RestHandler", web.Request, RequestInfo, ResourceStorage], Awaitable[web.StreamResponse]]

_SUBRESOURCE_VERBS = ("get", "update", "patch")
_STANDING_WARNINGS = "pilothouse.standing_warnings"
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml")


class RestHandler:
    def __init__(self, registry: ResourceRegistry, storages: dict[ResourceType, ResourceStorage],
                 subresources: dict[tuple[str, str], SubresourceHandler]) -> None:
        self.registry = registry
        self.storages = storages
        self.subresources = subresources

    def storage_for(self, group: str, version: str, plural: str) -> ResourceStorage:
        resource = self.registry.by_plural(group, version, plural)
        if resource is None:
            raise path_not_found()
        return self.storages[resource]

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        storage = self.storage_for(info.group, info.version, info.resource)
        resource = storage.resource
        if resource.warnings:
            request[_STANDING_WARNINGS] = resource.warnings
        if info.namespace is not None and not resource.namespaced:
            raise path_not_found()
        namespace = info.namespace if resource.namespaced else None
        generic = resource.strategy_for(info.subresource) is not None
        if info.subresource and not generic:
            handler = self.subresources.get((resource.plural if not resource.group else
                                             f"{resource.plural}.{resource.group}", info.subresource))
            if handler is None:
                handler = self.subresources.get(("*", info.subresource))
            if handler is None or info.subresource not in resource.subresources:
                raise path_not_found()
            return await handler(self, request, info, storage)
        if resource.namespaced and namespace is None and info.verb not in ("list", "watch"):
            raise path_not_found()
        # Resources answered rather than stored (reviews, bindings, componentstatuses): apiserver/virtual.py.
        answered = self.subresources.get((resource.qualified, ""))
        if answered is not None:
            return await answered(self, request, info, storage)
        verb = info.verb
        # go-restful has no route for these: PUT/PATCH on a collection, DELETE/POST on /status, and verbs
        # the resource does not serve (deletecollection on namespaces).
        if ((verb in ("update", "patch") and not info.name) or (info.subresource and verb not in _SUBRESOURCE_VERBS)
                or verb not in resource.verbs):
            raise method_not_allowed()
        if verb == "get":
            options.get_options(request.query)
            if not codec.wants_table(request):
                return codec.raw_json_response(await storage.get_json(namespace, info.name))
            return await self._respond(request, storage, await storage.get(namespace, info.name))
        if verb == "list":
            return await self._list(request, storage, namespace)
        if verb == "watch":
            return await watchstream.serve(request, storage, namespace, info.name)
        if verb == "create":
            if info.name or info.subresource:
                raise method_not_allowed()
            return await self._create(request, storage, namespace)
        if verb == "update":
            return await self._update(request, storage, namespace, info)
        if verb == "patch":
            return await self._patch(request, storage, namespace, info)
        if verb == "delete":
            return await self._delete(request, storage, namespace, info.name)
        if verb == "deletecollection":
            return await self._delete_collection(request, storage, namespace)
        raise method_not_allowed()

    # ------------------------------------------------------------- responses

    async def _respond(self, request: web.Request, storage: ResourceStorage, obj: Object | Written,
                       status: int = 200, ctx: WriteContext | None = None) -> web.Response:
        headers = warning_headers(ctx)
        if codec.wants_table(request):
            resource = storage.resource
            body = tables.to_table(resource.group, resource.kind, [obj.object if isinstance(obj, Written) else obj],
                                   include_object=request.query.get("includeObject", "Metadata"),
                                   printer=resource.printer)
            return codec.json_response(body, status, headers)
        if isinstance(obj, Written):  # a write: answered from the bytes it stored when it has them
            return codec.raw_json_response(obj.json, status, headers)
        return codec.json_response(obj, status, headers)

    async def _list(self, request: web.Request, storage: ResourceStorage,
                    namespace: str | None) -> web.StreamResponse:
        """Stream the list page by page: a 10,000-pod list never sits in memory whole. The
        ``metadata`` (resourceVersion, continue) goes last, which JSON readers do not mind."""
        resource = storage.resource
        pages = storage.list_pages(namespace, options.list_options(request.query, storage.resource))
        # Read the first page before answering, so that errors (a stale continue token) are a Status.
        first = await anext(pages)
        as_table = codec.wants_table(request)
        include_object = request.query.get("includeObject", "Metadata")
        # Small lists go out in one write (one TLS record run, not four): apiserver/coalesce.py.
        response = CoalescedBody(request, "application/json")
        if as_table:
            head = tables.to_table(resource.group, resource.kind, [], include_object=include_object,
                                   printer=resource.printer)
            await response.write(b'{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":'
                                 + orjson.dumps(head["columnDefinitions"]) + b',"rows":[')
        else:
            await response.write(b'{"kind":"' + resource.list_kind.encode() + b'","apiVersion":"'
                                 + resource.api_version.encode() + b'","items":[')
        revision = token = ""
        separator = b""
        page: tuple[list[Any], str, str] | None = first
        while page is not None:
            entries, revision, token = page
            if entries:
                if as_table:
                    objects = [obj if obj is not None else decode_stored(kv) for kv, obj in entries]
                    rows = tables.to_table(resource.group, resource.kind, objects,
                                           include_object=include_object, printer=resource.printer)["rows"]
                    chunk = orjson.dumps(rows)[1:-1]
                else:
                    chunk = stored_json_list(entries)
                await response.write(separator + chunk)
                separator = b","
            page = await anext(pages, None)
        list_meta = {"resourceVersion": revision, **({"continue": token} if token else {})}
        await response.write(b'],"metadata":' + orjson.dumps(list_meta) + b"}\n")
        return await response.finish()

    # ---------------------------------------------------------------- writes

    async def _create(self, request: web.Request, storage: ResourceStorage, namespace: str | None) -> web.Response:
        body, _ = await codec.read_body(request)
        ctx = options.write_context(request.query, request.headers)
        strictbody.report_duplicates(request, ctx, storage.resource)
        created = await storage.create_written(namespace, body, ctx)
        return await self._respond(request, storage, created, 201, ctx)

    async def _update(self, request: web.Request, storage: ResourceStorage, namespace: str | None,
                      info: RequestInfo) -> web.Response:
        body, _ = await codec.read_body(request)
        ctx = options.write_context(request.query, request.headers)
        strictbody.report_duplicates(request, ctx, storage.resource)
        obj, created = await storage.update_written(namespace, info.name, body, ctx, info.subresource)
        return await self._respond(request, storage, obj, 201 if created else 200, ctx)

    async def _patch(self, request: web.Request, storage: ResourceStorage, namespace: str | None,
                     info: RequestInfo) -> web.Response:
        if request.content_type not in _PATCH_TYPES:
            raise unsupported_media_type(request.content_type)
        if request.content_type == _PATCH_TYPES[2] and not storage.resource.strategic_merge_patch:
            # As handlers/patch.go answers for custom resources: only these three are accepted.
            raise StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                              "accepted media types include: " + ", ".join(_PATCH_TYPES[i] for i in (0, 1, 3)))
        body, media_type = await codec.read_body(request)
        ctx = options.write_context(request.query, request.headers)
        obj, created = await apply_patch_written(storage, namespace, info.name, media_type, body, ctx,
                                                 info.subresource)
        return await self._respond(request, storage, obj, 201 if created else 200, ctx)

    async def _delete(self, request: web.Request, storage: ResourceStorage, namespace: str | None,
                      name: str) -> web.Response:
        body = None
        if request.can_read_body:
            raw = await request.read()
            if raw.strip() and request.content_type == codec.PROTOBUF:
                body = decode_kubernetes_protobuf(raw)  # kubectl drain's DELETE fallback
            elif raw.strip() and request.content_type in ("application/json", ""):
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise bad_request("the DeleteOptions body is not valid JSON") from None
        delete_options = options.delete_options(request.query, body)
        ctx = options.write_context(request.query, request.headers)
        if isinstance(body, dict) and body.get("dryRun"):
            ctx.dry_run = True
        obj, _gone = await storage.delete(namespace, name, delete_options, ctx)
        return await self._respond(request, storage, obj, 200, ctx)

    async def _delete_collection(self, request: web.Request, storage: ResourceStorage,
                                 namespace: str | None) -> web.Response:
        body = None
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise bad_request("the DeleteOptions body is not valid JSON") from None
        delete_options = options.delete_options(request.query, body)
        ctx = options.write_context(request.query, request.headers)
        deleted = await storage.delete_collection(namespace, options.list_options(request.query, storage.resource),
                                                  delete_options, ctx)
        resource = storage.resource
        return codec.json_response({"kind": resource.list_kind, "apiVersion": resource.api_version,
                                    "metadata": {}, "items": deleted})


def _warning(text: str) -> str:
    # One Warning header per message, in RFC 7234 form, as kube-apiserver sends them. Warnings carry
    # user data (an unknown field's name): a control character is written as Go's strconv.Quote
    # writes it (\n, \x1f), never raw, since aiohttp refuses it in a header and drops the connection.
    escaped = _CONTROL.sub(_go_escape, text).replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _GO_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if char < "\x80" else f"\\u{ord(char):04x}")


def warning_headers(ctx: WriteContext | None) -> CIMultiDict[str] | None:
    if ctx is None or not ctx.warnings:
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in ctx.warnings:
        headers.add("Warning", _warning(warning))
    return headers


async def add_standing_warnings(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the warnings a resource sends with every answer (a deprecated custom
    resource version), whatever the verb, streams included."""
    for warning in request.get(_STANDING_WARNINGS, ()):
        response.headers.add("Warning", _warning(warning))


async def apply_patch(storage: ResourceStorage, namespace: str | None, name: str, media_type: str, patch: Any,
                      ctx: WriteContext, subresource: str = "") -> tuple[Object, bool]:
    """PATCH in any of the four content types, as one read-modify-write."""
    written, created = await apply_patch_written(storage, namespace, name, media_type, patch, ctx, subresource)
    return written.object, created


async def apply_patch_written(storage: ResourceStorage, namespace: str | None, name: str, media_type: str,
                              patch: Any, ctx: WriteContext, subresource: str = "") -> tuple[Written, bool]:
    """:func:`apply_patch`, answered as :class:`Written` (the REST handler's: no decode to answer)."""
    resource = storage.resource
    schema = resource.object_schema()

    async def mutate(current: Object) -> Object:
        if media_type == "application/json-patch+json":
            patched = json_patch(current, patch)
        elif media_type == "application/merge-patch+json":
            patched = merge_patch(current, patch, share_original=True)  # current: this attempt's own clone
        elif media_type == "application/strategic-merge-patch+json":
            patched = strategic_merge_patch(current, patch, schema)
        else:
            if not isinstance(patch, dict):
                raise bad_request("apply patch body must be an object")
            applied = meta.clone(patch)
            check_schema(applied, resource, ctx)
            patched = server_side_apply(current, applied, ctx.field_manager or "", ctx.force,
                                        resource.api_version, meta.format_time(), schema, subresource)
            check_patched_depth(patched)
            return patched
        if media_type == "application/json-patch+json":
            # A JSON patch can build deeper than any body checked at the door (an add at a deep
            # path, a subtree copied into itself). A merge patch cannot: each subtree of its result
            # is the stored object's or the patch body's, both already within the bound.
            check_patched_depth(patched)
        if isinstance(patched, dict):
            check_schema(patched, resource, ctx)
        return patched

    if media_type == "application/apply-patch+yaml":  # options.write_context required a fieldManager
        async def on_missing() -> Object:
            if subresource:
                raise not_found(resource.plural, resource.group, name)
            applied = meta.clone(patch)
            check_schema(applied, resource, ctx)
            created = server_side_apply(None, applied, ctx.field_manager, ctx.force, resource.api_version,
                                        meta.format_time(), schema)
            created.setdefault("metadata", {})["name"] = name
            return created

        return await storage.guaranteed_update_written(namespace, name, mutate, ctx, subresource,
                                                       on_missing=on_missing)
    return await storage.guaranteed_update_written(namespace, name, mutate, ctx, subresource)

