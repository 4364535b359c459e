"""End to end: a lab with two controllers on one store loses the one its agents use.

One lab per store (``store: sqlite``, then ``etcd``): ``controllers: 2``, two racks (r1: r1-h1, r1-h2;
r2: r2-h1) behind ToRs and a gateway; VM ``a`` on r1-h1 pings VM ``b`` on
r2-h1 every 50 ms while two clients create ports, one through each
controller. Then the first controller (the one every agent starts on) gets
SIGKILL. Required, within 5 s of the kill: every agent (hosts and gateway)
resumed its watch at the other controller from its revision (its log says
so; no new snapshot) and reports through it, and a VM booted after the kill
(its port created through the survivor) has its /32 on every peer host. Not
one ping between a and b is lost; every create a controller acknowledged is
in the store afterwards, with no address handed out twice. On etcd, where
liveness is a lease per agent, the survivor shows every agent up all along
(before the kill, though they report to the other, and after it); on SQLite
each controller knows only the heartbeats sent to it, so that is not required.
``pytest -s`` shows the numbers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from l3fabric.client import FabricClient
from l3fabric.lab.credentials import admin_credentials
from l3fabric.lab.status import controller_status
from l3fabric.store.etcd_local import ETCD_BINARY

from .lab_fixtures import (  # noqa: F401
    DownReader,
    Lab,
    Writer,
    agent_controllers,
    module_lab_factory,
    needs_root,
    pings,
    wait_until,
    watch_resumed_at,
)

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
controllers: 2
racks:
  - {name: r1, hosts: 2}
  - {name: r2, hosts: 1}
internet: {clients: 0}
"""
CONVERGE_S = 5.0
PING_INTERVAL_S = 0.05
PINGS = 160  # 8 s of pings: 2 s before the kill, 6 s after
WRITES = 60  # creates per controller at most (the subnet has room for ~250)


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def lab(request: pytest.FixtureRequest, module_lab_factory) -> Lab:  # noqa: F811
    if request.param == "etcd" and not os.path.exists(ETCD_BINARY):
        pytest.skip(f"store etcd needs {ETCD_BINARY}")
    lab = module_lab_factory(f"{TOPOLOGY}store: {request.param}\n")
    lab.create_network("priv")
    lab.boot("a", ["priv"], "r1-h1")
    lab.boot("b", ["priv"], "r2-h1")
    for router in ("r1-tor", "r2-tor", "gw1"):
        lab.wait_established(router, with_hosts=True)
    lab.first_reply("a", lab.vm_ip("b"), within=15)
    return lab


def test_agents_move_to_the_other_controller_within_5s_of_a_kill_and_nothing_is_lost(
    lab: Lab,
) -> None:
    first, second = controller_status(lab.state, lab.plan)
    assert first.alive and second.alive
    survivor = FabricClient(second.url, timeout=5, credentials=admin_credentials(lab.name))
    before = agent_controllers(lab, survivor)
    assert set(before.values()) == {first.agent_url}, before  # every agent starts on the first
    network = survivor.list("networks", name="priv")[0]["id"]
    stop = threading.Event()
    writers = [Writer(lab, c.url, network, stop, WRITES) for c in (first, second)]
    reader = DownReader(lab, second.url, stop)
    reader.start()
    ping_cmd = ["ping", "-n", "-i", str(PING_INTERVAL_S), "-c", str(PINGS), "-W", "1"]
    with lab.background("a", *ping_cmd, lab.vm_ip("b")) as ping:
        for writer in writers:
            writer.start()
        time.sleep(2.0)
        os.kill(lab.state.pids()[first.name], signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        acked_at_kill = len(writers[1].acknowledged)
        lab.boot("late", ["priv"], "r1-h2")  # its port: through the survivor
        late = f"{lab.vm_ip('late')}/32"
        routed = wait_until(
            lambda: all(lab.has_route(h, late) for h in ("r1-h1", "r2-h1")),
            timeout=CONVERGE_S - (time.monotonic() - killed),
            what=f"{late} on the peer hosts",
        )
        route_s = time.monotonic() - killed
        moved = wait_until(
            lambda: set(agent_controllers(lab, survivor).values()) == {second.agent_url},
            timeout=max(0.1, CONVERGE_S - (time.monotonic() - killed)),
            what="every agent reporting through the surviving controller",
        )
        moved_s = time.monotonic() - killed
        output = ping.finish(timeout=PINGS * PING_INTERVAL_S + 10)
    stop.set()
    for thread in [*writers, reader]:
        thread.join(10)
    sent, received = pings(output)
    resumed = {n: watch_resumed_at(lab, n) - killed_at for n in ("r1-h1", "r1-h2", "r2-h1", "gw1")}
    print(
        f"\n{lab.plan.store}: kill -> late VM's /32 on the peer hosts {route_s:.2f} s (wait {routed:.2f} s),"
        f" -> every agent on the survivor {moved_s:.2f} s (wait {moved:.2f} s);"
        f" watches resumed after {max(resumed.values()):.3f} s at most;"
        f" pings {received}/{sent};"
        f" acknowledged creates {len(writers[0].acknowledged)} via the killed controller,"
        f" {len(writers[1].acknowledged)} via the survivor;"
        f" {len(reader.down)} agents shown down in {reader.reads} reads of the survivor"
    )
    if lab.plan.store == "etcd":
        assert reader.reads >= 20 and not reader.down, reader.down
    assert received == sent, output
    assert not any(w.errors for w in writers), [w.errors for w in writers]
    assert writers[0].unreachable > 0 and writers[1].unreachable == 0
    assert len(writers[1].acknowledged) > acked_at_kill, "the survivor acknowledged no create"
    assert route_s < CONVERGE_S and moved_s < CONVERGE_S, (route_s, moved_s)
    with survivor:
        ports = survivor.list("ports")
    stored = {p["id"] for p in ports}
    acknowledged = set(writers[0].acknowledged + writers[1].acknowledged)
    assert acknowledged <= stored, f"lost: {acknowledged - stored}"
    addresses = Counter(f["ip_address"] for p in ports for f in p["fixed_ips"])
    assert not [a for a, n in addresses.items() if n > 1], "an address handed out twice"
    assert max(resumed.values()) < CONVERGE_S, resumed
