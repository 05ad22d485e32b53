"""A bounded schemathesis run against a real server, from the server's own OpenAPI v3 over every
group: a deterministic sample of operations, a few generated requests each, fixed seeds. No 5xx,
every 4xx a ``Status`` (tests/hostile/fuzzing.py; the long run is bench/fuzz_openapi.py)."""

from __future__ import annotations

import pytest

from tests.conftest import ServerProcess
from tests.hostile.fuzzing import fuzz, operations

#: Every n-th operation of the sorted list (about 500 operations over 21 group-versions).
STRIDE = 6
EXAMPLES = 4


def sample(server: ServerProcess, deletes: bool) -> list:  # type: ignore[type-arg]
    found = sorted(operations(server.url), key=lambda op: (op.path, op.method))
    chosen = [op for op in found if (op.method.upper() == "DELETE") == deletes]
    return chosen[::STRIDE] if not deletes else chosen[::STRIDE // 2]


def test_fuzzed_requests_get_no_5xx_and_every_4xx_is_a_status(server: ServerProcess) -> None:
    selected = sample(server, deletes=False)
    groups = {op.path.split("/")[2] if op.path.startswith("/apis/") else "core" for op in selected}
    assert len(groups) >= 10, groups  # the sample spans the groups, not one
    report = fuzz(server.url, selected, EXAMPLES, random_seed=15)
    assert report.sent >= 200, report.sent
    assert not report.findings, "\n".join(str(finding) for finding in report.findings[:10])


@pytest.mark.xfail(reason="DeleteOptions bodies are not yet validated against their schema (a number where "
                          "gracePeriodSeconds or dryRun belongs is a 500): issue 15's review defect, fixed on "
                          "the reliab branch", strict=False)
def test_fuzzed_deletes(server: ServerProcess) -> None:
    report = fuzz(server.url, sample(server, deletes=True), EXAMPLES, random_seed=15)
    assert not report.findings, "\n".join(str(finding) for finding in report.findings[:10])
