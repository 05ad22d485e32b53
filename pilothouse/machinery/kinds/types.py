"""What a served resource is: its names (``ResourceType``) and how it differs (``Strategy``).

One generic REST path serves every resource (see ``pilothouse.apiserver.registry``). A kind only
declares its differences, as kube-apiserver's ``RESTCreateStrategy``/``RESTUpdateStrategy`` do:
defaulting, validation, what create/update may change, which fields can be selected on, and which
subresources it has. Status strategies are derived with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pilothouse.machinery.errors import FieldError, bad_request
from pilothouse.machinery.meta import Object
from pilothouse.machinery.meta import clone as _clone
from pilothouse.machinery.schema import Schema, schema_for_kind
from pilothouse.machinery.selectors import LabelSelector, selector_from_object

if TYPE_CHECKING:  # tables import this module for Object; the printer is only carried here
    from pilothouse.machinery.tables.columns import Printer

__all__ = [
    "FIELD_LABEL_NOT_SUPPORTED",
    "UNKNOWN_FIELD_LABEL",
    "Object",
    "OpenAPIDefinitions",
    "ResourceType",
    "ScaleSpec",
    "Strategy",
    "check_field_labels",
    "keep_all_but_status",
    "keep_status_on_update",
    "no_field_errors",
    "no_op",
    "reset_status_on_create",
    "selectable_metadata",
    "status_strategy",
]

#: How a field label conversion rejects a label (``{label}`` filled in). Kinds that register their own
#: conversion in Kubernetes (pods, nodes, services, ...) say this; the others fall back on
#: apimachinery's ``DefaultMetaV1FieldSelectorConversion``, which says UNKNOWN_FIELD_LABEL.
FIELD_LABEL_NOT_SUPPORTED = "field label not supported: {label}"
UNKNOWN_FIELD_LABEL = '"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def no_op(*_args: Any) -> None:
    return None


def no_field_errors(*_args: Any) -> list[FieldError]:
    return []


def selectable_metadata(obj: Object) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}


def reset_status_on_create(obj: Object) -> None:
    """Spec-and-status kinds: a create never sets status, and starts at generation 1."""
    obj.pop("status", None)
    obj["metadata"]["generation"] = 1


def keep_status_on_update(new: Object, old: Object) -> None:
    """The main resource never changes status (that is /status's job); a spec change bumps
    generation."""
    if "status" in old:
        new["status"] = old["status"]
    else:
        new.pop("status", None)
    old_generation = old["metadata"].get("generation", 1)
    new["metadata"]["generation"] = old_generation
    if new.get("spec") != old.get("spec"):
        new["metadata"]["generation"] = old_generation + 1


def keep_all_but_status(new: Object, old: Object) -> None:
    """The /status subresource changes status (and annotations, as Kubernetes' workload status
    strategies allow: the deployment controller records revisions that way); everything else comes
    from the stored object."""
    status = new.get("status")
    metadata = new.get("metadata") or {}
    new.clear()
    new.update(_clone(old))
    for key in ("managedFields", "annotations"):
        if key in metadata:
            new["metadata"][key] = metadata[key]
        else:
            new["metadata"].pop(key, None)
    if status is None:
        new.pop("status", None)
    else:
        new["status"] = status


@dataclass(frozen=True)
class ScaleSpec:
    """Where the /scale subresource reads and writes (autoscaling/v1 Scale)."""

    replicas_path: tuple[str, ...] = ("spec", "replicas")
    status_replicas_path: tuple[str, ...] = ("status", "replicas")
    selector_path: tuple[str, ...] = ("spec", "selector")
    #: How the selector at ``selector_path`` reads: a ``metav1.LabelSelector`` (apps/v1 kinds) or, for
    #: a ReplicationController, a plain label map (``selector_from_set``). The Scale's
    #: ``status.selector`` is its string form.
    parse_selector: Callable[[Any], LabelSelector] = selector_from_object


@dataclass(frozen=True)
class Strategy:
    """How one kind differs from the generic pipeline. Every hook mutates or inspects plain dicts."""

    #: Fill in defaults, as Kubernetes' SetDefaults_* functions do (in place).
    default: Callable[[Object], None] = no_op
    #: Extra validation beyond the schema, on create.
    validate: Callable[[Object], list[FieldError]] = no_field_errors
    #: Extra validation on update (new, old).
    validate_update: Callable[[Object, Object], list[FieldError]] = no_field_errors
    #: Whether ``validate_update`` is the whole update validation, ``validate`` not run first (a
    #: custom resource's CEL rules judge an update against the old object: transition rules and
    #: ratcheting).
    validate_update_alone: bool = False
    #: Clear what a create may not set (status), set generation.
    prepare_for_create: Callable[[Object], None] = no_op
    #: Restore what an update may not change (new, old).
    prepare_for_update: Callable[[Object, Object], None] = no_op
    #: Field selector values for this kind: ``{"spec.nodeName": "n1", ...}``. Its keys are also the
    #: labels a selector may name (see :func:`check_field_labels`), so it must accept ``{}``.
    selectable_fields: Callable[[Object], dict[str, str]] = selectable_metadata
    #: Selectable fields whose exact-match watches the store indexes (kube-apiserver's watch cache
    #: triggers: pods by spec.nodeName, one watch per kubelet), and that a list searches the stored
    #: bytes for before decoding; each a plain string at its JSON path. metadata.name always is.
    watch_index: tuple[str, ...] = ()
    #: Selectable fields (besides ``watch_index``) that are a plain string at their JSON path, absent
    #: meaning empty: a watch filtered on them decides from the stored bytes whether an entry can
    #: hold a value before decoding it (the scheduler's ``status.phase!=Succeeded,...`` pod watch).
    plain_fields: tuple[str, ...] = ()
    #: The message for a field selector on a label this kind does not support.
    field_label_error: str = UNKNOWN_FIELD_LABEL
    #: Graceful deletion: the grace period (seconds) a delete waits for, given the object and the
    #: DeleteOptions' gracePeriodSeconds; None for kinds that are removed at once (all but pods).
    grace_period: Callable[[Object, int | None], int] | None = None
    #: Called when a delete is requested and must wait (finalizers, grace): e.g. a Namespace turns
    #: Terminating.
    on_delete_requested: Callable[[Object], None] = no_op
    #: Kind-specific reasons an object marked for deletion must still stay (a Namespace's
    #: spec.finalizers), beyond metadata.finalizers.
    deletion_blocked: Callable[[Object], bool] = lambda _obj: False
    #: Applied to every object read from storage (get, list, watch, and the current object of an
    #: update), as genericregistry.Store's Decorator: a custom resource is defaulted on read and
    #: shown in the version it was asked for. None (the usual case) keeps the stored bytes as they
    #: are, which lets reads skip decoding.
    decorate: Callable[[Object], None] | None = None
    #: The resourceVersion up to which stored objects predate ``decorate``'s rules (a CRD's
    #: schema change): later ones stored in the served version were shaped by them when written
    #: and are served without it.
    decorated_through: int = 0
    #: Whether PUT on a missing object creates it.
    allow_create_on_update: bool = False
    #: Whether an update without resourceVersion is allowed (last write wins).
    allow_unconditional_update: bool = True
    #: What a delete that names no propagation policy does (``DefaultGarbageCollectionPolicy``):
    #: None deletes dependents in the background; "Orphan" keeps the behaviour kinds had before the
    #: garbage collector (core/v1 ReplicationControllers).
    default_propagation_policy: str | None = None
    #: Whether the store drops an object of this kind the server's ``--event-ttl`` after its last
    #: write (kube-apiserver's events registry sets the store's TTLFunc to that TTL): Events.
    expires: bool = False


def check_field_labels(strategy: Strategy, labels: Iterable[str]) -> None:
    """A 400 for the first label, in selector order, the kind cannot select on (kube-apiserver
    converts every label of a list, watch or deletecollection selector before it reads anything)."""
    supported = strategy.selectable_fields({})
    for label in labels:
        if label not in supported:
            raise bad_request(strategy.field_label_error.format(label=label))


def status_strategy(main: Strategy) -> Strategy:
    """The usual /status strategy of a spec-and-status kind: only status (and annotations) change,
    and the main resource's update rules (immutable fields) do not apply to a status write."""
    return replace(main, prepare_for_update=keep_all_but_status, validate_update=no_field_errors)


@dataclass(frozen=True)
class OpenAPIDefinitions:
    """A kind's OpenAPI v3 component schemas when they are not the official ones (custom
    resources): the object's and the list's definition names, every schema they reference, and a
    revision that changes whenever the schemas do (documents are cached by it)."""

    definition: str
    list_definition: str
    schemas: Mapping[str, Schema]
    revision: str = ""


@dataclass(frozen=True)
class ResourceType:
    """A served resource: names for discovery and URLs, plus its strategy.

    Everything a kind needs to be served rides on this row (names, strategy, schema, table printer,
    scale spec, OpenAPI definitions), so a kind added at run time (a custom resource) works wherever
    a built-in does. The built-ins leave ``schema``/``printer``/``openapi`` unset and are looked up
    by group/version/kind in the official schemas and the printer table.
    """

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    strategy: Strategy = field(default_factory=Strategy, repr=False)  # closures: noise in logs
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Status strategy for /status; None when the kind has no status subresource.
    status_strategy: Strategy | None = field(default=None, repr=False)
    scale: ScaleSpec | None = None
    #: Other subresources served by dedicated handlers (binding, eviction, log, exec, ...).
    extra_subresources: tuple[str, ...] = ()
    #: Subresources served by the generic handler with a strategy of their own (namespaces/finalize).
    subresource_strategies: tuple[tuple[str, Strategy], ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch",
                              "update", "watch")
    #: The object's root schema; None means the official one for this group/version/kind.
    schema: Schema | None = field(default=None, compare=False, repr=False)
    #: Drops, in place, the fields the schema does not declare and returns their paths (a custom
    #: resource's structural pruning); None means the official schema's check (``check_schema``).
    prune: Callable[[Object], list[str]] | None = field(default=None, compare=False, repr=False)
    #: The ``kubectl get`` table printer; None means the built-in printer registered for the kind.
    printer: Printer | None = field(default=None, compare=False, repr=False)
    #: OpenAPI component schemas; None means the official definitions for this kind.
    openapi: OpenAPIDefinitions | None = field(default=None, compare=False, repr=False)
    #: Strategic merge patch needs patch strategies that only built-in (Go) types declare; custom
    #: resources refuse it with 415, as Kubernetes does.
    strategic_merge_patch: bool = True
    #: The singular name when it is not the lower-cased kind (custom resources name theirs).
    singular_name: str = ""
    #: The list's kind when it is not ``<kind>List`` (a CRD's ``names.listKind``).
    list_kind_name: str = ""
    #: Warnings sent with every answer about this resource (a deprecated custom resource version).
    warnings: tuple[str, ...] = ()
    #: The group whose storage this resource shares, when not its own: events.k8s.io Events are core
    #: Events in the store, as in kube-apiserver (``conversion.py`` converts between the shapes).
    storage_group: str | None = None

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or f"{self.kind}List"

    def object_schema(self) -> Schema | None:
        """The schema objects of this kind are checked, patched and applied against."""
        if self.schema is not None:
            return self.schema
        return schema_for_kind(self.group, self.version, self.kind)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` / ``pods``: how Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def subresources(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.status_strategy is not None:
            names.append("status")
        if self.scale is not None:
            names.append("scale")
        names.extend(self.extra_subresources)
        names.extend(name for name, _ in self.subresource_strategies)
        return tuple(names)

    def strategy_for(self, subresource: str) -> Strategy | None:
        """The strategy serving ``subresource`` through the generic handler ("" is the resource)."""
        if not subresource:
            return self.strategy
        if subresource == "status":
            return self.status_strategy
        for name, strategy in self.subresource_strategies:
            if name == subresource:
                return strategy
        return None

    def key_prefix(self, namespace: str | None = None) -> str:
        """Store key prefix, as Kubernetes lays out etcd: /registry/<group>/<plural>/[<ns>/]."""
        group = self.group if self.storage_group is None else self.storage_group
        base = f"/registry/{group or 'core'}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        return f"{self.key_prefix(namespace)}{name}"
