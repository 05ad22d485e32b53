"""The long fuzzing run: schemathesis over every operation of pilothouse's own OpenAPI v3, every group.

Usage::

    .venv/bin/python bench/fuzz_openapi.py [--requests 20000] [--seed 0] [--groups api/v1,apis/apps/v1]

Starts a real ``pilothouse server`` (its own temp data dir, the API-semantics opt-outs, no embedded
components), then sends generated requests (tests/hostile/fuzzing.py: schema-conforming and
schema-violating ones alternately per operation, fixed seeds) in rounds over all operations until
``--requests`` have been sent or ``--time-cap`` seconds have passed. Prints the requests sent, the
answers by status, the 5xx seen (the goal is 0), 4xx answers without a ``Status``, requests without
an answer, and one line per distinct finding. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import start_server_process
from tests.hostile.fuzzing import FuzzReport, fuzz, operations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", default="", help="comma-separated /openapi/v3 keys (default: all)")
    parser.add_argument("--examples", type=int, default=5, help="requests per operation per round")
    parser.add_argument("--time-cap", type=float, default=4 * 3600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pilothouse-fuzz-") as directory:
        server = start_server_process(Path(directory) / "data", extra=("--disable", "scheduler,controller-manager"))
        try:
            selected = operations(server.url, [g for g in args.groups.split(",") if g] or None)
            print(f"{len(selected)} operations; server {server.url}", flush=True)
            report = FuzzReport()
            started = time.monotonic()
            round_number = 0
            while report.sent < args.requests and time.monotonic() - started < args.time_cap:
                fuzz(server.url, selected, args.examples, args.seed + round_number * len(selected), report)
                round_number += 1
                print(f"round {round_number}: {report.sent} sent, {report.server_errors} 5xx, "
                      f"{len(report.findings)} findings, {time.monotonic() - started:.0f} s", flush=True)
                if server.process.poll() is not None:
                    print("the server exited", flush=True)
                    break
        finally:
            server.stop()
    print(f"\nsent {report.sent} in {time.monotonic() - started:.0f} s; by status: "
          + ", ".join(f"{status}: {count}" for status, count in sorted(report.statuses.items())))
    print(f"5xx: {report.server_errors}; findings: {len(report.findings)}")
    seen: set[tuple[str, str, str]] = set()
    for finding in report.findings:
        key = (finding.why, finding.method, finding.body[:120])
        if key not in seen:
            seen.add(key)
            print(" ", finding)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
