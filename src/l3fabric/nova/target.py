"""How the controller reaches Nova's API (``l3fabric server --nova-*``).

Configured like Neutron's ``[nova]`` section: either a compute endpoint with
a static token (``--nova-url`` and ``--nova-token-file``), or Keystone
credentials in an INI file's ``[nova]`` section (``--nova-config``:
``auth_url``, ``username``, ``password``, ``project_name``,
``user_domain_name``, ``project_domain_name``, optional ``region_name`` and
``endpoint_override``), with which keystoneauth1 gets and renews tokens and
finds Nova in the catalog.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from l3fabric.nova.events import NovaTarget

_REQUIRED = ("auth_url", "username", "password", "project_name")


class NovaConfigError(Exception):
    """The Nova options cannot work (a missing file, a missing setting)."""


def nova_target(url: str | None, token_file: str | None, config: str | None) -> NovaTarget | None:
    """The target of the options, or None when Nova is not configured."""
    if config:
        if token_file:
            raise NovaConfigError("--nova-config and --nova-token-file exclude each other")
        return _keystone(Path(config), url or "")
    if token_file and not url:
        raise NovaConfigError("--nova-token-file needs --nova-url")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise NovaConfigError(f"--nova-url {url!r}: expected http(s)://HOST:PORT/PATH")
    token = ""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise NovaConfigError(f"cannot read --nova-token-file: {exc}") from None
    return NovaTarget(url=url, token=token)


def _keystone(path: Path, url: str) -> NovaTarget:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        read = parser.read(path)
    except configparser.Error as exc:
        raise NovaConfigError(f"--nova-config {path}: {exc}") from None
    if not read or not parser.has_section("nova"):
        raise NovaConfigError(f"--nova-config {path}: no such file or no [nova] section")
    section = parser["nova"]
    missing = [k for k in _REQUIRED if not section.get(k)]
    if missing:
        raise NovaConfigError(f"--nova-config {path}: [nova] lacks {', '.join(missing)}")
    try:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3
    except ImportError:
        raise NovaConfigError(
            "--nova-config needs keystoneauth1 (pip install 'l3fabric[keystone]')"
        ) from None
    auth = v3.Password(
        auth_url=section["auth_url"],
        username=section["username"],
        password=section["password"],
        project_name=section["project_name"],
        user_domain_name=section.get("user_domain_name", "Default"),
        project_domain_name=section.get("project_domain_name", "Default"),
    )
    return NovaTarget(
        url=url or section.get("endpoint_override", ""),
        session=session.Session(auth=auth),
        region=section.get("region_name"),
    )
