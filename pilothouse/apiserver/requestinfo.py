"""What a request asks for, read off its path and method (kube-apiserver's ``RequestInfoFactory``).

Resource paths::

    /api/v1/<resource>[/<name>[/<subresource>]]
    /api/v1/namespaces/<ns>/<resource>[/<name>[/<subresource>]]
    /api/v1/watch/...             (deprecated watch paths, the same below ``watch``)
    /apis/<group>/<version>/...   (the same below the group-version)

Authorization and the generic REST handler both work from this one parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.query import flag
from pilothouse.machinery.selectors import parse_field_selector

__all__ = ["RequestInfo", "field_value", "object_name", "parse_request_info"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    is_resource_request: bool
    path: str
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection (or the HTTP verb)
    group: str = ""
    version: str = ""
    namespace: str | None = None
    resource: str = ""
    name: str = ""
    subresource: str = ""
    #: A list's, watch's or deletecollection's ``fieldSelector`` as sent (the authorization attribute
    #: of 1.32's AuthorizeWithSelectors, which the Node authorizer reads); not part of equality: RBAC,
    #: which caches decisions per request attributes, does not look at selectors.
    field_selector: str = field(default="", compare=False)
    #: Its ``labelSelector``, the other AuthorizeWithSelectors attribute (no authorizer here reads it;
    #: a SubjectAccessReview carries it to them all the same).
    label_selector: str = field(default="", compare=False)


_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
                 "GET": "get", "HEAD": "get"}


def parse_request_info(method: str, path: str, query: Mapping[str, str] | None = None) -> RequestInfo:
    query = query or {}
    parts = [p for p in path.strip("/").split("/") if p]
    method_verb = method.lower()
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(False, path, method_verb)
    if parts[0] == "api":
        if len(parts) < 2:
            return RequestInfo(False, path, method_verb)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return RequestInfo(False, path, method_verb)
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return RequestInfo(False, path, method_verb, group, version)
    verb = _METHOD_VERBS.get(method.upper(), method_verb)
    if rest[0] == "watch" and len(rest) > 1 and verb == "get":
        # The deprecated /watch/... paths (still served in 1.32): a watch of the collection, or of
        # one object when the path names it.
        verb, rest = "watch", rest[1:]
    namespace: str | None = None
    # /namespaces/<ns>/<resource>... is a namespaced request; /namespaces[/<ns>[/status]] is the
    # namespace resource itself.
    if rest[0] == "namespaces" and len(rest) >= 3 and group + version != "" and not (
            group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace = rest[1]
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and namespace is None and len(rest) >= 2:
        name = rest[1]
        subresource = rest[2] if len(rest) > 2 else ""
    # Only a GET without a name reads ?watch (RequestInfoFactory); a named GET ignores it.
    if not name:
        if verb == "get":
            verb = "watch" if flag(query, "watch") else "list"
        elif verb == "delete":
            verb = "deletecollection"
        return RequestInfo(True, path, verb, group, version, namespace, resource, name, subresource,
                           query.get("fieldSelector", ""), query.get("labelSelector", ""))
    return RequestInfo(True, path, verb, group, version, namespace, resource, name, subresource)


def field_value(info: RequestInfo, field: str) -> str | None:
    """The value the request's field selector pins ``field`` to (``=`` or ``==``); a selector that
    does not parse pins nothing, as the authorizer ignores its parse error."""
    if not info.field_selector:
        return None
    try:
        return parse_field_selector(info.field_selector).required_value(field)
    except StatusError:
        return None


def object_name(info: RequestInfo) -> str:
    """The request's object name as RequestInfoFactory gives it: a list or watch pinned to one
    ``metadata.name`` names that object."""
    if info.name or info.verb not in ("list", "watch"):
        return info.name
    return field_value(info, "metadata.name") or ""
