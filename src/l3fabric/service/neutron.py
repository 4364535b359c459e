"""The Neutron resource services over one store, and one allocator for them:
the one place that wires each service to the collaborators it uses."""

from __future__ import annotations

from functools import partial

from l3fabric.ipam import Allocator
from l3fabric.service.anycast import AnycastGroups, ensure_not_member
from l3fabric.service.common import Resource
from l3fabric.service.errors import not_found
from l3fabric.service.floatingips import FloatingIps
from l3fabric.service.networks import Networks
from l3fabric.service.port_bindings import PortBindings
from l3fabric.service.ports import Ports
from l3fabric.service.quotas import Quotas
from l3fabric.service.routers import Routers
from l3fabric.service.security_groups import SecurityGroupRules, SecurityGroups
from l3fabric.service.subnets import Subnets
from l3fabric.store import Store


class NeutronService:
    """Networks, subnets, ports, security groups and rules, routers, floating IPs,
    and the anycast groups (``/v1/anycast``) that share their IPAM.

    Stateless over ``store`` apart from the allocator's hints, so several
    services (in several processes) may share one store.
    """

    def __init__(self, store: Store, quota_defaults: dict[str, int] | None = None) -> None:
        self.store = store
        self.ipam = Allocator(store)
        self.quotas = Quotas(store, quota_defaults)
        # Each service gets what it uses; a service that only reads a
        # collection gets its reader, so no two services need each other.
        networks, ports = Networks.reader(store), Ports.reader(store)
        self.security_groups = SecurityGroups(store, ports=ports)
        self.security_group_rules = SecurityGroupRules(store, security_groups=self.security_groups)
        self.subnets = Subnets(store, self.ipam, networks=networks)
        self.networks = Networks(
            store,
            self.ipam,
            security_groups=self.security_groups,
            subnets=self.subnets,
            ports=ports,
        )
        self.ports = Ports(
            store,
            self.ipam,
            networks=self.networks,
            subnets=self.subnets,
            security_groups=self.security_groups,
            may_delete=partial(ensure_not_member, store),
        )
        self.floatingips = FloatingIps(
            store, networks=self.networks, subnets=self.subnets, ports=self.ports
        )
        self.port_bindings = PortBindings(store, self.ports)
        self.ports.deleted.append(self.floatingips.disassociate_port)
        self.routers = Routers(
            store, networks=self.networks, subnets=self.subnets, ports=self.ports
        )
        self.anycast = AnycastGroups(
            store, self.ipam, networks=self.networks, subnets=self.subnets, ports=self.ports
        )
        self.resources: dict[str, Resource] = {
            r.collection: r
            for r in (
                self.networks,
                self.subnets,
                self.ports,
                self.security_groups,
                self.security_group_rules,
                self.routers,
                self.floatingips,
            )
        }
        for resource in self.resources.values():
            resource.quota = self.quotas.check

    def resource(self, collection: str) -> Resource:
        """The service of a URL collection name; 404 for an unknown one."""
        try:
            return self.resources[collection]
        except KeyError:
            raise not_found(
                "HTTPNotFound", f"The resource {collection!r} could not be found."
            ) from None
