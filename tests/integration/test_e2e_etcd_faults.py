"""End to end: faults of a three-member etcd under two controllers, with real processes.

One lab for the module: ``controllers: 2``, ``store: etcd`` with
``etcd_members: 3``, hosts r1-h1 and r2-h1 (one per rack, behind ToRs), a
gateway and an internet client; private VMs ``a`` (r1-h1) and ``b`` (r2-h1),
public VM ``pub`` (r2-h1).

1. SIGKILL of the controller every agent uses and of the etcd leader at
   once, while two clients create ports, one through each controller (both
   acknowledged creates before the kill, and the survivor's client after
   it): no acknowledged create lost, no address handed out twice; within
   5 s of the kill every agent resumed its watch on the survivor (no new
   snapshot) and reports through it, and a VM booted after the kill is
   routed on its peer host and the gateway; not one ping lost between the
   existing VMs (``a`` to ``b`` and ``a`` to ``pub``, across the racks)
   from 2 s before the kill to 6 s after.
2. The whole etcd cluster down for 30 s: pings between the VMs and to and
   from the internet client go on without a loss, every write (a create, an
   update, a delete, through either controller) is refused with a 503
   ``ServiceUnavailable`` within a few seconds, the agents keep their
   routes; once etcd is back a create through each controller succeeds, a
   new VM is routed, every agent reports again, and none took a new
   snapshot (etcd kept its revisions).
``pytest -s`` shows the numbers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import pytest

from l3fabric.client import ApiError, ControllerUnavailable, FabricClient
from l3fabric.lab import etcd_faults, processes
from l3fabric.lab.credentials import admin_credentials
from l3fabric.lab.demo_external import client_endpoint
from l3fabric.lab.status import controller_status
from l3fabric.store.etcd_local import ETCD_BINARY

from .lab_fixtures import (  # noqa: F401
    Lab,
    Writer,
    agent_controllers,
    assert_no_resync,
    module_lab_factory,
    needs_root,
    pings,
    wait_until,
    watch_resumed_at,
)

pytestmark = [
    pytest.mark.integration,
    needs_root,
    pytest.mark.skipif(not os.path.exists(ETCD_BINARY), reason=f"needs {ETCD_BINARY}"),
]

TOPOLOGY = """
controllers: 2
store: etcd
etcd_members: 3
racks:
  - {name: r1, hosts: 1}
  - {name: r2, hosts: 1}
internet: {clients: 1}
"""
AGENTS = ("r1-h1", "r2-h1", "gw1")
CONVERGE_S = 5.0
KILL_PINGS = 160  # 0.05 s apart: 2 s before the kill, 6 s after (past CONVERGE_S)
WRITES = 40  # creates per controller at most
DOWN_S = 30.0
DOWN_PING_S = 0.1
ANSWER_S = 3.0  # a refused write while etcd is down answers within this


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv")
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        api.create_subnet(network_id=pub["id"], cidr="203.0.113.0/25", ip_version=4)
    lab.boot("a", ["priv"], "r1-h1")
    lab.boot("b", ["priv"], "r2-h1")
    lab.boot("pub", ["pub"], "r2-h1")
    for router in ("r1-tor", "r2-tor", "gw1"):
        lab.wait_established(router, with_hosts=True)
    client = client_endpoint(lab.plan).name
    lab.first_reply("a", lab.vm_ip("b"), within=15)
    lab.first_reply(client, lab.vm_ip("pub"), within=15)
    lab.first_reply("a", client_endpoint(lab.plan).address, within=15)
    return lab


def admin(lab: Lab, url: str, timeout: float = 5.0) -> FabricClient:
    return FabricClient(url, timeout=timeout, credentials=admin_credentials(lab.name))


def refused_only_503(errors: list[str]) -> None:
    """A write may be refused while etcd elects a leader (503), never otherwise."""
    assert all(e.startswith("503 ") for e in errors), errors


def test_killing_a_controller_and_the_etcd_leader_loses_nothing(lab: Lab) -> None:
    first, second = controller_status(lab.state, lab.plan)
    assert first.alive and second.alive
    leader = etcd_faults.leader(lab.state)
    survivor = admin(lab, second.url)
    assert set(agent_controllers(lab, survivor).values()) == {first.agent_url}
    network = survivor.list("networks", name="priv")[0]["id"]
    stop = threading.Event()
    writers = [Writer(lab, c.url, network, stop, WRITES) for c in (first, second)]
    ping_cmd = ["ping", "-n", "-i", "0.05", "-c", str(KILL_PINGS), "-W", "1"]
    try:
        with (
            lab.background("a", *ping_cmd, lab.vm_ip("b")) as ping,
            lab.background("a", *ping_cmd, lab.vm_ip("pub")) as ping_pub,
        ):
            for writer in writers:
                writer.start()
            time.sleep(2.0)
            os.kill(lab.state.pids()[first.name], signal.SIGKILL)
            etcd_faults.kill_member(lab.state, leader)
            killed, killed_at = time.monotonic(), time.time()
            acked_at_kill = [len(w.acknowledged) for w in writers]
            lab.boot("late", ["priv"], "r1-h1")  # its port: through the survivor
            late = f"{lab.vm_ip('late')}/32"
            wait_until(
                lambda: all(lab.has_route(n, late) for n in ("r2-h1", "gw1")),
                timeout=CONVERGE_S - (time.monotonic() - killed),
                what=f"{late} on the peer host and the gateway",
            )
            route_s = time.monotonic() - killed
            wait_until(
                lambda: set(agent_controllers(lab, survivor).values()) == {second.agent_url},
                timeout=max(0.1, CONVERGE_S - (time.monotonic() - killed)),
                what="every agent reporting through the surviving controller",
            )
            moved_s = time.monotonic() - killed
            outputs = [p.finish(timeout=KILL_PINGS * 0.05 + 10) for p in (ping, ping_pub)]
        stop.set()
        for writer in writers:
            writer.join(10)
        new_leader = etcd_faults.leader(lab.state)
    finally:
        stop.set()
        # The next test starts from a whole lab again.
        etcd_faults.restart_member(lab.state, leader)
        etcd_faults.wait_healthy(lab.state)
        processes.start_server(lab.state, lab.plan, 0)
    counts = [pings(o) for o in outputs]
    resumed = {n: watch_resumed_at(lab, n) - killed_at for n in AGENTS}
    with survivor:
        ports = survivor.list("ports")
    acked = [len(w.acknowledged) for w in writers]
    print(
        f"\netcd leader m{leader} and {first.name} killed; m{new_leader} leads;"
        f" late VM's /32 on the peer and gateway {route_s:.2f} s, every agent on the survivor"
        f" {moved_s:.2f} s, watches resumed after {max(resumed.values()):.3f} s at most;"
        f" pings a->b, a->pub {', '.join(f'{r}/{s}' for s, r in counts)};"
        f" acknowledged creates {acked[0]} + {acked[1]} ({acked_at_kill[0]} + {acked_at_kill[1]}"
        f" before the kill), refused {len(writers[0].errors)} + {len(writers[1].errors)} (503)"
    )
    for (sent, received), output in zip(counts, outputs, strict=True):
        assert sent == KILL_PINGS and received == sent, output
    # The clients were creating through both controllers when they died, and the
    # survivor's went on acknowledging after the kill (else nothing was under test).
    assert acked_at_kill[0] > 0 and acked_at_kill[1] > 0, acked_at_kill
    assert writers[0].unreachable > 0, "no create was in flight to the killed controller"
    assert acked[1] > acked_at_kill[1], "no create acknowledged by the survivor after the kill"
    for writer in writers:
        refused_only_503(writer.errors)
    assert route_s < CONVERGE_S and moved_s < CONVERGE_S, (route_s, moved_s)
    assert new_leader != leader
    acknowledged = set(writers[0].acknowledged + writers[1].acknowledged)
    assert acknowledged <= {p["id"] for p in ports}, "acknowledged creates lost"
    addresses = Counter(f["ip_address"] for p in ports for f in p["fixed_ips"])
    assert not [a for a, n in addresses.items() if n > 1], "an address handed out twice"
    assert max(resumed.values()) < CONVERGE_S, resumed


def heartbeats(lab: Lab) -> dict[str, float]:
    """Each agent's last heartbeat (epoch seconds), from whichever controller it reports
    to: whether an agent is up is the same on every controller (its etcd lease), but
    ``heartbeat_at`` is that of the last report each one received, and up alone would
    not tell that the agents report again (etcd restarts every lease's TTL when it is back)
    (docs/controller.md, Liveness)."""
    latest: dict[str, float] = {}
    for url in lab.plan.api_urls():
        try:
            with FabricClient(url, timeout=3, credentials=admin_credentials(lab.name)) as api:
                records = api.list_hosts() + api.list_gateways()
        except (ApiError, ControllerUnavailable):
            continue  # a controller a fault took away
        for r in records:
            beat = datetime.fromisoformat(r["heartbeat_at"]).timestamp() if r["heartbeat_at"] else 0
            latest[r["name"]] = max(beat, latest.get(r["name"], 0.0))
    return latest


def writes(api: FabricClient, network: str, port: str) -> list[Callable[[], object]]:
    """A create, an update and a delete: each a write the store must refuse while down."""
    return [
        lambda: api.create_port(network_id=network, name="while-down"),
        lambda: api.update("networks", network, {"description": "while down"}),
        lambda: api.delete("ports", port),
    ]


def test_the_dataplane_outlives_30s_without_etcd_and_everything_resumes(lab: Lab) -> None:
    apis = [admin(lab, url, timeout=10) for url in lab.plan.api_urls()]
    assert len(apis) == 2
    network = apis[0].list("networks", name="priv")[0]["id"]
    spare = apis[0].create_port(network_id=network, name="spare")["id"]  # to try to delete
    attempts = [w for api in apis for w in writes(api, network, spare)]
    client = client_endpoint(lab.plan)
    routes = {"r1-h1": lab.vm_ip("b"), "r2-h1": lab.vm_ip("a")}
    count = str(int((DOWN_S + 4) / DOWN_PING_S))
    ping = ["ping", "-n", "-i", str(DOWN_PING_S), "-c", count, "-W", "1"]
    answers: list[float] = []
    tried: set[int] = set()
    with (
        lab.background("a", *ping, lab.vm_ip("b")) as east_west,
        lab.background(client.name, *ping, lab.vm_ip("pub")) as inbound,
        lab.background("a", *ping, client.address) as outbound,
    ):
        time.sleep(1.0)
        with etcd_faults.etcd_down(lab.state):
            down_at = time.monotonic()
            while time.monotonic() - down_at < DOWN_S:
                # Each kind of write through each controller in turn.
                which = len(answers) % len(attempts)
                asked = time.monotonic()
                with pytest.raises(ApiError) as refused:
                    attempts[which]()
                answers.append(time.monotonic() - asked)
                tried.add(which)
                assert refused.value.status == 503, refused.value
                assert refused.value.type == "ServiceUnavailable", refused.value
                assert all(lab.has_route(h, f"{ip}/32") for h, ip in routes.items())
                time.sleep(2.0)
            restarting = time.monotonic()
        back, back_at = time.monotonic(), time.time()
        # While the pings still run: the first creates after etcd is back, one per controller.
        lab.boot("after", ["priv"], "r1-h1")
        booted = time.monotonic() - back
        for api in apis:
            api.create_port(network_id=network, name="after-down")
        after = f"{lab.vm_ip('after')}/32"
        wait_until(lambda: lab.has_route("r2-h1", after), 10, f"{after} on the peer host")
        routed_s = time.monotonic() - back
        wait_until(
            lambda: min(heartbeats(lab).values()) > back_at, 15, "every agent reporting again"
        )
        reported_s = time.monotonic() - back
        outputs = [p.finish(timeout=DOWN_S + 15) for p in (east_west, inbound, outbound)]
    counts = [pings(o) for o in outputs]
    print(
        f"\netcd down {DOWN_S:.0f} s: {len(answers)} writes refused (503) in"
        f" {max(answers):.3f} s at most; pings a->b, client->pub, a->client"
        f" {', '.join(f'{r}/{s}' for s, r in counts)}; etcd healthy {back - restarting:.2f} s"
        f" after its restart; then a new VM booted {booted:.2f} s, routed on its peer"
        f" {routed_s:.2f} s, every agent reported {reported_s:.2f} s"
    )
    assert max(answers) < ANSWER_S, answers
    assert tried == set(range(len(attempts))), tried
    with apis[0] as api:
        assert spare in {p["id"] for p in api.list("ports")}
    apis[1].close()
    for (sent, received), output in zip(counts, outputs, strict=True):
        assert sent == int(count) and received == sent, output
    for node in AGENTS:
        assert_no_resync(lab, node)
