"""The pure certificate code (machinery/pki.py): identities, verification, renewal, with a fixed clock."""

from __future__ import annotations

import datetime

from pilothouse.machinery import pki

NOW = datetime.datetime(2027, 3, 1, 12, 0, tzinfo=datetime.UTC)


def test_client_certificate_names_its_user_and_groups() -> None:
    ca = pki.new_ca("kubernetes", NOW)
    alice = pki.issue_client(ca, "alice", ["dev", "ops"], NOW)
    assert pki.client_identity(alice.cert) == ("alice", ("dev", "ops"))
    assert pki.verify_client(alice.cert, [ca.cert], NOW) is None
    reloaded = pki.load_cert_key(alice.cert_pem, alice.key_pem)
    assert reloaded.cert == alice.cert and reloaded.key_pem == alice.key_pem


def test_verification_refuses_what_kube_apiserver_refuses() -> None:
    ca, other = pki.new_ca("kubernetes", NOW), pki.new_ca("kubernetes", NOW)  # same name, another key
    forged = pki.issue_client(other, "kubernetes-admin", ["system:masters"], NOW)
    assert pki.verify_client(forged.cert, [ca.cert], NOW) == "x509: certificate signed by unknown authority"
    assert pki.verify_client(forged.cert, [ca.cert, other.cert], NOW) is None  # a bundle of CAs
    short = pki.issue_client(ca, "bob", [], NOW, validity=datetime.timedelta(hours=1))
    later = NOW + datetime.timedelta(hours=2)
    assert pki.verify_client(short.cert, [ca.cert], later) == "x509: certificate has expired or is not yet valid"
    serving = pki.issue_serving(ca, "kube-apiserver", ["kubernetes"], ["10.96.0.1"], NOW)
    assert pki.verify_client(serving.cert, [ca.cert], NOW) == "x509: certificate specifies an incompatible key usage"


def test_serving_certificate_names_and_renewal_point() -> None:
    ca = pki.new_ca("kubernetes", NOW)
    serving = pki.issue_serving(ca, "kube-apiserver", ["kubernetes", "localhost", "kubernetes"],
                                ["127.0.0.1", "10.96.0.1"], NOW, validity=datetime.timedelta(days=90))
    assert pki.san_names(serving.cert) == ({"kubernetes", "localhost"}, {"127.0.0.1", "10.96.0.1"})
    assert not pki.needs_renewal(serving.cert, NOW + datetime.timedelta(days=59))
    assert pki.needs_renewal(serving.cert, NOW + datetime.timedelta(days=61))
    # A leaf never outlives its CA.
    old_ca = pki.new_ca("kubernetes", NOW, validity=datetime.timedelta(days=30))
    capped = pki.issue_client(old_ca, "carol", [], NOW)
    assert capped.cert.not_valid_after_utc == old_ca.cert.not_valid_after_utc
