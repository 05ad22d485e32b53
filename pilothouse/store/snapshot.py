"""Consistent copies of the SQLite store, and putting one back without revisions going backwards.

Backup uses SQLite's online backup API (``sqlite3.Connection.backup``) on a connection of its own:
copied in one step it reads inside a single read transaction, so the copy is the database as of one
commit, taken while the server keeps writing (WAL readers never block the writer nor wait for it).
Every write acknowledged before the backup began is committed, so it is in the copy.

Restore is ``etcdutl snapshot restore --bump-revision N --mark-compacted`` for SQLite: clients of the
server that ran on after the backup hold resourceVersions newer than the backup's revision. Were the
restored store to count on from the backup's revision, a revision a client saw would come back with
other contents, and a watch from it would silently miss events. So the restored store's revision jumps
``bump`` ahead and everything below is compacted: a watch or a list from an old resourceVersion gets
410 Gone and the client re-lists, while every object keeps its own resourceVersion (its ``mod_rev``).
The etcd store's snapshot is :meth:`pilothouse.store.etcd.EtcdStore.snapshot`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3

from pilothouse.store._sqlite_schema import SCHEMA, current_revision_sql

__all__ = ["DEFAULT_BUMP_REVISION", "sqlite_restore", "sqlite_revision", "sqlite_snapshot"]

#: How far a restored store's revision jumps: etcd's documented value for ``--bump-revision`` (a
#: billion writes more than the backup's revision is more than any cluster makes between a backup and
#: its restore).
DEFAULT_BUMP_REVISION = 1_000_000_000


def sqlite_revision(path: str) -> tuple[int, int]:
    """(revision, compacted revision) of the store file at ``path``."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        revision, compacted = conn.execute(current_revision_sql).fetchone()
    return int(revision), int(compacted)


def sqlite_snapshot(source: str, destination: str) -> int:
    """Copy the live store at ``source`` into a new single file ``destination``; its revision."""
    if not os.path.exists(source):
        raise FileNotFoundError(f"no SQLite store at {source}")
    with contextlib.closing(sqlite3.connect(source, timeout=30.0)) as src, \
            contextlib.closing(sqlite3.connect(destination)) as dst:
        # pages=-1 (the default): the whole database in one step, i.e. in one read transaction. A
        # stepwise copy restarts whenever another connection writes, which a busy server always does.
        src.backup(dst)
        # One self-contained file in the archive (no -wal beside it); the server turns WAL back on.
        dst.execute("PRAGMA journal_mode=DELETE")
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"the copy of {source} fails its integrity check: {result}")
    return sqlite_revision(destination)[0]


def sqlite_restore(snapshot: str, destination: str, bump: int = DEFAULT_BUMP_REVISION) -> int:
    """Install ``snapshot`` as the store file ``destination``, its revision moved ``bump`` ahead and
    everything up to there compacted (see the module docstring); returns the new revision."""
    if bump < 0:
        raise ValueError("the revision bump cannot be negative")
    tmp = destination + ".restoring"
    shutil.copyfile(snapshot, tmp)
    os.chmod(tmp, 0o600)  # Secrets live in it
    with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
        conn.executescript(SCHEMA)  # an older file gains what this version's schema adds
        revision, _ = conn.execute(current_revision_sql).fetchone()
        target = int(revision) + bump
        conn.execute("BEGIN IMMEDIATE")
        # The revision is max(log.rev, compacted): with the history gone, the compaction point is it.
        conn.execute("DELETE FROM log")
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (target,))
        conn.execute("COMMIT")
        conn.execute("VACUUM")  # give back the pages the history held (about half the file)
    for suffix in ("-wal", "-shm"):  # a stale WAL beside the new file would be replayed into it
        with contextlib.suppress(FileNotFoundError):
            os.unlink(destination + suffix)
    os.replace(tmp, destination)
    return target
