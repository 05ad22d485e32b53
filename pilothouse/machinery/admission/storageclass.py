"""DefaultStorageClass (plugin/pkg/admission/storage/storageclass/setdefault): a new
PersistentVolumeClaim that names no class gets the cluster's default one, the class annotated
``storageclass.kubernetes.io/is-default-class: "true"`` (the newest, when several are).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.machinery.kinds.types import Object

__all__ = ["DEFAULT_CLASS_ANNOTATIONS", "admit_claim", "default_class"]


DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")


def default_class(classes: Iterable[Object]) -> Object | None:
    """GetDefaultClass: of the classes marked default, the newest (then the first by name)."""
    marked = [sc for sc in classes
              if any(((sc.get("metadata") or {}).get("annotations") or {}).get(key) == "true"
                     for key in DEFAULT_CLASS_ANNOTATIONS)]
    if not marked:
        return None
    marked.sort(key=lambda sc: sc["metadata"]["name"])
    marked.sort(key=lambda sc: sc["metadata"].get("creationTimestamp") or "", reverse=True)
    return marked[0]


def admit_claim(claim: Object, classes: Iterable[Object]) -> None:
    """Set ``spec.storageClassName`` on a claim that has none (absent, not ""; the beta annotation
    counts as a class too)."""
    spec = claim.setdefault("spec", {})
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    if spec.get("storageClassName") is not None or "volume.beta.kubernetes.io/storage-class" in annotations:
        return
    found = default_class(classes)
    if found is not None:
        spec["storageClassName"] = found["metadata"]["name"]
