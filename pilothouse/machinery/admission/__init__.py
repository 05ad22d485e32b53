"""The pure half of the admission plugins Kubernetes enables by default: plain dicts in, the object
mutated in place or a :class:`Refusal` out. The API server's plugin chain
(``apiserver/admission_plugins``) feeds them from watch-fed caches; tests feed them dicts.
"""

from __future__ import annotations

__all__ = ["Refusal"]


class Refusal(Exception):
    """Admission says no. ``str()`` is the reason, which the API server renders as Kubernetes'
    ``admission.NewForbidden`` does: ``<resource> "<name>" is forbidden: <reason>`` (403)."""
