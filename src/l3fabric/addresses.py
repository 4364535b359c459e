"""Strict parsing of IP addresses and prefixes: one canonical text form, no zone IDs.

Everything that reaches BIRD or nftables is an address or prefix from here.
Python's ``ipaddress`` accepts IPv6 zone IDs (``fe80::1%<anything>``, any
text but ``%`` and ``/``) and keeps them verbatim in ``str()``: an API that
stored such a value let a client write its own lines into every agent's
config, and ``2001:db8::5%x`` is a different string, so a different IPAM key,
than ``2001:db8::5``. So the text is first limited to the characters an
address can have (hex digits, ``.``, ``:``, ``/``), then parsed; the
canonical form is ``str()`` of the parsed object.

- ``parse_address`` / ``parse_network``: text -> typed ``ipaddress`` objects.
- ``*_text``: the same, returning the canonical text (what the API stores).
- Pydantic types (``IpAddressText``, ...): request fields that store
  canonical text.
- ``require_address`` / ``require_network``: what renderers call on their
  inputs: a typed object without a zone ID, or TypeError/ValueError.
- ``is_canonical_address`` / ``is_canonical_network``: cheap checks of
  stored text (agents skip records that fail them, see ``records``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated

from pydantic import AfterValidator

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Everything an address or prefix in any accepted notation consists of.
_CHARS = re.compile(r"[0-9A-Fa-f.:/]+")
# The longest text worth parsing: a full IPv6 address with an embedded IPv4
# tail and a netmask is under 100 characters.
_MAX_LEN = 100
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _checked_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if "%" in text:
        raise ValueError(f"{what} {text!r}: zone IDs (%...) are not allowed")
    if len(text) > _MAX_LEN or not _CHARS.fullmatch(text):
        raise ValueError(
            f"{what} {text!r} has characters no IP address has"
            " (only hex digits, '.', ':' and '/'; no spaces)"
        )
    return text


def _check_version(value: Address | Network, version: int | None, what: str, text: str) -> None:
    if version is not None and value.version != version:
        raise ValueError(f"{what} {text!r} is not an IPv{version} {what}")


def parse_address(text: object, version: int | None = None, what: str = "IP address") -> Address:
    """``text`` as an address (of IP ``version`` if given); ValueError otherwise."""
    checked = _checked_text(text, what)
    try:
        address = ipaddress.ip_address(checked)
    except ValueError:
        raise ValueError(f"{checked!r} is not a valid {what}") from None
    _check_version(address, version, what, checked)
    return address


def parse_network(
    text: object, strict: bool = True, version: int | None = None, what: str = "IP prefix"
) -> Network:
    """``text`` as a network; ``strict``: host bits are an error, else they are dropped.

    Text without ``/`` is a host prefix (/32, /128), as ``ipaddress`` reads it.
    """
    checked = _checked_text(text, what)
    try:
        network = ipaddress.ip_network(checked, strict=strict)
    except ValueError as exc:
        raise ValueError(f"{checked!r} is not a valid {what}: {exc}") from None
    _check_version(network, version, what, checked)
    return network


def address_text(text: object) -> str:
    """The canonical text of an address (``2001:DB8::01`` -> ``2001:db8::1``)."""
    return str(parse_address(text))


def ipv4_address_text(text: object) -> str:
    return str(parse_address(text, version=4, what="IPv4 address"))


def network_text(text: object) -> str:
    """The canonical text of a network given without host bits."""
    return str(parse_network(text, strict=True))


def prefix_text(text: object) -> str:
    """The canonical text of a prefix; host bits are dropped (``10.0.0.5/8`` -> ``10.0.0.0/8``)."""
    return str(parse_network(text, strict=False))


def address_or_network_text(text: object) -> str:
    """An address, or (with ``/``) a network without host bits, in canonical text."""
    what = "IP address or CIDR"
    if isinstance(text, str) and "/" in text:
        return str(parse_network(text, strict=True, what=what))
    return str(parse_address(text, what=what))


def peer_address_text(text: object) -> str:
    """The canonical text of an address a BGP session can run on (a neighbour or a local end).

    BIRD refuses ``neighbor ::`` and a link-local neighbour without an
    interface; multicast and broadcast addresses parse but never make a
    session. One such registration would break the config of every BIRD that
    peers with it, so the API refuses them.
    """
    address = parse_address(text)
    for bad, what in (
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address == _BROADCAST, "broadcast"),
    ):
        if bad:
            raise ValueError(f"{address} is a {what} address; BGP needs a unicast, global one")
    return str(address)


IpAddressText = Annotated[str, AfterValidator(address_text)]
PeerAddressText = Annotated[str, AfterValidator(peer_address_text)]
Ipv4AddressText = Annotated[str, AfterValidator(ipv4_address_text)]
IpNetworkText = Annotated[str, AfterValidator(network_text)]
IpPrefixText = Annotated[str, AfterValidator(prefix_text)]
IpAddressOrNetworkText = Annotated[str, AfterValidator(address_or_network_text)]


# Renderers' guards ----------------------------------------------------------------


def require_address(value: object, what: str, version: int | None = None) -> Address:
    """``value`` itself if it is a typed address without a zone ID (of ``version``)."""
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise TypeError(f"{what} must be an ipaddress address, got {type(value).__name__}")
    if getattr(value, "scope_id", None) is not None:
        raise ValueError(f"{what} {value}: zone IDs are not allowed")
    if version is not None and value.version != version:
        raise ValueError(f"{what} {value} is not an IPv{version} address")
    return value


def require_network(value: object, what: str) -> Network:
    """``value`` itself if it is a typed network without a zone ID."""
    if not isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        raise TypeError(f"{what} must be an ipaddress network, got {type(value).__name__}")
    if getattr(value.network_address, "scope_id", None) is not None:
        raise ValueError(f"{what} {value}: zone IDs are not allowed")
    return value


# Cheap checks of stored text --------------------------------------------------------


def _canonical_packed(text: object) -> bytes | None:
    """The packed form of ``text`` if it is an address in canonical form, else None.

    By the C parser (~1 us, where ``ipaddress`` takes ~20): inet_pton takes
    IPv4 only as four decimal parts without leading zeros or spaces, and an
    IPv6 text is canonical when inet_ntop writes it back unchanged. glibc
    writes IPv4-mapped addresses with a dotted tail where Python does not,
    so those (rare) take the slow path.
    """
    if not isinstance(text, str):
        return None
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except OSError:
        return None
    if family == socket.AF_INET6 and ("." in text or socket.inet_ntop(family, packed) != text):
        try:
            return packed if address_text(text) == text else None
        except ValueError:
            return None
    return packed


def is_canonical_address(text: object) -> bool:
    """Whether ``text`` is an address in canonical form (what the API stores)."""
    return _canonical_packed(text) is not None


def host_prefix_packed(prefix: str) -> tuple[int, bytes]:
    """The address family and packed address of a /32 or /128 (``10.1.0.5/32``).

    The one fast parse of host prefixes (inet_pton, no ipaddress objects:
    ~1 us where ``ipaddress`` takes ~15): a host parses 10,000 of them a
    pass (its routes, its announcements). ValueError for anything else.
    """
    address, _, length = prefix.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if length != ("128" if family == socket.AF_INET6 else "32"):
        raise ValueError(f"{prefix!r} is not a /32 or /128")
    try:
        return family, socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"{prefix!r} is not a /32 or /128") from None


def host_prefix_version(prefix: str) -> int | None:
    """4 or 6 if ``prefix`` is a /32 or /128 in canonical form (``10.1.0.5/32``), else None.

    glibc writes IPv4-mapped addresses as ``::ffff:1.2.3.4``, Python as
    ``::ffff:102:304``: both are taken.
    """
    try:
        family, packed = host_prefix_packed(prefix)
    except ValueError:
        return None
    address = prefix.partition("/")[0]
    if socket.inet_ntop(family, packed) != address and str(ipaddress.ip_address(packed)) != address:
        return None
    return 4 if family == socket.AF_INET else 6


def host_network(prefix: str) -> Network:
    """``ipaddress.ip_network(prefix)``, ~5x cheaper for a /32 or /128.

    A host's endpoint routes are such prefixes: 10,000 of them parsed by
    ``ipaddress`` cost ~0.1 s of a first pass. ValueError as ``ip_network``.
    """
    try:
        family, packed = host_prefix_packed(prefix)
    except ValueError:
        return ipaddress.ip_network(prefix)
    value = int.from_bytes(packed, "big")
    if family == socket.AF_INET:
        return ipaddress.IPv4Network((value, 32))
    return ipaddress.IPv6Network((value, 128))


def is_canonical_network(text: object) -> bool:
    """Whether ``text`` is a network (no host bits) in canonical form."""
    if not isinstance(text, str):
        return False
    address, _, length = text.partition("/")
    packed = _canonical_packed(address)
    if packed is None or not length.isascii() or not length.isdigit():
        return False
    bits = len(packed) * 8
    if str(int(length)) != length or int(length) > bits:
        return False  # "08", "+8" or too long
    host_bits = bits - int(length)
    return int.from_bytes(packed, "big") & ((1 << host_bits) - 1) == 0
