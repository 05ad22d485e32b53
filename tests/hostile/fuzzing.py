"""Fuzzing the API from its own OpenAPI v3 with schemathesis: the driver that the test suite
(tests/hostile/test_fuzz_openapi.py, a bounded run) and bench/fuzz_openapi.py (the long run) share.

Every group-version document the server lists at ``/openapi/v3`` is loaded into schemathesis;
each operation gets ``examples`` generated requests (schema-conforming and, alternately,
schema-violating ones), drawn by Hypothesis from a fixed seed, and sent to the server. The
contract checked: no 5xx, every 4xx a ``Status`` object, and a bounded answer time. Watches are
bounded (``timeoutSeconds=1``) and the deprecated ``/watch/`` paths and node-proxying subresources
(long-running, no node behind them here) are left out.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

__all__ = ["Finding", "FuzzReport", "fuzz", "operations"]

_SKIPPED_SUFFIXES = ("/exec", "/attach", "/portforward", "/proxy", "/proxy/{path}", "/log")
#: Seconds an answer may take; a request still unanswered then is a finding (a hang).
ANSWER_TIMEOUT = 30.0


@dataclass
class Finding:
    method: str
    url: str
    status: int
    body: str
    why: str

    def __str__(self) -> str:
        return f"{self.why}: {self.method} {self.url} → {self.status} {self.body[:300]}"


@dataclass
class FuzzReport:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def operations(base_url: str, groups: Iterable[str] | None = None) -> list[APIOperation]:
    """The operations of the server's OpenAPI v3 documents (``groups``: index keys such as
    ``api/v1`` or ``apis/apps/v1``; all when None)."""
    with urllib.request.urlopen(base_url + "/openapi/v3", timeout=30) as response:
        index = json.load(response)["paths"]
    chosen = [key for key in index if groups is None or key in set(groups)]
    found: list[APIOperation] = []
    for key in chosen:
        with urllib.request.urlopen(base_url + index[key]["serverRelativeURL"], timeout=60) as response:
            schema = schemathesis.openapi.from_dict(json.load(response))
        for result in schema.get_all_operations():
            operation = result.ok()
            if "/watch/" in operation.path or operation.path.endswith(_SKIPPED_SUFFIXES):
                continue
            found.append(operation)
    return found


def _check(response: requests.Response) -> str:
    """What is wrong with ``response`` ('' if nothing)."""
    if response.status_code >= 500:
        return "server error"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return "4xx without a Status"
        if not isinstance(body, dict) or body.get("kind") != "Status" or body.get("code") != response.status_code:
            return "4xx without a Status"
    return ""


def fuzz(base_url: str, selected: list[APIOperation], examples: int, random_seed: int = 0,
         report: FuzzReport | None = None) -> FuzzReport:
    """``examples`` generated requests per operation of ``selected``, from ``random_seed``."""
    report = report or FuzzReport()
    session = requests.Session()
    for number, operation in enumerate(selected):
        mode = GenerationMode.NEGATIVE if number % 2 else GenerationMode.POSITIVE

        # Half the operations in the "default" namespace, which exists: random namespace names end
        # at the namespace lookup (a 404) before the body is looked at.
        pinned = ({"namespace": "default"} if number % 4 < 2 and "{namespace}" in operation.path else None)

        @seed(random_seed + number)
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
        def send(case: Any) -> None:
            if isinstance(case.query, dict) and "watch" in case.query:
                case.query["timeoutSeconds"] = 1  # a watch is long-running: bounded here
            try:
                response = case.call(base_url=base_url, session=session, timeout=ANSWER_TIMEOUT)
            except requests.exceptions.RequestException as error:
                report.sent += 1
                report.findings.append(Finding(case.method, case.formatted_path, 0, repr(error), "no answer"))
                return
            report.sent += 1
            report.statuses[response.status_code] += 1
            why = _check(response)
            if why:
                report.findings.append(Finding(case.method, response.request.url or "", response.status_code,
                                               response.text, why))

        send()
    return report
