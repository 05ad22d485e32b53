"""Lists at a past revision (what every page after the first of a paged list reads) against a model:
random creates, updates and deletes, then pages at random revisions, starts and limits."""

from __future__ import annotations

import random
from pathlib import Path

from pilothouse.store.sqlite import SQLiteStore


async def test_pages_at_past_revisions_match_the_model(tmp_path: Path) -> None:
    rng = random.Random(16)
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None) as store:
        await store.create("/other/before", b"x")  # keys outside the prefix, on both sides
        await store.create("/pods0", b"x")
        model: dict[str, bytes] = {}
        states: dict[int, dict[str, bytes]] = {}
        for step in range(400):
            key = f"/pods/ns/p{rng.randrange(60):02d}"
            value = f"v{step}".encode()
            if key not in model:
                kv = await store.create(key, value)
                model[key] = value
            elif rng.random() < 0.3:
                kv = await store.delete(key)
                del model[key]
            else:
                kv = await store.update(key, value, expected_mod_revision=0)
                model[key] = value
            states[kv.mod_revision] = dict(model)
        revisions = sorted(states)
        for _ in range(150):
            revision = rng.choice(revisions)
            state = states[revision]
            keys = sorted(state)
            start_after = rng.choice(["", *keys, "/pods/ns/p30x"])
            limit = rng.choice([0, 1, 3, 7, 50])
            expected = [k for k in keys if k > start_after]
            got = await store.list("/pods/", limit=limit, start_after=start_after, revision=revision)
            want = expected[:limit] if limit else expected
            assert [kv.key for kv in got.items] == want, (revision, start_after, limit)
            assert [kv.value for kv in got.items] == [state[k] for k in want]
            assert all(kv.mod_revision <= revision for kv in got.items)
            assert got.more == (bool(limit) and len(expected) > limit)
            assert got.revision == revision
