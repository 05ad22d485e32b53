"""``pilothouse server --workers N``: N request-serving processes over one embedded store.

The ``server`` process is worker 0, the leader: it opens the store, bootstraps, listens, compacts,
serves the insecure port and extra addresses, writes the kubeconfig and starts the embedded
components, exactly as with one worker. Then it starts workers 1..N-1 as supervised children (restarted
with backoff if they die): each is ``pilothouse server`` again with the same flags plus
``--worker-index`` and the port the leader bound, and listens on that port with ``SO_REUSEPORT``, so
the kernel spreads connections over the workers. Each worker has its own store connections, watch
hub (fed from the shared log, store/_sqlite_peers.py) and watch-fed caches. Why this design and what
was rejected: docs/decisions/server-workers.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pilothouse.apiserver.serve import RunningServer, ServerConfig
    from pilothouse.cli.supervisor import Supervisor

__all__ = ["WORKER_TOKEN_ENV", "add_workers", "serve_worker", "worker_args"]

#: The leader's loopback token, handed to its workers: a component's request authenticates on any.
WORKER_TOKEN_ENV = "PILOTHOUSE_WORKER_LOOPBACK_TOKEN"


def worker_args(argv: list[str], index: int, port: int) -> list[str]:
    """The leader's own command line for worker ``index``: click takes the last of a repeated flag."""
    return [*argv, "--worker-index", str(index), "--port", str(port)]


def add_workers(supervisor: Supervisor, running: RunningServer) -> None:
    """Supervise workers 1..N-1 of the leader ``running`` (none with one worker)."""
    config = running.config
    if config.workers <= 1:
        return
    os.environ[WORKER_TOKEN_ENV] = running.api.auth.loopback_token
    argv = sys.argv[1:]
    for index in range(1, config.workers):
        supervisor.add(f"apiserver-worker-{index}", *worker_args(argv, index, running.port))


async def serve_worker(config: ServerConfig, until: Callable[[], Awaitable[None]]) -> None:
    """Worker ``config.worker_index``: serve until ``until`` returns (SIGTERM from the leader's
    supervisor, also sent when the leader dies)."""
    from pilothouse.apiserver.serve import start_server
    from pilothouse.cli.supervisor import exit_with_supervisor

    exit_with_supervisor()
    config.auth.loopback_token = os.environ.get(WORKER_TOKEN_ENV, "")
    running = await start_server(config)
    try:
        await until()
    finally:
        await running.stop()
