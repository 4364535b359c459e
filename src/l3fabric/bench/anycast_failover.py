"""``bench anycast`` part ``failover`` (a): how fast new connections leave a failed member or host.

A lab of its own (``bf<tag>``: one rack of two hosts without a ToR, a
gateway, one internet client), a public network and a ``/v1/anycast`` group
of three members (m1, m2 on r1-h1; m3 on r1-h2) with a TCP health check
(``interval_s`` 0.5, ``timeout_s`` 0.25, rise 2, fall 2). From the internet
client a sampler opens a new connection every 20 ms.

- member failure: SIGKILL a member's service (alternately m1 and m3); the
  time from the kill until the first good connection after the last one
  that failed or reached it (then 1 s of only good ones). Target: under
  ``interval_s x fall + 1 s``. The service is restarted and every member
  must answer again before the next try.
- host failure: the host's uplinks down (alternately r1-h1 and r1-h2, so
  neither BGP session's back-off grows); the same time for the host's
  members. Target: under 1 s. The links come up again after each try.
  The gateway notices at once: its end of the link loses carrier.
- silent host (``host_silent``): the host stops answering with its links up
  (``lab.faults.host_silenced``: nftables drops everything on its uplinks),
  as a host that hangs or loses power behind a switch does. Only BFD
  (100 ms x 3) tells; the same time, the same target.

Median and worst of ``tries`` (10) each. The lab is removed afterwards,
also after a failure or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable

from l3fabric.lab import anycast_traffic as traffic
from l3fabric.lab.anycast_group import LAB_CHECK, AnycastGroup, member_failover_bound
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.down import down
from l3fabric.lab.faults import host_silenced, set_uplinks
from l3fabric.lab.plan import Plan
from l3fabric.lab.topology import Api, Internet, Rack, Topology
from l3fabric.lab.up import up
from l3fabric.loopback import free_port

log = logging.getLogger(__name__)

ADDRESS = "203.0.113.80"
PUBLIC_CIDR = "203.0.113.0/25"
PLACEMENT = {"m1": "r1-h1", "m2": "r1-h1", "m3": "r1-h2"}
CHECK = LAB_CHECK
RECOVER_S = 30.0  # every member reachable again after a try (BGP back-off included)
GIVE_UP_S = 10.0  # a try that has not settled by then failed


class BenchError(RuntimeError):
    pass


def _summary(name: str, times: list[float]) -> dict[str, float]:
    return {
        f"{name}_failover_s_median": round(statistics.median(times), 3),
        f"{name}_failover_s_max": round(max(times), 3),
    }


class Failover:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.client_ns = plan.by_role("client")[0].namespace
        with lab_client(plan) as api:
            net = api.create_network(name="public", **{"router:external": True})
            subnet = api.create_subnet(network_id=net["id"], cidr=PUBLIC_CIDR, ip_version=4)
        self.group = AnycastGroup(plan, "bench", subnet["id"], "public", ADDRESS, PLACEMENT, CHECK)

    def ready(self) -> None:
        try:
            self.group.wait_all_answer(self.client_ns, RECOVER_S)
        except TimeoutError as exc:
            raise BenchError(str(exc)) from None

    def _measure(self, change: Callable[[], object], gone: set[str], what: str) -> float:
        seen = traffic.measure_change(
            self.client_ns, ADDRESS, change, lambda m: m is not None and m not in gone, GIVE_UP_S
        )
        if seen.settled is None:
            raise BenchError(f"{what}: new connections still failing after {GIVE_UP_S:.0f} s")
        log.info("%s: %.3f s", what, seen.settled)
        return seen.settled

    def member(self, victim: str) -> float:
        try:
            return self._measure(lambda: self.group.kill(victim), {victim}, f"{victim} killed")
        finally:
            self.group.start(victim)

    def host(self, host: str) -> float:
        try:
            return self._measure(
                lambda: set_uplinks(self.plan, host, up=False),
                set(self.group.on(host)),
                f"{host} cut off",
            )
        finally:
            set_uplinks(self.plan, host, up=True)

    def silent_host(self, host: str) -> float:
        with contextlib.ExitStack() as stack:
            return self._measure(
                lambda: stack.enter_context(host_silenced(self.plan, host)),
                set(self.group.on(host)),
                f"{host} silent",
            )


def run(tries: int, tag: str) -> dict[str, float | int | str]:
    """Part (a): member and host failover, median and worst of ``tries`` each."""
    name = f"bf{tag}"
    topo = Topology(
        name=name,
        racks=[Rack(name="r1", hosts=2, tor=False)],
        internet=Internet(clients=1),
        api=Api(port=free_port()),
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        stack.callback(down, name)
        plan = up(topo, step=lambda text: log.info("lab %s: %s", name, text))
        bench = Failover(plan)
        stack.callback(bench.group.close)
        bench.ready()
        members: list[float] = []
        for i in range(tries):
            members.append(bench.member(("m1", "m3")[i % 2]))
            bench.ready()
        hosts: list[float] = []
        for i in range(tries):
            hosts.append(bench.host(("r1-h1", "r1-h2")[i % 2]))
            bench.ready()
        silent: list[float] = []
        for i in range(tries):
            silent.append(bench.silent_host(("r1-h1", "r1-h2")[i % 2]))
            bench.ready()
    return {
        **_summary("member", members),
        **_summary("host", hosts),
        **_summary("host_silent", silent),
        "failover_tries": tries,
        **{f"check_{k}": v for k, v in CHECK.items() if k != "port"},
        "member_failover_target_s": member_failover_bound(CHECK),
        "failover_s": round(time.monotonic() - started, 1),
    }
