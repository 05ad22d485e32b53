"""The pure parts of joining: the cluster-info signature is Kubernetes' own (the vectors of
``k8s.io/cluster-bootstrap/token/jws/jws_test.go``, so a kubeadm joiner could check ours and we theirs),
the join token's two forms, and token expiry as the authenticator, the signer and the cleaner read it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.machinery import bootstraptoken as bt

CONTENT = "Hello from the other side. I must have called a thousand times."


@pytest.mark.parametrize(("content", "secret", "expected"), [
    (CONTENT, "my voice is my passcode",
     "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"),
    ("", "my voice is my passcode",
     "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"),
    (CONTENT, "", "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8"),
])
def test_detached_signatures_match_kubernetes(content: str, secret: str, expected: str) -> None:
    assert bt.detached_signature(content, "joshua", secret) == expected
    assert bt.signature_valid(content, expected, "joshua", secret)
    assert not bt.signature_valid(content, expected + "foo", "joshua", secret)
    assert not bt.signature_valid(content + " ", expected, "joshua", secret)


def test_join_tokens_round_trip_and_junk_is_refused() -> None:
    pinned = bt.JoinToken("abcdef", "0123456789abcdef", "sha256:" + "0f" * 32)
    assert str(pinned) == "K10" + "0f" * 32 + "::abcdef.0123456789abcdef"
    assert bt.JoinToken.parse(str(pinned)) == pinned
    assert bt.JoinToken.parse("abcdef.0123456789abcdef") == bt.JoinToken("abcdef", "0123456789abcdef")
    for junk in ("", "abcdef", "ABCDEF.0123456789abcdef", "K10zz::abcdef.0123456789abcdef",
                 "K10" + "0f" * 32 + ":abcdef.0123456789abcdef", "abcdef.0123456789abcde"):
        with pytest.raises(ValueError):
            bt.JoinToken.parse(junk)
    assert bt.TOKEN_RE.match(bt.generate_token())


def test_the_secret_carries_the_token_and_its_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    secret = bt.token_secret("abcdef.0123456789abcdef", timedelta(hours=2), description="d", now=now)
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert base64.b64decode(secret["data"]["expiration"]).decode() == "2026-01-01T02:00:00Z"
    assert bt.expiration(secret) == now + timedelta(hours=2)
    assert not bt.expired(secret, now + timedelta(hours=1))
    assert bt.expired(secret, now + timedelta(hours=2))
    forever = bt.token_secret("abcdef.0123456789abcdef", None)
    assert bt.expiration(forever) is None and not bt.expired(forever)
    # An expiration nobody can read counts as past, as Kubernetes treats it.
    assert bt.expired({"stringData": {"expiration": "tomorrow"}})
