"""Networks: create, update, and delete (with their subnets, once no port is left).

A network here is not an L2 segment: every address is routed as a /32
(/128). ``router:external=True`` makes its subnets public (announced
upstream by the gateway); otherwise they are private and source-NATed at
the gateway. ``provider:*`` attributes are accepted and stored.
"""

from __future__ import annotations

from typing import Any

from l3fabric.ipam import Allocator, allocation_guard
from l3fabric.keys import neutron_key
from l3fabric.model.neutron import NetworkBody
from l3fabric.service.common import JSON, Collection, Context, Resource, standard_attrs, validate
from l3fabric.service.errors import conflict
from l3fabric.service.security_groups import SecurityGroups
from l3fabric.service.subnets import Subnets
from l3fabric.store import Create, Delete, KeyValue, Op, Store


class Networks(Resource):
    collection = "networks"
    singular = "network"
    plural = "networks"
    not_found_type = "NetworkNotFound"
    label = "Network"
    model = NetworkBody

    def __init__(
        self,
        store: Store,
        ipam: Allocator,
        *,
        security_groups: SecurityGroups,
        subnets: Subnets,
        ports: Collection,
    ) -> None:
        super().__init__(store)
        self.ipam = ipam
        self.security_groups = security_groups
        self.subnets = subnets
        self.ports = ports

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(NetworkBody, data, create=True)
        value = {
            **standard_attrs(body.api_attrs(), ctx),
            **body.model_dump(by_alias=True, exclude={"project_id", "tenant_id"}),
            "status": "ACTIVE",
            "subnets": [],
        }
        self.security_groups.ensure_default(value["project_id"])
        self.store.txn([Create(self.key(value["id"]), value)])
        return value

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        def plan(kv: KeyValue) -> list[Op]:
            # Read before looking for ports: a port created after this fails the txn.
            guard = allocation_guard(self.store, object_id, drop=True)
            if self.ports.list(ctx, {"network_id": [object_id]}):
                raise conflict(
                    "NetworkInUse",
                    f"Unable to complete operation on network {object_id}."
                    " There are one or more ports still in use on the network.",
                )
            for subnet_id in kv.value["subnets"]:
                self.subnets.ensure_unused(subnet_id)
            # A subnet came or went meanwhile: the network's mod_revision moved.
            return [guard, *(Delete(neutron_key("subnets", s)) for s in kv.value["subnets"])]

        kv = self.remove(object_id, if_match, plan)
        for subnet_id in kv.value["subnets"]:
            self.ipam.forget(subnet_id)
