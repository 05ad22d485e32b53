"""Two small cluster-scoped kinds: node.k8s.io/v1 RuntimeClass and apiregistration.k8s.io/v1 APIService.

RuntimeClass rules from pkg/apis/node/validation (handler a DNS label, immutable). APIService rules
from staging/src/k8s.io/kube-aggregator/pkg/apis/apiregistration/validation. The agent does not pick
runtimes by RuntimeClass yet, and pilothouse proxies to no aggregated API server: an APIService with
a ``service`` is stored and served, and the apiservice-availability controller says why it is not
available (components/controllers/apiservice.py); the local ones pilothouse serves itself are
created Available at startup (apiserver/poststart.py).
"""

from __future__ import annotations

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import Object, Strategy, status_strategy
from pilothouse.machinery.kinds.vcommon import invalid, is_dns1123_label, required

__all__ = ["APISERVICE", "APISERVICE_STATUS", "RUNTIMECLASS", "validate_apiservice"]


def validate_runtimeclass(runtime_class: Object) -> list[FieldError]:
    handler = runtime_class.get("handler")
    if not handler:
        return [required("handler")]
    return [invalid("handler", handler, problem) for problem in is_dns1123_label(handler)]


def validate_runtimeclass_update(new: Object, old: Object) -> list[FieldError]:
    errors = validate_runtimeclass(new)
    if new.get("handler") != old.get("handler"):
        errors.append(invalid("handler", new.get("handler"), "field is immutable"))
    return errors


def validate_apiservice(service: Object) -> list[FieldError]:
    spec = service.get("spec") or {}
    errors: list[FieldError] = []
    wanted = f"{spec.get('version', '')}.{spec.get('group', '')}"
    name = (service.get("metadata") or {}).get("name", "")
    if name != wanted:
        errors.append(invalid("metadata.name", name, f'must be `spec.version+"."+spec.group`: "{wanted}"'))
    if not spec.get("version"):
        errors.append(required("spec.version"))
    group_priority = spec.get("groupPriorityMinimum", 0)
    if not isinstance(group_priority, int) or not 0 < group_priority <= 20000:
        errors.append(invalid("spec.groupPriorityMinimum", group_priority,
                              "must be positive and less than 20000"))
    version_priority = spec.get("versionPriority", 0)
    if not isinstance(version_priority, int) or not 0 < version_priority <= 1000:
        errors.append(invalid("spec.versionPriority", version_priority, "must be positive and less than 1000"))
    if spec.get("service") is None:
        if spec.get("caBundle"):
            errors.append(invalid("spec.caBundle", "...", "local APIServices may not have a caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            errors.append(invalid("spec.insecureSkipTLSVerify", True,
                                  "local APIServices may not have insecureSkipTLSVerify"))
    elif spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
        errors.append(invalid("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"))
    return errors


RUNTIMECLASS = Strategy(validate=validate_runtimeclass, validate_update=validate_runtimeclass_update)
APISERVICE = Strategy(validate=validate_apiservice, validate_update=same_on_update(validate_apiservice),
                      prepare_for_create=p.create_with_zero_status("APIService", generation=False),
                      prepare_for_update=p.update_keeping_status(generation=False))
APISERVICE_STATUS = status_strategy(APISERVICE)
