"""Why a request was refused, without any transport.

The services raise these; the API layer (``l3fabric.api.errors``) is the one
place that turns them into HTTP statuses and Neutron error bodies. Each error
carries Neutron's type name (e.g. ``PortNotFound``), which clients show and
match on, and the message the user reads; the class says the kind of refusal.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refused request: Neutron's type name, the user's message, optional detail."""

    def __init__(self, type_: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.detail = detail


class BadRequest(ServiceError):
    """The request itself is wrong: a malformed body, an invalid value."""


class Forbidden(ServiceError):
    """The caller is known but may not do this: an agent outside its own state, or
    Neutron's policy for what the caller sees but may not change."""


class NotFound(ServiceError):
    """What the request names does not exist."""


class Conflict(ServiceError):
    """The request is valid but clashes with what is stored (in use, taken, contended)."""


class PreconditionFailed(ServiceError):
    """A condition the client set (If-Match) does not hold."""


class Gone(ServiceError):
    """What the client holds is too old to go on from (a compacted watch revision)."""


class Unavailable(ServiceError):
    """The store cannot be reached just now (etcd down or without quorum): retry later."""


def bad_request(message: str, type_: str = "InvalidInput") -> BadRequest:
    return BadRequest(type_, message)


def not_allowed(rule: str) -> Forbidden:
    """Neutron's refusal by policy, e.g. ``not_allowed("update_network")``."""
    return Forbidden("PolicyNotAuthorized", f"rule:{rule} is disallowed by policy")


def not_found(type_: str, message: str) -> NotFound:
    return NotFound(type_, message)


def conflict(type_: str, message: str) -> Conflict:
    return Conflict(type_, message)


def forbidden(message: str, type_: str = "HTTPForbidden") -> Forbidden:
    return Forbidden(type_, message)
