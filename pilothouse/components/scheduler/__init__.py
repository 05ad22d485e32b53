"""The pilothouse scheduler: kube-scheduler's framework and default plugins, over the HTTP API.

``Scheduler(server_url)`` with ``await start()`` / ``await stop()`` embeds it (``pilothouse server``);
``run_scheduler(server_url, **options)`` is the ``pilothouse scheduler`` entry point.
"""

from __future__ import annotations

from pilothouse.components.scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler, run_scheduler

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "run_scheduler"]
