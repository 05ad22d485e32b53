"""kube-proxy's tuning flags reach the proxy's configuration (``pilothouse proxy``; the agent shares
the same options through ``proxy_options``)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import pilothouse.components.proxy as proxy_package
from pilothouse.cli.main import main
from pilothouse.components.proxy.rules import ProxyConfig


def _config(monkeypatch: pytest.MonkeyPatch, *flags: str) -> tuple[int, ProxyConfig | None, str]:
    seen: list[ProxyConfig] = []

    async def start_proxy(target: Any, config: ProxyConfig, **_: Any) -> None:
        seen.append(config)  # and None: the command exits 1 without running anything

    monkeypatch.setattr(proxy_package, "start_proxy", start_proxy)
    result = CliRunner().invoke(main, ["proxy", "--server", "http://127.0.0.1:9", "--node-name", "n1", *flags])
    return result.exit_code, (seen[0] if seen else None), result.output


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _, config, output = _config(monkeypatch)
    assert config is not None, output
    assert config.nodeport_addresses == () and config.sync_period == 3600.0 and config.min_sync_period == 0.0


def test_tuning_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    _, config, output = _config(monkeypatch, "--nodeport-addresses", "10.0.0.0/8, 192.0.2.0/24",
                                "--sync-period", "30s", "--min-sync-period", "1s500ms")
    assert config is not None, output
    assert config.nodeport_addresses == ("10.0.0.0/8", "192.0.2.0/24")
    assert config.sync_period == 30.0 and config.min_sync_period == 1.5


@pytest.mark.parametrize("flags", [("--nodeport-addresses", "primary,10.0.0.0/8"),
                                   ("--nodeport-addresses", "fd00::/64"), ("--nodeport-addresses", "ten"),
                                   ("--sync-period", "soon")])
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, flags: tuple[str, str]) -> None:
    code, config, output = _config(monkeypatch, *flags)
    assert code == 2 and config is None and flags[0] in output, output
