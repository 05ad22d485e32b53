"""SQL schema, connection setup and error mapping shared by the SQLite store's reader and writer.

Two tables plus a one-row-per-setting ``meta``:

* ``kv`` — the current state: key → value, create_rev, mod_rev. A rowid table with a unique index on
  ``key`` (not WITHOUT ROWID): values are ~2 KB JSON objects, too large for WITHOUT ROWID's in-btree
  storage to pay off, and ``count`` is then a scan of the narrow index only.
* ``log`` — the history: one row per revision with the new value and the previous one (value and both
  revisions). ``prev_*`` are stored, not joined, because the previous version's own log row may already
  be compacted while the event is still served. The state as of a past revision R is "kv rows with
  mod_rev <= R" plus, for keys changed after R, the ``prev_*`` of their first change after R.

* ``kv.node_name`` — a virtual column, ``spec.nodeName`` of the stored object, with a partial index on
  (node_name, key): every kubelet lists and relists its pods with ``fieldSelector=spec.nodeName=<node>``,
  which kube-apiserver answers from its watch cache's node index. Without it each such list read every
  pod's bytes (1.4 s of server CPU at 150,000 pods). SQLite computes the column and keeps the index
  itself at write time with its built-in JSON functions, so the writer, the backups and any tool opening
  the file need no extra function; the ``instr`` test first keeps the JSON parse off writes of objects
  without the field (Leases, most of the traffic). Values that are not JSON (encrypted at rest) get
  NULL: the encrypting store never asks for the index (see :data:`INDEXED_FIELDS`).

* ``kv.expires_at`` — when a key written with a TTL expires (Unix seconds; NULL: never), with a partial
  index so the sweeper (``sqlite.py``) finds the expired keys without reading the others. A column,
  not a side table: every write sets it through the same upsert, and a delete drops it with its row,
  so a stale expiry can never outlive its key.

The store's revision is not stored separately: it is ``max(log.rev)``, or the compaction point when
compaction emptied the log (compaction never goes beyond the current revision).
"""

from __future__ import annotations

import sqlite3

from pilothouse.store.interface import (
    EventType,
    KeyValue,
    NoSpaceError,
    StoreError,
    UnavailableError,
    WatchEvent,
)

__all__ = [
    "EVENT_COLUMNS",
    "INDEXED_FIELDS",
    "SCHEMA",
    "connect",
    "current_revision_sql",
    "event_from_row",
    "map_error",
    "migrate",
    "prefix_end",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT    NOT NULL UNIQUE,
    value      BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    rev             INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL,
    deleted         INTEGER NOT NULL,
    value           BLOB,
    create_rev      INTEGER NOT NULL,
    prev_value      BLOB,
    prev_create_rev INTEGER,
    prev_mod_rev    INTEGER
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1);
"""

#: Fields the ``kv`` table indexes: field path → column. A list may name one as a hint
#: (``Store.list(index=...)``); the column holds the field's value when it is a JSON string or number.
INDEXED_FIELDS = {"spec.nodeName": "node_name"}

#: Schema versions: 1 the tables above; 2 adds ``kv.node_name`` and its index; 3 adds
#: ``log.node_name`` and ``log.prev_node_name`` (of ``value`` and ``prev_value``) and their indexes;
#: 4 adds ``kv.expires_at`` and its index (keys with a TTL).
SCHEMA_VERSION = 4


def _node_name_column(table: str, column: str, source: str) -> str:
    return (
        f"ALTER TABLE {table} ADD COLUMN {column} TEXT GENERATED ALWAYS AS ("
        # X'...' is the bytes "nodeName": — a cheap test before the JSON parse
        f" CASE WHEN instr({source}, X'226e6f64654e616d65223a') AND json_valid(CAST({source} AS TEXT))"
        f" THEN json_extract(CAST({source} AS TEXT), '$.spec.nodeName') END) VIRTUAL"
    )


#: Per table: (column, stored value it reads, index, indexed columns after the value).
_NODE_NAME_COLUMNS = (
    ("kv", "node_name", "value", "kv_node_name", "key"),
    # The history: a kubelet's pod watch starts from its list's revision, by then older than the
    # watch ring at 5,000 nodes, and replays that range; these read only its node's events (a pod's
    # bind or delete is in the new or the old value) instead of every pod event of the range.
    ("log", "node_name", "value", "log_node_name", "rev"),
    ("log", "prev_node_name", "prev_value", "log_prev_node_name", "rev"),
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file created by an older version to :data:`SCHEMA_VERSION` (in the writer, at start).

    Adding a virtual column is instant; building its index reads every stored object once (a few
    seconds at 150,000 pods), in one transaction, so a crash leaves the old schema intact."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read inside the write lock: ``server --workers`` start several writers on one file.
        for table, column, source, index, then in _NODE_NAME_COLUMNS:
            if column in {row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})")}:
                continue
            conn.execute(_node_name_column(table, column, source))
            conn.execute(f"CREATE INDEX {index} ON {table} ({column}, {then}) WHERE {column} IS NOT NULL")
        if "expires_at" not in {row[1] for row in conn.execute("PRAGMA table_xinfo(kv)")}:
            # Instant: older files hold no key with a TTL, so the index starts empty.
            conn.execute("ALTER TABLE kv ADD COLUMN expires_at REAL")
            conn.execute("CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL")
        conn.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


EVENT_COLUMNS = "rev, key, deleted, value, create_rev, prev_value, prev_create_rev, prev_mod_rev"

current_revision_sql = (
    "SELECT max(coalesce((SELECT max(rev) FROM log), 0),"
    " (SELECT value FROM meta WHERE name = 'compacted')), "
    "(SELECT value FROM meta WHERE name = 'compacted')"
)


#: Bytes the WAL file is truncated back to when SQLite restarts it after a checkpoint. Without it the
#: file keeps its high-water mark forever: one large group commit or compaction chunk grew it from
#: the auto-checkpoint's ~4 MB (1000 pages) to 29 MB in the soak (issue 15). 8 MiB is twice the
#: normal size, so steady churn never pays a truncate-and-regrow.
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode (we issue BEGIN/COMMIT ourselves)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0,
                           cached_statements=64)
    # WAL: readers never block the writer nor each other, and each reader sees a consistent snapshot.
    # synchronous=FULL: every COMMIT fsyncs the WAL before returning, so an acknowledged write survives
    # power loss / a kernel crash, not only a process crash (NORMAL would only sync at checkpoints and
    # could lose the last acknowledged writes). Group commit amortises that fsync over many writes.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    if readonly:
        conn.execute("PRAGMA query_only=1")
        # 8 MiB per reader: the OS page cache holds the file anyway, and the server must stay small
    # (150 MB holding 10,000 pods).
    conn.execute("PRAGMA cache_size=-8192")
    return conn


def map_error(exc: BaseException, what: str) -> StoreError:
    """sqlite3 errors never leave the store: I/O, lock, disk-full and corruption mean unavailable."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
        # SQLite reports ENOSPC (data file, WAL or journal) as SQLITE_FULL; the transaction is rolled back.
        return NoSpaceError(f"database space exceeded: sqlite {what} failed: {exc}")
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError, sqlite3.ProgrammingError)):
        return UnavailableError(f"sqlite {what} failed: {exc}")
    return StoreError(f"sqlite {what} failed: {exc}")


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound).

    SQLite compares TEXT with memcmp on UTF-8, which orders like Python's code-point comparison.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            # Skip the surrogate block: those code points have no UTF-8 encoding.
            chars[-1] = chr(0xE000 if 0xD7FF <= last < 0xE000 else last + 1)
            return "".join(chars)
        chars.pop()
    return None


def event_from_row(row: tuple[object, ...]) -> WatchEvent:
    """Build a WatchEvent from a ``log`` row selected with :data:`EVENT_COLUMNS`."""
    rev, key, deleted, value, create_rev, prev_value, prev_create, prev_mod = row
    assert isinstance(rev, int) and isinstance(key, str) and isinstance(create_rev, int)
    prev: KeyValue | None = None
    if prev_mod is not None:
        assert isinstance(prev_value, bytes) and isinstance(prev_create, int) and isinstance(prev_mod, int)
        prev = KeyValue(key, prev_value, prev_create, prev_mod)
    if deleted:
        assert prev is not None
        return WatchEvent(EventType.DELETE, KeyValue(key, prev.value, prev.create_revision, rev), prev)
    assert isinstance(value, bytes)
    return WatchEvent(EventType.PUT, KeyValue(key, value, create_rev, rev), prev)
