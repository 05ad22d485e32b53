"""Runs one node agent in its own process for the tests: ``python -m tests.agent.agent_runner JSON``.

A process of its own (not a task in the test's loop) so that tests can stop it the way an operator
does (SIGTERM: containers keep running) and start it again to check adoption.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from pilothouse.components.agent.agent import AgentOptions, run_agent

__all__ = ["main"]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = AgentOptions(**json.loads(sys.argv[1]))
    asyncio.run(run_agent(options))


if __name__ == "__main__":
    main()
