"""An anycast group in a running lab: its member VMs, their services, the group in the API.

What the anycast tests, ``lab demo`` and ``bench anycast`` set up alike: a
``/v1/anycast`` group on a subnet, member VMs booted on given hosts holding
the address on their loopback (``lab boot --anycast``), the member service
running in each (``anycast_traffic.MemberProcess``), and the group's
membership. ``close`` kills the services; the VMs go with the lab.
"""

from __future__ import annotations

import time
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.dataplane.nexthops import ResilientParams
from l3fabric.lab import anycast_traffic as traffic
from l3fabric.lab import boot
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState

# The health check the lab's demo, tests and benchmark give their groups: a
# TCP connect to the member service's health port twice a second, two
# failures to go, two successes to come back.
LAB_CHECK: dict[str, Any] = {
    "type": "tcp",
    "port": traffic.HEALTH_PORT,
    "interval_s": 0.5,
    "timeout_s": 0.25,
    "rise": 2,
    "fall": 2,
}


def member_failover_bound(check: dict[str, Any]) -> float:
    """The issue's bound for a member failure: ``interval_s x fall + 1 s``."""
    return float(check["interval_s"]) * int(check["fall"]) + 1.0


class AnycastGroup:
    """Group ``name`` holding ``address`` on ``subnet_id``, members placed as ``placement``.

    ``address`` None: IPAM picks one (``self.address``).

    ``placement``: member VM name -> compute host. ``extra`` addresses are
    held by every member VM too (for other groups, e.g. one an address moves
    in). Members are booted on ``network`` and all put in the group.
    """

    def __init__(
        self,
        plan: Plan,
        name: str,
        subnet_id: str,
        network: str,
        address: str | None,
        placement: dict[str, str],
        health_check: dict[str, Any] | None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.plan = plan
        self.placement = dict(placement)
        self.services: dict[str, traffic.MemberProcess] = {}
        self.ports: dict[str, str] = {}
        self.namespaces: dict[str, str] = {}
        state = LabState(plan.lab)
        with self.api() as api:
            self.group = api.create_anycast(
                name=name, subnet_id=subnet_id, address=address, health_check=health_check
            )
        self.address: str = self.group["address"]
        for vm, host in placement.items():
            record = boot.boot(plan, state, vm, [network], host, [], [self.address, *extra])
            self.ports[vm] = record["ports"][0]["id"]
            self.namespaces[vm] = record["namespace"]
        try:
            for vm in placement:
                self.start(vm)
            self.set_members(list(placement))
        except BaseException:
            self.close()
            raise

    @property
    def id(self) -> str:
        return self.group["id"]

    def api(self) -> FabricClient:
        return lab_client(self.plan)

    def on(self, host: str) -> list[str]:
        """The members placed on ``host``."""
        return [vm for vm, h in self.placement.items() if h == host]

    def start(self, member: str) -> None:
        """Start ``member``'s service unless it runs."""
        service = self.services.get(member)
        if service is None or not service.alive:
            self.services[member] = traffic.MemberProcess(self.namespaces[member], member)

    def kill(self, member: str) -> None:
        self.services[member].kill()

    def set_members(self, members: list[str]) -> None:
        """The group's whole membership, in one API call."""
        with self.api() as api:
            api.update_anycast(self.id, members=[self.ports[m] for m in members])

    def reaches_all(self, client_ns: str, connections: int = 60) -> bool:
        """Whether ``connections`` new connections from ``client_ns`` reached every member."""
        got = traffic.spread(client_ns, self.address, connections=connections, timeout=1.0)
        return got.failed == 0 and set(got.counts) == set(self.placement)

    def wait_all_answer(self, client_ns: str, timeout: float) -> float:
        """Wait until new connections from ``client_ns`` reach every member; the seconds it took.

        A member that came back (service restarted, host reconnected) gets
        buckets of the resilient groups on its host and on the gateway only
        where they were idle for the groups' ``idle_timer`` (or after the
        ``unbalanced_timer``): that is what keeps the other members' flows in
        place. So after a miss the client stays quiet for that long before it
        looks again, instead of keeping every bucket busy with its probes.
        """
        started = time.monotonic()
        quiet = ResilientParams().idle_timer + 1.0
        while not self.reaches_all(client_ns):
            if time.monotonic() - started + quiet > timeout:
                raise TimeoutError(
                    f"anycast {self.address}: not every member answers after {timeout:.0f} s"
                )
            time.sleep(quiet)
        return time.monotonic() - started

    def close(self) -> None:
        for service in self.services.values():
            service.kill()
