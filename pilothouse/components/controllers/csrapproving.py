"""The CSR approving controller: auto-approves kubelet client certificate requests that RBAC lets
their requester make (``pkg/controller/certificates/approver/sarapprove.go``).

A ``kubernetes.io/kube-apiserver-client-kubelet`` request for ``CN=system:node:<name>``,
``O=system:nodes`` with client-auth usages is approved when a SubjectAccessReview says its requester
may ``create certificatesigningrequests/selfnodeclient`` (renewing its own, CN = the requester) or
``certificatesigningrequests/nodeclient`` (a bootstrap token's ``system:bootstrappers``, bound to
``system:certificates.k8s.io:certificatesigningrequests:nodeclient``). Nobody auto-approves serving
certificates, as in Kubernetes.
"""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.csrsigning import CSRS
from pilothouse.machinery.meta import Object

__all__ = ["CSRApprovingController", "is_node_client_request"]


KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
_ALLOWED_USAGES = {"key encipherment", "digital signature", "client auth"}


def is_node_client_request(spec: Object) -> bool:
    """kubelet's client CSR shape: CN system:node:<name>, O exactly [system:nodes], client auth."""
    if spec.get("signerName") != KUBELET_CLIENT_SIGNER:
        return False
    usages = set(spec.get("usages") or [])
    if "client auth" not in usages or not usages <= _ALLOWED_USAGES:
        return False
    try:
        subject = x509.load_pem_x509_csr(base64.b64decode(spec.get("request") or "")).subject
    except ValueError:
        return False
    common = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    organizations = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return len(common) == 1 and common[0].startswith("system:node:") and organizations == ["system:nodes"]


class CSRApprovingController(Controller):
    name = "csrapproving"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.informer: Informer = ctx.informers.informer(CSRS)
        self.informer.add_handler(EventHandler.on_object(self.enqueue))

    async def _allowed(self, spec: Object, subresource: str) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": spec.get("username", ""), "uid": spec.get("uid", ""), "groups": spec.get("groups") or [],
            "extra": spec.get("extra") or {},
            "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                                   "verb": "create", "subresource": subresource}}}
        answer = await self.client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        return bool(((answer or {}).get("status") or {}).get("allowed"))

    async def sync(self, key: str) -> None:
        csr = self.informer.get(key)
        if csr is None:
            return
        spec, status = csr.get("spec") or {}, csr.get("status") or {}
        if status.get("certificate") or (status.get("conditions") or []) or not is_node_client_request(spec):
            return
        request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        common = str(request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        subresources = (["selfnodeclient"] if spec.get("username") == common else []) + ["nodeclient"]
        for subresource in subresources:
            if await self._allowed(spec, subresource):
                break
        else:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        approved = {"type": "Approved", "status": "True", "reason": "AutoApproved",
                    "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                    "lastUpdateTime": now, "lastTransitionTime": now}
        try:
            await self.client.update(CSRS, {**csr, "status": {**status, "conditions": [approved]}},
                                     subresource="approval")
        except errors.NotFoundError:
            return
