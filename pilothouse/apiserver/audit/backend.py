"""The audit log backend: ``--audit-log-path`` (a file, or ``-`` for stdout), one event per line.

Off the request's path: a request puts its event on a bounded queue and goes on; one task takes what
has gathered and hands it to a writer thread, which finishes the events (decodes the bodies, drops
managedFields), encodes them and writes them in one go. When the queue is full, ``--audit-log-mode``
decides, as upstream's modes do:

* ``blocking`` (the default, as kube-apiserver's): the request waits for room, so no event is lost
  and a slow disk slows the API down. Unlike upstream's, a request does not wait for its own
  event's write, only for a place in the queue (``--audit-log-batch-buffer-size``, 10,000).
* ``batch``: the event is dropped and counted in ``apiserver_audit_error_total{plugin="buffered"}``
  (upstream's buffered backend: "audit buffer queue blocked"); the API never waits for the log.

Rotation is lumberjack's, which kube-apiserver uses: past ``--audit-log-maxsize`` megabytes
(0 means lumberjack's 100) the file is renamed ``<name>-<UTC time>.<ext>`` and a new one begun; the
oldest backups beyond ``--audit-log-maxbackup`` and those older than ``--audit-log-maxage`` days go;
``--audit-log-compress`` gzips each backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import logging
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from prometheus_client import Counter

from pilothouse.apiserver.audit.event import PendingEvent, micro_time

__all__ = ["AuditLogOptions", "LogBackend", "RotatingFile"]

log = logging.getLogger("pilothouse.audit")

EVENTS = Counter("apiserver_audit_event", "Counter of audit events generated and sent to the audit backend.")
ERRORS = Counter("apiserver_audit_error", "Counter of audit events that failed to be audited properly. "
                 "Plugin identifies the plugin affected by the error.", ["plugin"])

_MODES = ("blocking", "blocking-strict", "batch")
_FORMATS = ("json", "legacy")
_BATCH = 1000  # events written per call into the thread
_GATHER = 0.02  # seconds the writer lets events gather before a write
_MEGABYTE = 1024 * 1024


@dataclass
class AuditLogOptions:
    """kube-apiserver's ``--audit-*`` flags (the log backend's)."""

    path: str = ""
    policy_file: str = ""
    max_age: int = 0
    max_backup: int = 0
    max_size: int = 0
    format: str = "json"
    mode: str = "blocking"
    buffer_size: int = 10000
    compress: bool = False

    def enabled(self) -> bool:
        """As kube-apiserver: a log path and a policy are both needed to audit anything."""
        return bool(self.path and self.policy_file)

    def check(self) -> None:
        """The flag errors kube-apiserver stops on."""
        if self.format not in _FORMATS:
            raise ValueError(f"invalid audit log format {self.format}, allowed formats are "
                             f"\"{','.join(_FORMATS)}\"")
        if self.mode not in _MODES:
            raise ValueError(f"invalid audit log mode {self.mode}, allowed modes are \"{','.join(_MODES)}\"")
        for name, value in (("maxage", self.max_age), ("maxbackup", self.max_backup), ("maxsize", self.max_size)):
            if value < 0:
                raise ValueError(f"--audit-log-{name} {value} can't be a negative number")
        if self.buffer_size <= 0:
            raise ValueError("--audit-log-batch-buffer-size must be positive")


class RotatingFile:
    """lumberjack.Logger's behaviour: size-triggered rotation to time-stamped backups."""

    def __init__(self, path: Path, max_size_mb: int, max_backups: int, max_age_days: int,
                 compress: bool = False) -> None:
        self.path = path
        self.compress = compress
        self.max_bytes = (max_size_mb or 100) * _MEGABYTE
        self.max_backups = max_backups
        self.max_age = datetime.timedelta(days=max_age_days) if max_age_days else None
        path.parent.mkdir(parents=True, exist_ok=True)
        # kube-apiserver's ensureLogFile: created 0600, appended to across restarts.
        self.file: IO[bytes] = open(path, "ab", buffering=0)  # noqa: SIM115 - lives with the backend
        os.chmod(path, 0o600)
        self.size = self.file.tell()

    def write_lines(self, lines: list[bytes]) -> None:
        """Whole lines, rotating between two when the next would pass the size (lumberjack checks
        each write; a batch is many lines)."""
        pending: list[bytes] = []
        for line in lines:
            if self.size and self.size + len(line) > self.max_bytes:
                self.file.write(b"".join(pending))
                pending = []
                self.rotate()
            pending.append(line)
            self.size += len(line)
        self.file.write(b"".join(pending))

    def rotate(self) -> None:
        self.file.close()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        backup = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")
        self.path.rename(backup)
        self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        os.chmod(self.path, 0o600)
        self.size = 0
        if self.compress:  # lumberjack's Compress: <backup>.gz, the plain copy removed
            with open(backup, "rb") as source, gzip.open(backup.with_name(backup.name + ".gz"), "wb") as target:
                shutil.copyfileobj(source, target)
            backup.unlink()
        self._prune()

    def backups(self) -> list[Path]:
        """Oldest first (the time stamp sorts as the name does)."""
        prefix, suffix = f"{self.path.stem}-", self.path.suffix
        return sorted(p for p in self.path.parent.iterdir()
                      if p.name.startswith(prefix) and p.name.removesuffix(".gz").endswith(suffix) and p != self.path)

    def _prune(self) -> None:
        backups = self.backups()
        doomed = backups[:-self.max_backups] if self.max_backups and len(backups) > self.max_backups else []
        if self.max_age is not None:
            cutoff = datetime.datetime.now().timestamp() - self.max_age.total_seconds()
            doomed += [p for p in backups if p not in doomed and p.stat().st_mtime < cutoff]
        for path in doomed:
            with contextlib.suppress(OSError):
                path.unlink()

    def close(self) -> None:
        self.file.close()


def _strip_managed_fields(value: Any) -> Any:
    """``removeManagedFields``: of the object, or of every item of a list."""
    if isinstance(value, dict):
        metadata = value.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        items = value.get("items")
        for item in items if isinstance(items, list) else ():
            _strip_managed_fields(item)
    return value


def _decoded(body: bytes, omit_managed_fields: bool) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _strip_managed_fields(value) if omit_managed_fields else value


def finish(pending: PendingEvent) -> dict[str, Any]:
    """The event with its bodies (Request and RequestResponse levels) and its time stamps written out."""
    event = pending.event
    for key in ("requestReceivedTimestamp", "stageTimestamp"):
        event[key] = micro_time(event[key])
    if pending.request_body is not None:
        request_object = _decoded(pending.request_body, pending.omit_managed_fields)
        if request_object is not None:
            event = _insert_before(event, "requestReceivedTimestamp", "requestObject", request_object)
    if pending.response_body is not None:
        response_object = _decoded(pending.response_body, pending.omit_managed_fields)
        if response_object is not None:
            event = _insert_before(event, "requestReceivedTimestamp", "responseObject", response_object)
    return event


def _insert_before(event: dict[str, Any], anchor: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in event.items():
        if name == anchor:
            out[key] = value
        out[name] = item
    return out


def legacy_line(event: dict[str, Any]) -> str:
    """``--audit-log-format legacy``: kube-apiserver's ``EventString``, every field Go-quoted."""
    user, impersonated = event.get("user") or {}, event.get("impersonatedUser")
    namespace = (event.get("objectRef") or {}).get("namespace") or "<none>"
    status = event.get("responseStatus")
    username, groups = user.get("username") or "<none>", "<none>"
    if user.get("username") and user.get("groups"):
        groups = ",".join(_quoted(group) for group in user["groups"])
    as_user, as_groups = "<self>", "<lookup>"
    if impersonated is not None:
        as_user = impersonated.get("username", "")
        if impersonated.get("groups") is not None:
            as_groups = ",".join(_quoted(group) for group in impersonated["groups"])
    ip = (event.get("sourceIPs") or ["<unknown>"])[0]
    fields = [("id", event["auditID"]), ("stage", event["stage"]), ("ip", ip), ("method", event["verb"]),
              ("user", username), ("groups", groups), ("as", as_user), ("asgroups", as_groups),
              ("user-agent", event.get("userAgent", "")), ("namespace", namespace), ("uri", event["requestURI"])]
    response = str(status["code"]) if status else "<deferred>"
    return (f"{event['requestReceivedTimestamp']} AUDIT: " + " ".join(f"{k}={_quoted(v)}" for k, v in fields)
            + f' response="{response}"\n')


def _quoted(value: str) -> str:
    """Go's %q for the strings an event holds (JSON's escaping agrees on them)."""
    return orjson.dumps(value).decode()


class LogBackend:
    """Events in, lines out (see the module docstring)."""

    def __init__(self, options: AuditLogOptions) -> None:
        self.options = options
        self.queue: asyncio.Queue[PendingEvent] = asyncio.Queue(options.buffer_size)
        self.out: RotatingFile | IO[bytes] = sys.stdout.buffer if options.path == "-" else \
            RotatingFile(Path(options.path), options.max_size, options.max_backup, options.max_age, options.compress)
        # One thread, so lines go out in the order they were queued.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="audit-log")
        self.task: asyncio.Task[None] | None = None
        self.legacy = options.format == "legacy"

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._drain(), name="audit-log-writer")

    async def emit(self, pending: PendingEvent) -> None:
        if self.options.mode == "batch":
            try:
                self.queue.put_nowait(pending)
            except asyncio.QueueFull:
                EVENTS.inc()
                ERRORS.labels("buffered").inc()
            return
        if self.queue.full():
            await self.queue.put(pending)  # back-pressure: this request waits for the writer
        else:
            self.queue.put_nowait(pending)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            try:
                # Gather for a moment: one hand-over to the thread (and one write) per batch costs tens
                # of microseconds, which at one request at a time doubled a GET's CPU (bench/audit_cost.py).
                await asyncio.sleep(_GATHER)
            finally:  # cancelled (the server stopping) or not, what was taken is written
                while len(batch) < _BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                written = loop.run_in_executor(self.executor, self._write_safely, batch)
            await written

    def _write_safely(self, batch: list[PendingEvent]) -> None:
        try:
            self._write(batch)
        except Exception:  # a full disk must not stop the writer; the events are lost, counted
            log.exception("could not write %d audit events", len(batch))
            ERRORS.labels("log").inc(len(batch))

    def _write(self, batch: list[PendingEvent]) -> None:
        EVENTS.inc(len(batch))  # here, once a batch: prometheus-client's counters take a lock each time
        if self.legacy:
            lines = [legacy_line(finish(pending)).encode() for pending in batch]
        else:
            lines = [orjson.dumps(finish(pending)) + b"\n" for pending in batch]
        if isinstance(self.out, RotatingFile):
            self.out.write_lines(lines)
        else:
            self.out.write(b"".join(lines))
            self.out.flush()

    async def close(self) -> None:
        """Write what is queued, then stop (a server shutting down keeps its last events)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        remaining = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        if remaining:
            self.executor.submit(self._write_safely, remaining)
        # Waits for every batch handed over, in order (one thread).
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)
        if isinstance(self.out, RotatingFile):
            self.out.close()
