"""The controller's semantics over the store, independent of HTTP.

``NeutronService(store)`` (/v2.0 and anycast) and ``FabricService(store)``
(``fabric``; the watch in ``watch``) are what the API calls and what
benchmarks and tools may call directly. Refusals are ``errors.ServiceError``;
the API maps them to HTTP (docs/controller.md).
"""

from l3fabric.service.common import DEFAULT_PROJECT, Context
from l3fabric.service.neutron import NeutronService

__all__ = ["DEFAULT_PROJECT", "Context", "NeutronService"]
