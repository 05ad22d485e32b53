"""The API server's own counters, served at ``/metrics`` in Prometheus' text exposition format.

Only counters that a user or a test needs to see a defence at work, named and labelled as
kube-apiserver names them (``k8s.io/apiserver/pkg/storage/cacher/metrics``), so dashboards and alerts
written for Kubernetes read them unchanged. A counter vector is a dict and the text format is a few
lines: not worth the ``prometheus_client`` dependency (and its process-global registry) until histograms
are wanted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["TERMINATED_WATCHERS", "CounterVec", "handle_metrics"]


def _escape(value: str) -> str:
    # The exposition format's label escaping: backslash, double quote and newline.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class CounterVec:
    """A counter per combination of label values (Prometheus' CounterVec)."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}")
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def exposition(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for label_values, value in sorted(self.values.items()):
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(self.labels, label_values, strict=True))
            yield f"{self.name}{{{labels}}} {value:g}"


#: Watchers closed because their client stopped reading (kube-apiserver's TerminatedWatchersCounter).
TERMINATED_WATCHERS = CounterVec("apiserver_terminated_watchers_total",
                                 "Counter of watchers closed due to unresponsiveness broken by resource type.",
                                 ("group", "resource"))

_REGISTRY: tuple[CounterVec, ...] = (TERMINATED_WATCHERS,)


async def handle_metrics(request: web.Request) -> web.Response:
    lines = [line for counter in _REGISTRY for line in counter.exposition()]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")
