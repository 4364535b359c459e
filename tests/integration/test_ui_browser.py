"""The live picture (/ui) in a real headless Chromium against a real lab.

One lab for the module (examples/small.yaml's shape: one rack of two hosts
peering with the gateway). The page must load with no console error, show
every host and the gateway, turn a host red within 5 s of its agent being
killed, and find a VM with its search box (trace).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from playwright import sync_api as playwright

from l3fabric.lab.credentials import admin_token

from .lab_fixtures import Lab, module_lab_factory, needs_root, needs_tools, wait_until  # noqa: F401

# Headless, and no connection anywhere but the page's own server (loopback).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]

pytestmark = [needs_root, needs_tools("chromium"), pytest.mark.integration]

TOPOLOGY = "racks: [{name: r1, hosts: 2, tor: false}]\ninternet: {clients: 1}\n"


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv", cidrs=("10.1.0.0/24",))
    lab.boot("web", ["priv"], "r1-h1")
    lab.wait_established(lab.plan.by_role("gateway")[0].name, with_hosts=True)
    return lab


@pytest.fixture(scope="module")
def page(lab: Lab) -> Iterator[object]:
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors  # type: ignore[attr-defined]
            page.goto(f"{lab.plan.api_url()}/ui#token={admin_token(lab.name)}")
            yield page
        finally:
            browser.close()


def _health(page, node: str) -> str | None:
    return page.get_attribute(f'[data-node="{node}"]', "data-health", timeout=1000)


def test_page_shows_every_node_of_the_lab_healthy_with_no_console_error(lab: Lab, page) -> None:
    nodes = [f"host:{n.name}" for n in lab.plan.by_role("host")]
    nodes += [f"gateway:{n.name}" for n in lab.plan.by_role("gateway")]
    for node in nodes:
        page.wait_for_selector(f'[data-node="{node}"][data-health="ok"]', timeout=20_000)
    # BGP sessions drawn as edges, established ones solid.
    assert page.locator("line.edge:not(.down)").count() >= len(nodes) - 1
    assert page.get_attribute("#summary", "data-state") == "ok"
    assert page.errors == []  # type: ignore[attr-defined]


def test_trace_in_the_search_box_finds_the_vm(lab: Lab, page) -> None:
    address = lab.vm_ip("web")
    page.fill("#query", address)
    page.press("#query", "Enter")
    page.wait_for_selector(f'#panel[data-trace="{address}"]', timeout=5000)
    panel = page.inner_text("#panel")
    assert "r1-h1" in panel and "priv" in panel and "source NAT" in panel
    assert "traced" in (page.get_attribute('[data-node="host:r1-h1"]', "class") or "")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_host_turns_red_within_5_s_of_its_agent_being_killed(lab: Lab, page) -> None:
    page.wait_for_selector('[data-node="host:r1-h2"][data-health="ok"]', timeout=10_000)
    os.kill(lab.state.pids()["agent-r1-h2"], signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: _health(page, "host:r1-h2") == "down", 8, "r1-h2 drawn as down")
    assert time.monotonic() - killed < 5
    assert _health(page, "host:r1-h1") == "ok"
    assert page.get_attribute("#summary", "data-state") == "degraded"
