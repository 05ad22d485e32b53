"""certificates.k8s.io/v1 CertificateSigningRequest, with its /status and /approval subresources.

From pkg/registry/certificates/certificates/strategy.go and pkg/apis/certificates/validation: the
spec is immutable (an update keeps the stored spec and status), /status changes status only but
keeps the Approved/Denied conditions, /approval changes only those conditions. No signer or
approver controller runs yet: a CSR stays pending until someone approves it (`kubectl certificate
approve` works) and nothing issues the certificate.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pilothouse.machinery import meta
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import (
    FIELD_LABEL_NOT_SUPPORTED,
    Object,
    Strategy,
    keep_all_but_status,
    selectable_metadata,
)
from pilothouse.machinery.kinds.vcommon import GoValue, duplicate, invalid, not_supported, required

__all__ = ["CSR", "CSR_APPROVAL", "CSR_STATUS", "validate_csr"]

_SIGNER = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[-A-Za-z0-9_.~/]+$")
_APPROVAL_TYPES = ("Approved", "Denied")
_USAGES = ("any", "cert sign", "client auth", "code signing", "content commitment", "crl sign",
           "data encipherment", "decipher only", "digital signature", "email protection", "encipher only",
           "ipsec end system", "ipsec tunnel", "ipsec user", "key agreement", "key encipherment",
           "microsoft sgc", "netscape sgc", "ocsp signing", "s/mime", "server auth", "signing", "timestamping")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----")


def _request_errors(request: Any) -> list[FieldError]:
    if not request:
        return [required("spec.request")]
    try:
        pem = base64.b64decode(request, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return [invalid("spec.request", GoValue(request, "[]byte{...}"), "illegal base64 data")]
    block = _PEM_BLOCK.search(pem)
    if block is None or block.group(1) != b"CERTIFICATE REQUEST":
        return [invalid("spec.request", GoValue(request, "[]byte{...}"),
                        "PEM block type must be CERTIFICATE REQUEST")]
    return []


def validate_csr(csr: Object) -> list[FieldError]:
    spec = csr.get("spec") or {}
    errors = _request_errors(spec.get("request"))
    signer = spec.get("signerName")
    if not signer:
        errors.append(required("spec.signerName"))
    elif not _SIGNER.match(signer):
        errors.append(invalid("spec.signerName", signer, "must be a fully qualified domain and path of the form "
                              "'example.com/signer-name'"))
    usages = spec.get("usages") or []
    if not usages:
        errors.append(required("spec.usages"))
    seen: set[str] = set()
    for i, usage in enumerate(usages):
        if usage not in _USAGES:
            errors.append(not_supported(f"spec.usages[{i}]", usage, _USAGES))
        elif usage in seen:
            errors.append(duplicate(f"spec.usages[{i}]", usage))
        seen.add(usage)
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, int) and seconds < 600:
        errors.append(invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 600 seconds "
                              "(10 minutes)"))
    return errors + _condition_errors(csr)


def _condition_errors(csr: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    types: set[str] = set()
    for i, condition in enumerate((csr.get("status") or {}).get("conditions") or ()):
        kind = condition.get("type")
        if not kind:
            errors.append(required(f"status.conditions[{i}].type"))
        if kind in _APPROVAL_TYPES and kind in types:
            errors.append(duplicate(f"status.conditions[{i}].type", kind))
        types.add(kind)
        if condition.get("status") not in ("True", "False", "Unknown"):
            errors.append(not_supported(f"status.conditions[{i}].status", condition.get("status"),
                                        ("False", "True", "Unknown")))
    if {"Approved", "Denied"} <= types:
        errors.append(invalid("status.conditions", GoValue(None, "[]certificates.CertificateSigningRequestCondition"
                                                           "{...}"), "Approved and Denied conditions are mutually "
                              "exclusive"))
    return errors


def prepare_csr_create(csr: Object) -> None:
    """Clear status and what the body claims of its requester; the API server then records the
    request's user (apiserver/requester.py). These values stand for a write with no user."""
    csr["status"] = {}
    spec = csr.setdefault("spec", {})
    spec["username"] = "system:admin"
    spec["groups"] = ["system:masters", "system:authenticated"]
    spec.pop("uid", None)
    spec.pop("extra", None)


def prepare_csr_update(new: Object, old: Object) -> None:
    new["spec"] = meta.clone(old.get("spec"))
    if "status" in old:
        new["status"] = meta.clone(old["status"])
    else:
        new.pop("status", None)


def _timestamp_conditions(new: Object, old: Object) -> None:
    """SetDefaults_CertificateSigningRequestCondition (status True) and the strategy's timestamps."""
    old_conditions = {c.get("type"): c for c in (old.get("status") or {}).get("conditions") or ()}
    now = meta.format_time()
    for condition in (new.get("status") or {}).get("conditions") or ():
        condition.setdefault("status", "True")
        previous = old_conditions.get(condition.get("type"))
        condition.setdefault("lastUpdateTime", now)
        if previous is None or previous.get("status") != condition.get("status"):
            condition.setdefault("lastTransitionTime", now)
        else:
            condition.setdefault("lastTransitionTime", previous.get("lastTransitionTime", now))


def _split(conditions: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    approval = [c for c in conditions or () if c.get("type") in _APPROVAL_TYPES]
    other = [c for c in conditions or () if c.get("type") not in _APPROVAL_TYPES]
    return approval, other


def prepare_csr_status_update(new: Object, old: Object) -> None:
    """/status: status changes but the approval conditions are the stored ones."""
    keep_all_but_status(new, old)
    status = new.setdefault("status", {})
    old_approval, _ = _split((old.get("status") or {}).get("conditions"))
    _, new_other = _split(status.get("conditions"))
    status["conditions"] = old_approval + new_other
    if not status["conditions"]:
        status.pop("conditions")
    _timestamp_conditions(new, old)


def prepare_csr_approval_update(new: Object, old: Object) -> None:
    """/approval: only the Approved/Denied conditions change; the issued certificate stays."""
    approval, _ = _split((new.get("status") or {}).get("conditions"))
    keep_all_but_status(new, old)
    status = meta.clone(old.get("status") or {})
    _, old_other = _split(status.get("conditions"))
    status["conditions"] = approval + old_other
    if not status["conditions"]:
        status.pop("conditions")
    new["status"] = status
    _timestamp_conditions(new, old)


def validate_csr_update(new: Object, old: Object) -> list[FieldError]:
    return _condition_errors(new)


def csr_fields(csr: Object) -> dict[str, str]:
    """certificates' SelectableFields: metadata plus spec.signerName."""
    return {**selectable_metadata(csr), "spec.signerName": (csr.get("spec") or {}).get("signerName", "")}


CSR = Strategy(validate=validate_csr, validate_update=validate_csr_update,
               prepare_for_create=prepare_csr_create, prepare_for_update=prepare_csr_update,
               selectable_fields=csr_fields, field_label_error=FIELD_LABEL_NOT_SUPPORTED)
CSR_STATUS = Strategy(validate=validate_csr, validate_update=validate_csr_update,
                      prepare_for_update=prepare_csr_status_update)
CSR_APPROVAL = Strategy(validate=validate_csr, validate_update=validate_csr_update,
                        prepare_for_update=prepare_csr_approval_update)
