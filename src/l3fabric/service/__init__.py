"""The controller's semantics over the store, independent of HTTP.

``NeutronService(store)`` is what the API calls and what benchmarks and
tools may call directly.
"""

from l3fabric.service.common import DEFAULT_PROJECT, Context
from l3fabric.service.neutron import NeutronService

__all__ = ["DEFAULT_PROJECT", "Context", "NeutronService"]
