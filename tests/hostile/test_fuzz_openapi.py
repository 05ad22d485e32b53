"""A bounded schemathesis run against a real server, from the server's own OpenAPI v3 over every
group: a deterministic sample of operations, a few generated requests each, fixed seeds. No 5xx,
every 4xx a ``Status`` (tests/hostile/fuzzing.py; the long run is bench/fuzz_openapi.py)."""

from __future__ import annotations

from tests.conftest import ServerProcess
from tests.hostile.fuzzing import fuzz, operations

#: Every n-th operation of the sorted list (about 480 operations over 21 group-versions).
STRIDE = 5
EXAMPLES = 3


def test_fuzzed_requests_get_no_5xx_and_every_4xx_is_a_status(server: ServerProcess) -> None:
    selected = sorted(operations(server.url), key=lambda op: (op.path, op.method))[::STRIDE]
    groups = {op.path.split("/")[2] if op.path.startswith("/apis/") else "core" for op in selected}
    assert len(groups) >= 10, groups  # the sample spans the groups, not one
    assert {op.method.upper() for op in selected} >= {"GET", "POST", "PUT", "PATCH", "DELETE"}
    report = fuzz(server.url, selected, EXAMPLES, random_seed=15)
    assert report.sent >= 250, report.sent
    assert not report.findings, "\n".join(str(finding) for finding in report.findings[:10])
