"""The metadata l3fabric answers itself when no Nova metadata API is
configured (the lab): Nova's OpenStack and EC2 formats, from the VM's port.

The instance is the port's ``device_id``; its hostname the port's
``dns_name``, else the ``device_id`` when it is a valid host name (the lab's
VM name), else Neutron's ``host-A-B-C-D``. There is no user data, no keys:
those paths are 404, as in Nova for an instance without them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

JSON = dict[str, Any]

# Nova's answer to GET /openstack: the dated versions and "latest".
OPENSTACK_VERSIONS = (
    "2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
    "2016-10-06", "2017-02-22", "2018-08-27", "latest",
)  # fmt: skip
# Nova's answer to GET /: the EC2 versions.
EC2_VERSIONS = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
    "2008-02-01", "2008-09-01", "2009-04-04", "latest",
)  # fmt: skip
AVAILABILITY_ZONE = "nova"
_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


class Answer:
    """A response: status, content type and body."""

    def __init__(self, status: int, body: str | bytes, content_type: str = "text/plain") -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type


NOT_FOUND = Answer(404, "404 Not Found\n\nThe resource could not be found.\n")


def hostname(port: JSON) -> str:
    if port.get("dns_name"):
        return str(port["dns_name"])
    device = str(port.get("device_id") or "")
    if _LABEL.match(device):
        return device
    first = next(iter(port.get("fixed_ips") or ()), None)
    if first is None:
        return "host"
    return "host-" + re.sub(r"[.:]", "-", first["ip_address"])


def _address(port: JSON, version: int) -> str:
    for f in port.get("fixed_ips") or ():
        if ipaddress.ip_address(f["ip_address"]).version == version:
            return str(f["ip_address"])
    return ""


def meta_data(port: JSON) -> JSON:
    """Nova's meta_data.json for the port's instance."""
    name = hostname(port)
    return {
        "uuid": port.get("device_id", ""),
        "name": port.get("device_id", ""),
        "hostname": name,
        "launch_index": 0,
        "availability_zone": AVAILABILITY_ZONE,
        "project_id": port.get("project_id", ""),
        "meta": {},
        "public_keys": {},
        "keys": [],
        "devices": [],
    }


def ec2_meta_data(port: JSON, public: bool) -> dict[str, str]:
    """The EC2 meta-data keys we can answer (``public``: the port's network is external)."""
    name = hostname(port)
    local4 = _address(port, 4)
    found = {
        "instance-id": str(port.get("device_id", "")),
        "hostname": name,
        "local-hostname": name,
        "public-hostname": name,
        "local-ipv4": local4,
        "public-ipv4": local4 if public else "",
        "ami-launch-index": "0",
        "placement/availability-zone": AVAILABILITY_ZONE,
    }
    return {k: v for k, v in found.items() if v}


def answer(path: str, port: JSON, public: bool = False) -> Answer:
    """The response to GET ``path`` from the VM of ``port``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if not parts:
        return Answer(200, "\n".join(EC2_VERSIONS))
    if parts[0] == "openstack":
        return _openstack(parts[1:], port)
    if parts[0] in EC2_VERSIONS:
        return _ec2(parts[1:], port, public)
    return NOT_FOUND


def _openstack(parts: list[str], port: JSON) -> Answer:
    if not parts:
        return Answer(200, "\n".join(OPENSTACK_VERSIONS))
    if parts[0] not in OPENSTACK_VERSIONS:
        return NOT_FOUND
    if len(parts) == 1:
        return Answer(200, "meta_data.json")
    if parts[1:] == ["meta_data.json"]:
        return Answer(200, json.dumps(meta_data(port)), "application/json")
    return NOT_FOUND


def _ec2(parts: list[str], port: JSON, public: bool) -> Answer:
    if not parts:
        return Answer(200, "meta-data/")
    if parts[0] != "meta-data":
        return NOT_FOUND  # user-data: none
    keys = ec2_meta_data(port, public)
    key = "/".join(parts[1:])
    if not key:
        top = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in keys})
        return Answer(200, "\n".join(top))
    if key in keys:
        return Answer(200, keys[key])
    below = sorted(k[len(key) + 1 :] for k in keys if k.startswith(key + "/"))
    return Answer(200, "\n".join(below)) if below else NOT_FOUND
