"""The DaemonSet controller: one pod per eligible node, rolled out node by node.

As ``pkg/controller/daemon`` in Kubernetes 1.32: the controller itself decides which nodes should
run a daemon pod (nodeName, nodeSelector/required node affinity, taints against the template's
tolerations plus the tolerations every daemon pod gets), creates the missing pods with a required
node affinity on ``metadata.name`` (the scheduler then binds them), deletes pods on nodes that no
longer qualify and failed pods, and replaces outdated pods within ``maxUnavailable``. The template
history lives in ControllerRevisions; pods carry its hash in ``controller-revision-hash``.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, object_key
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.components.controllers.controllerrevision import (
    CONTROLLER_REVISIONS,
    REVISION_HASH_LABEL,
    RevisionConflict,
    ensure_revision,
    owned_revisions,
    truncate_history,
)
from pilothouse.components.controllers.nodematch import find_untolerated_taint, node_matches_affinity
from pilothouse.components.controllers.podcontrol import (
    PODS,
    PodControl,
    controller_ref,
    is_pod_available,
    is_pod_ready,
    new_controller_ref,
    owner_uid_refs,
    pod_from_template,
)
from pilothouse.machinery.meta import Object

__all__ = [
    "DaemonSetController",
    "add_daemon_tolerations",
    "node_should_run_daemon_pod",
    "replace_node_name_affinity",
    "target_node_name",
]


DAEMONSETS = resource("apps", "v1", "daemonsets")
NODES = resource("", "v1", "nodes")
#: ``extensions.DaemonSetTemplateGenerationKey`` (deprecated, still set).
TEMPLATE_GENERATION_LABEL = "pod-template-generation"

_FAILED_BACKOFF_BASE = 1.0
_FAILED_BACKOFF_MAX = 900.0


def _toleration(key: str, effect: str) -> Object:
    return {"key": key, "operator": "Exists", "effect": effect}


def add_daemon_tolerations(spec: Object) -> None:
    """``util.AddOrUpdateDaemonPodTolerations``: daemon pods survive node problems that would evict
    or keep out ordinary pods."""
    wanted = [
        _toleration("node.kubernetes.io/not-ready", "NoExecute"),
        _toleration("node.kubernetes.io/unreachable", "NoExecute"),
        _toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        _toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        _toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        _toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    if spec.get("hostNetwork"):
        wanted.append(_toleration("node.kubernetes.io/network-unavailable", "NoSchedule"))
    tolerations = list(spec.get("tolerations") or [])
    for toleration in wanted:
        # AddOrUpdateTolerationInPodSpec: same key/effect/operator replaces (drops tolerationSeconds)
        tolerations = [t for t in tolerations
                       if not (t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"]
                               and (t.get("operator") or "Equal") == "Exists")]
        tolerations.append(toleration)
    spec["tolerations"] = tolerations


def replace_node_name_affinity(affinity: Object | None, node_name: str) -> Object:
    """``util.ReplaceDaemonSetPodNodeNameNodeAffinity``: the required terms become one term matching
    the node by ``metadata.name`` (label expressions were already checked by the controller)."""
    affinity = copy.deepcopy(affinity) if affinity else {}
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    return affinity


def target_node_name(pod: Object) -> str | None:
    """``util.GetTargetNodeName``: spec.nodeName, or the node the affinity pins an unbound pod to."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None


def node_should_run_daemon_pod(node: Object, ds: Object) -> tuple[bool, bool]:
    """``NodeShouldRunDaemonPod``: (should run, should continue running)."""
    template_spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    node_name = node["metadata"]["name"]
    if template_spec.get("nodeName") and template_spec["nodeName"] != node_name:
        return False, False
    add_daemon_tolerations(template_spec)
    if not node_matches_affinity(template_spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = template_spec.get("tolerations") or []
    untolerated = find_untolerated_taint(taints, tolerations,
                                         lambda t: t.get("effect") in ("NoSchedule", "NoExecute"))
    if untolerated is not None:
        no_execute = find_untolerated_taint(taints, tolerations, lambda t: t.get("effect") == "NoExecute")
        return False, no_execute is None
    return True, True


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        return 1
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def _created(pod: Object) -> str:
    return str(pod["metadata"].get("creationTimestamp") or "")


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pod_control = PodControl(self.client, self.recorder)
        self.daemonsets = ctx.informers.informer(DAEMONSETS)
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        self.revisions = ctx.informers.informer(CONTROLLER_REVISIONS)
        self.pods.add_indexer("owner-uid", owner_uid_refs)
        self.revisions.add_indexer("owner-uid", owner_uid_refs)
        self.daemonsets.add_handler(EventHandler.on_object(self.enqueue, self.enqueue))
        self.pods.add_handler(EventHandler.on_object(self._pod_changed, self._pod_changed))
        self.nodes.add_handler(EventHandler.on_object(self._node_changed, self._node_changed))
        # node -> (failures, until): back off re-creating pods that keep failing on a node
        self._failed_backoff: dict[tuple[str, str], tuple[int, float]] = {}

    def _pod_changed(self, pod: Object) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "DaemonSet":
            return
        self.enqueue_key(f"{pod['metadata']['namespace']}/{ref['name']}")

    def _node_changed(self, _node: Object) -> None:
        for ds in self.daemonsets.list():
            self.enqueue(ds)

    def _daemon_pods(self, ds: Object) -> dict[str, list[Object]]:
        """Pods of ``ds`` by target node (``getNodesToDaemonPods``)."""
        by_node: dict[str, list[Object]] = {}
        uid = ds["metadata"]["uid"]
        for pod in self.pods.by_index("owner-uid", uid):
            if (controller_ref(pod) or {}).get("uid") != uid:
                continue
            node = target_node_name(pod)
            if node is None:
                continue
            by_node.setdefault(node, []).append(pod)
        return by_node

    async def sync(self, key: str) -> None:
        ds = self.daemonsets.get(key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        ds = {**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"}
        namespace, _ = split_key(key)
        assert namespace is not None
        revisions = owned_revisions(self.revisions.by_index("owner-uid", ds["metadata"]["uid"]), ds)
        try:
            revision, hash_value = await ensure_revision(self.client, ds, revisions, api_version="apps/v1",
                                                         kind="DaemonSet")
        except RevisionConflict:
            count = int((ds.get("status") or {}).get("collisionCount") or 0) + 1
            # UpdateStatus: the daemon-set-controller role may update daemonsets/status, not patch it.
            await self.client.update_status(DAEMONSETS, {**ds, "status": {**(ds.get("status") or {}),
                                                                          "collisionCount": count}})
            self.enqueue_key(key)
            return
        by_node = self._daemon_pods(ds)
        nodes = self.nodes.list()
        await self._manage(ds, namespace, nodes, by_node, hash_value)
        strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            await self._rolling_update(ds, namespace, nodes, by_node, hash_value)
        live = {revision["metadata"]["name"]}
        live |= {f"{ds['metadata']['name']}-{(p['metadata'].get('labels') or {}).get(REVISION_HASH_LABEL)}"
                 for pods in by_node.values() for p in pods}
        await truncate_history(self.client, ds, revisions, live)
        await self._update_status(ds, namespace, nodes, self._daemon_pods(ds), hash_value)

    async def _manage(self, ds: Object, namespace: str, nodes: list[Object], by_node: dict[str, list[Object]],
                      hash_value: str) -> None:
        to_create: list[str] = []
        to_delete: list[Object] = []
        now = time.monotonic()
        node_names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            node_name = node["metadata"]["name"]
            should_run, should_continue = node_should_run_daemon_pod(node, ds)
            pods = by_node.get(node_name, [])
            if should_run and not pods:
                backoff = self._failed_backoff.get((object_key(ds), node_name))
                if backoff is not None and backoff[1] > now:
                    self.queue.add_after(object_key(ds), backoff[1] - now)
                    continue
                to_create.append(node_name)
            elif should_continue:
                running: list[Object] = []
                for pod in pods:
                    if pod["metadata"].get("deletionTimestamp"):
                        continue
                    phase = (pod.get("status") or {}).get("phase")
                    if phase == "Failed":
                        bkey = (object_key(ds), node_name)
                        failures = self._failed_backoff.get(bkey, (0, 0.0))[0]
                        delay = min(_FAILED_BACKOFF_BASE * 2 ** failures, _FAILED_BACKOFF_MAX)
                        self._failed_backoff[bkey] = (failures + 1, now + delay)
                        self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                            f"Found failed daemon pod {namespace}/{pod['metadata']['name']} "
                                            f"on node {node_name}, will try to kill it")
                        to_delete.append(pod)
                    elif phase == "Succeeded":
                        to_delete.append(pod)
                    else:
                        running.append(pod)
                if len(running) > 1:
                    running.sort(key=lambda p: ((p.get("status") or {}).get("phase") != "Running", _created(p)))
                    to_delete.extend(running[1:])
            elif pods:
                to_delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
        # unscheduled pods aimed at nodes that are gone (getUnscheduledPodsWithoutNode)
        for node_name, pods in by_node.items():
            if node_name not in node_names:
                to_delete.extend(p for p in pods if not (p.get("spec") or {}).get("nodeName")
                                 and not p["metadata"].get("deletionTimestamp"))
        generation = ds["metadata"].get("generation") or 1
        for node_name in to_create:
            template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
            labels = template.setdefault("metadata", {}).setdefault("labels", {})
            labels[TEMPLATE_GENERATION_LABEL] = str(generation)
            labels[REVISION_HASH_LABEL] = hash_value
            spec = template.setdefault("spec", {})
            add_daemon_tolerations(spec)
            spec["affinity"] = replace_node_name_affinity(spec.get("affinity"), node_name)
            pod = pod_from_template(template, new_controller_ref(ds, "apps/v1", "DaemonSet"), namespace,
                                    generate_name=f"{ds['metadata']['name']}-")
            try:
                await self.pod_control.create_pod(pod, ds)
            except errors.APIError as error:
                self.log.info("daemonset %s: creating pod for %s: %s", ds["metadata"]["name"], node_name, error)
                raise
        for pod in to_delete:
            try:
                await self.pod_control.delete_pod(namespace, pod["metadata"]["name"], ds,
                                                  uid=pod["metadata"].get("uid"))
            except errors.NotFoundError:
                pass

    async def _rolling_update(self, ds: Object, namespace: str, nodes: list[Object],
                              by_node: dict[str, list[Object]], hash_value: str) -> None:
        """``rollingUpdate`` without surge: delete outdated pods, unavailable ones first, while at most
        ``maxUnavailable`` daemon pods are unavailable."""
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = sum(1 for n in nodes if node_should_run_daemon_pod(n, ds)[0])
        rolling = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
        max_unavailable = _int_or_percent(rolling.get("maxUnavailable", 1), desired, True)
        if max_unavailable == 0 and desired:
            max_unavailable = 1
        unavailable = 0
        old_available: list[Object] = []
        old_unavailable: list[Object] = []
        for node in nodes:
            node_name = node["metadata"]["name"]
            if not node_should_run_daemon_pod(node, ds)[0]:
                continue
            pods = [p for p in by_node.get(node_name, []) if not p["metadata"].get("deletionTimestamp")]
            if not pods:
                unavailable += 1
                continue
            pod = pods[0]
            available = is_pod_available(pod, min_ready)
            if not available:
                unavailable += 1
            if (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) != hash_value:
                (old_available if available else old_unavailable).append(pod)
        victims = list(old_unavailable)
        budget = max_unavailable - unavailable
        for pod in old_available:
            if budget <= 0:
                break
            victims.append(pod)
            budget -= 1
        for pod in victims:
            try:
                await self.pod_control.delete_pod(namespace, pod["metadata"]["name"], ds,
                                                  uid=pod["metadata"].get("uid"))
            except errors.NotFoundError:
                pass

    async def _update_status(self, ds: Object, namespace: str, nodes: list[Object],
                             by_node: dict[str, list[Object]], hash_value: str) -> None:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = current = misscheduled = ready = available = updated = 0
        generation = ds["metadata"].get("generation") or 1
        for node in nodes:
            should_run, _ = node_should_run_daemon_pod(node, ds)
            pods = by_node.get(node["metadata"]["name"], [])
            if should_run:
                desired += 1
                if pods:
                    current += 1
                    pods = sorted(pods, key=_created)
                    pod = pods[0]
                    if is_pod_ready(pod):
                        ready += 1
                        if is_pod_available(pod, min_ready):
                            available += 1
                    labels = pod["metadata"].get("labels") or {}
                    if labels.get(REVISION_HASH_LABEL) == hash_value or \
                            (labels.get(TEMPLATE_GENERATION_LABEL) == str(generation) and \
                            not labels.get(REVISION_HASH_LABEL)):
                        updated += 1
            elif pods:
                misscheduled += 1
        status = dict(ds.get("status") or {})
        wanted = {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "updatedNumberScheduled": updated,
            "observedGeneration": generation,
        }
        new_status = {**status, **wanted}
        if not new_status["numberAvailable"]:
            new_status.pop("numberAvailable")
        if not new_status["numberUnavailable"]:
            new_status.pop("numberUnavailable")
        if new_status != status:
            body = {**ds, "status": new_status}
            try:
                await self.client.update_status(DAEMONSETS, body)
            except errors.NotFoundError:
                return
        if min_ready and available != ready:
            self.queue.add_after(object_key(ds), float(min_ready))

