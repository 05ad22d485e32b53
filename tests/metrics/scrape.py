"""Reading a /metrics page with prometheus-client's own parser, and waiting for a series to move."""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "fetch", "parse", "wait_for"]


@dataclass(frozen=True)
class Scrape:
    """Every sample of one page: (sample name, labels) → value; ``types`` by family name."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def value(self, metric: str, /, **labels: str) -> float:
        """The sum over the samples named ``metric`` whose labels include ``labels`` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (sample, sample_labels), v in self.samples.items()
                   if sample == metric and wanted <= sample_labels)

    def has(self, metric: str, /, **labels: str) -> bool:
        wanted = set(labels.items())
        return any(sample == metric and wanted <= sample_labels for sample, sample_labels in self.samples)

    def label_sets(self, metric: str) -> list[dict[str, str]]:
        return [dict(sample_labels) for sample, sample_labels in self.samples if sample == metric]


def parse(text: str) -> Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, types)


def fetch(url: str, token: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTPS without verifying (self-signed serving certs)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def wait_for(read: Callable[[], Scrape], check: Callable[[Scrape], bool], timeout: float = 30) -> Scrape:
    """Scrape until ``check`` holds; the last scrape in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = read()
        if check(scrape):
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError("metrics did not move: " + repr(sorted(
                (k[0], dict(k[1]), v) for k, v in scrape.samples.items() if not k[0].startswith("python_"))[:80]))
        time.sleep(0.2)
