"""Fixtures for the dashboard tests: a server on the secure defaults with a token file, simulated nodes,
and Debian's chromium driven by Playwright (no browser download: ``executable_path``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import AgentProcess, wait_for
from tests.conftest import ServerProcess, free_port, start_server_process

CHROMIUM = "/usr/bin/chromium"
ADMIN_TOKEN = "dashboard-admin-token"
VIEWER_TOKEN = "dashboard-viewer-token"
SIMULATED_NODES = 3

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extras) is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("needs Debian's chromium (scripts/install-deps --tests)", allow_module_level=True)


@dataclass
class DashboardCluster:
    server: ServerProcess
    agent: AgentProcess
    flags: tuple[str, ...]

    def restart_server(self) -> None:
        """Stop the API server and start it again on the same data dir and port."""
        self.server.stop()
        self.server = start_server_process(self.server.data_dir, self.server.port, self.flags, secure=True)

    @property
    def ui(self) -> str:
        return self.server.url + "/ui/"

    def kubectl(self, *args: str, token: str = ADMIN_TOKEN, check: bool = True) -> Any:
        return self.server.kubectl("--token", token, *args, check=check)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardCluster]:
    directory = tmp_path_factory.mktemp("dashboard")
    tokens = directory / "tokens.csv"
    tokens.write_text(f'{ADMIN_TOKEN},dash-admin,uid-1,"system:masters"\n{VIEWER_TOKEN},viewer,uid-2,""\n')
    server = start_server_process(directory / "data", extra=("--token-auth-file", str(tokens)), secure=True)
    agent = AgentProcess({"server": server.url, "kubeconfig": str(server.kubeconfig), "node_name": "sim",
                          "simulate": SIMULATED_NODES, "runtime": "simulated", "root_dir": str(directory / "root"),
                          "port": free_port()}, directory / "agent.log")
    agent.start()
    cluster = DashboardCluster(server, agent, ("--token-auth-file", str(tokens)))
    try:
        def ready() -> bool:
            out = server.kubectl("get", "nodes", "--no-headers", check=False).stdout
            return out.count(" Ready ") >= SIMULATED_NODES
        wait_for(ready, 60, "simulated nodes Ready")
        yield cluster
    finally:
        agent.stop()
        cluster.server.stop()  # the one running now (a test may have restarted it)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh page (its own sessionStorage) trusting the test cluster's self-signed CA; a screenshot of
    it is saved under the test's tmp dir (and tests/ui/screenshots/ when PILOTHOUSE_SCREENSHOTS is set)."""
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP (no eval) refuses.
    context = browser.new_context(ignore_https_errors=True, bypass_csp=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    shot = tmp_path / f"{request.node.name}.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("PILOTHOUSE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("#main:not([hidden])")
