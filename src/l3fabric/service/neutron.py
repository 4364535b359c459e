"""The Neutron resource services over one store, and one allocator for them."""

from __future__ import annotations

from l3fabric.api.errors import not_found
from l3fabric.ipam import Allocator
from l3fabric.service.common import Resource
from l3fabric.service.floatingips import FloatingIps
from l3fabric.service.networks import Networks
from l3fabric.service.ports import Ports
from l3fabric.service.routers import Routers
from l3fabric.service.security_groups import SecurityGroupRules, SecurityGroups
from l3fabric.service.subnets import Subnets
from l3fabric.store import Store


class NeutronService:
    """Networks, subnets, ports, security groups and rules, routers, floating IPs.

    Stateless over ``store`` apart from the allocator's hints, so several
    services (in several processes) may share one store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ipam = Allocator(store)
        self.networks = Networks(self)
        self.subnets = Subnets(self)
        self.ports = Ports(self)
        self.security_groups = SecurityGroups(self)
        self.security_group_rules = SecurityGroupRules(self)
        self.routers = Routers(self)
        self.floatingips = FloatingIps(self)
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

    def resource(self, collection: str) -> Resource:
        """The service of a URL collection name; 404 for an unknown one."""
        try:
            return self.resources[collection]
        except KeyError:
            raise not_found(
                "HTTPNotFound", f"The resource {collection!r} could not be found."
            ) from None
