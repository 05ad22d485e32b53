"""kube-apiserver's token success cache (``apiserver/tokencache.py``): a service-account token keeps
authenticating for up to the TTL after its account is deleted and no longer after; failures are not
cached; the audiences are part of the key; token files are asked ahead of it. The real chain
(``build_auth``) over a real SQLite store, with the cache's clock moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from pilothouse.apiserver.auth import AuthLayer, BearerToken
from pilothouse.apiserver.authchain import AuthOptions, build_auth
from pilothouse.apiserver.tokencache import SUCCESS_TTL
from pilothouse.store.interface import KeyValue
from pilothouse.store.sqlite import SQLiteStore

_SA_KEY = "/registry/core/serviceaccounts/default/robot"
_ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "robot", "namespace": "default", "uid": "uid-robot"}}


@asynccontextmanager
async def _chain(tmp_path: Path, options: AuthOptions) -> AsyncIterator[tuple[AuthLayer, SQLiteStore, KeyValue, str]]:
    """(the chain, its store, the stored account robot, a token of robot's)."""
    store = SQLiteStore(str(tmp_path / "s.db"), compact_interval=None)
    await store.start()
    try:
        layer = build_auth(options, store, tmp_path)
        kv = await store.create(_SA_KEY, orjson.dumps(_ACCOUNT))
        assert layer.service_accounts is not None
        token, _ = layer.service_accounts.issue(_ACCOUNT, [], 3600)
        yield layer, store, kv, token
    finally:
        await store.close()


def test_service_account_token_cached_until_the_ttl(tmp_path: Path) -> None:
    async def scenario() -> None:
        token_file = tmp_path / "tokens.csv"
        token_file.write_text("static-token,alice,uid-alice\n")
        options = AuthOptions(token_auth_file=str(token_file), authorization_mode="RBAC")
        async with _chain(tmp_path, options) as (layer, store, kv, token):
            tokens = layer.tokens
            assert isinstance(tokens, BearerToken) and tokens.cache is not None
            assert tokens.cache.ttl == SUCCESS_TTL == 10.0
            now = [1000.0]
            tokens.cache.clock = lambda: now[0]
            user, _ = await tokens.review(token)
            assert user is not None and user.name == "system:serviceaccount:default:robot"
            await store.delete(_SA_KEY, expected_mod_revision=kv.mod_revision)
            # Within the TTL the cached answer stands, as kube-apiserver's: the very same user.
            now[0] += SUCCESS_TTL - 0.5
            again, _ = await tokens.review(token)
            assert again is user
            # Another audience is another key: not cached, so the deletion shows at once.
            other, errors = await tokens.review(token, ("https://kubernetes.default.svc.cluster.local",))
            assert other is None and errors == ['serviceaccounts "robot" not found']
            # After the TTL the account is read again: gone.
            now[0] += 1.0
            gone, errors = await tokens.review(token)
            assert gone is None and errors == ['serviceaccounts "robot" not found']
            # Failures are not cached (TokenFailureCacheTTL 0): the account back with its uid, the
            # token works at once.
            await store.create(_SA_KEY, orjson.dumps(_ACCOUNT))
            back, _ = await tokens.review(token)
            assert back is not None and back.name == user.name
            # The token file is asked ahead of the cache and never enters it.
            before = len(tokens.cache._entries)
            alice, _ = await tokens.review("static-token")
            assert alice is not None and alice.name == "alice"
            assert len(tokens.cache._entries) == before

    asyncio.run(scenario())


def test_ttl_zero_turns_the_cache_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        options = AuthOptions(authorization_mode="RBAC", token_success_cache_ttl=0)
        async with _chain(tmp_path, options) as (layer, store, kv, token):
            assert (await layer.tokens.review(token))[0] is not None
            await store.delete(_SA_KEY, expected_mod_revision=kv.mod_revision)
            assert (await layer.tokens.review(token))[0] is None

    asyncio.run(scenario())
