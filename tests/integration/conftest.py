"""Fixtures for integration tests: real network namespaces, always removed.

``netns`` is a factory: ``netns("host")`` creates ``l3f-t<random>-host`` with
loopback up and returns its name; every namespace it made is deleted at the
end of the test, also after a failure. ``veth`` links two namespaces.
Everything here needs root; without it the tests are skipped.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest

from l3fabric.dataplane import netns as netns_mod

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root (network namespaces)"))


def ip(*args: str) -> str:
    """Run ``ip ARGS``; return stdout, raise with ip's message on failure."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def in_ns(
    name: str, *argv: str, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``name``."""
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@pytest.fixture
def netns() -> Iterator[Callable[[str], str]]:
    tag = "t" + secrets.token_hex(2)
    made: list[str] = []

    def make(name: str) -> str:
        full = f"l3f-{tag}-{name}"
        netns_mod.create(full)
        made.append(full)
        return full

    yield make
    for name in reversed(made):
        netns_mod.delete(name)


@pytest.fixture
def veth() -> Callable[[str, str, str, str], None]:
    """``veth(ns_a, name_a, ns_b, name_b)``: a veth pair, both ends up (gone with the namespaces)."""

    def make(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        ip("-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
        ip("-n", ns_a, "link", "set", name_a, "up")
        ip("-n", ns_b, "link", "set", name_b, "up")

    return make
