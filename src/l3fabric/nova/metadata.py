"""The metadata service on each compute host: 169.254.169.254 port 80 for its VMs.

A VM's packets reach the host through its tap (its default route is via the
host's proxy ARP), and the host holds 169.254.169.254/32 on ``lo`` (BIRD
announces lo's addresses, but never link-local ones: routing/templates), so
they are delivered here. (Not a dummy link: not every kernel has the module.) The proxy identifies the VM by the connection's
source address and the tap it came in on: a fixed IP of a port bound to this
host, whose tap is where the host routes that address (anti-spoofing lets a
tap send only its own port's addresses, so the two agree for any packet
that got in). Anything else is 404, as Neutron's metadata agent answers.

With a Nova metadata API configured (``MetadataConfig.nova_host``) the
request goes there with the headers Nova checks, as Neutron's metadata agent
sends them: ``X-Instance-ID`` (the port's ``device_id``), ``X-Tenant-ID``
(its ``project_id``), ``X-Instance-ID-Signature`` (HMAC-SHA256 of the
instance id with ``metadata_proxy_shared_secret``, hex) and
``X-Forwarded-For`` (the VM's address). Without one, l3fabric answers from
the port itself (``metadata_local``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from l3fabric.dataplane.links import tap_name
from l3fabric.nova import metadata_local
from l3fabric.plain_http import PlainHTTPServer

log = logging.getLogger(__name__)

JSON = dict[str, Any]

METADATA_ADDRESS = "169.254.169.254"
METADATA_LINK = "lo"
NOVA_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
# Connections served at once (a thread each); more are closed at once, so
# VMs opening connections cannot run the agent out of threads.
MAX_CONNECTIONS = 64
# A VM sends at most this much to POST (Nova takes only the 256-byte password).
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class MetadataConfig:
    """Neutron's metadata agent options; no ``nova_host``: answer locally."""

    nova_host: str = ""
    nova_port: int = 8775
    nova_protocol: str = "http"
    shared_secret: str = ""
    address: str = METADATA_ADDRESS
    port: int = 80
    max_connections: int = MAX_CONNECTIONS


def signature(secret: str, instance_id: str) -> str:
    """Nova's X-Instance-ID-Signature: HMAC-SHA256(secret, instance id), hex."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def nova_headers(port: JSON, source: str, secret: str) -> dict[str, str]:
    """The headers Nova's metadata API identifies the instance by."""
    instance = str(port.get("device_id", ""))
    return {
        "X-Forwarded-For": source,
        "X-Instance-ID": instance,
        "X-Tenant-ID": str(port.get("project_id", "")),
        "X-Instance-ID-Signature": signature(secret, instance),
    }


def find_port(ports: list[JSON], source: str, tap: str | None) -> JSON | None:
    """The port bound here that owns ``source`` and whose tap is ``tap``."""
    try:
        address = str(ipaddress.ip_address(source.removeprefix("::ffff:")))
    except ValueError:
        return None
    for port in ports:
        if not port.get("device_id"):
            continue
        if any(f.get("ip_address") == address for f in port.get("fixed_ips") or ()):
            with contextlib.suppress(ValueError):
                if tap_name(port["id"]) == tap:
                    return port
    return None


class RouteLookup:
    """Which interface this host routes an address to (the kernel's answer)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute

        self._ipr = IPRoute()
        self._lock = threading.Lock()

    def interface(self, address: str) -> str | None:
        try:
            with self._lock:
                found = self._ipr.route("get", dst=address)
        except Exception as exc:  # no route: an address not ours
            log.debug("metadata: no route to %s: %s", address, exc)
            return None
        for msg in found:
            oif = msg.get_attr("RTA_OIF")
            if oif:
                with contextlib.suppress(OSError):
                    return socket.if_indextoname(oif)
        return None

    def close(self) -> None:
        self._ipr.close()


def ensure_address(address: str = METADATA_ADDRESS, link: str = METADATA_LINK) -> None:
    """Put ``address``/32 on ``link`` (idempotent)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=link)[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
        if address not in have:
            ipr.addr("add", index=index, address=address, prefixlen=32)


class _BoundedServer(PlainHTTPServer):
    """ThreadingHTTPServer with at most ``limit`` connections in service."""

    def __init__(self, address: tuple[str, int], handler: type, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("metadata: %d connections in service; closed one", self.limit)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetadataServer:
    """Serves the metadata of the VMs in ``ports()`` (this host's bound ports)
    on its own threads, until ``close``."""

    def __init__(
        self,
        config: MetadataConfig,
        ports: Callable[[], list[JSON]],
        public: Callable[[JSON], bool] = lambda port: False,
        routes: RouteLookup | None = None,
    ) -> None:
        self.config = config
        self.ports = ports
        self.public = public
        self.routes = routes or RouteLookup()
        self._nova = httpx.Client(timeout=NOVA_TIMEOUT_S) if config.nova_host else None
        self.httpd = _BoundedServer(
            (config.address, config.port), _handler(self), config.max_connections
        )
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metadata", daemon=True
        )

    def start(self) -> MetadataServer:
        self._thread.start()
        log.info("metadata: serving %s:%d", self.config.address, self.config.port)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.routes.close()
        if self._nova is not None:
            self._nova.close()

    def identify(self, source: str) -> JSON | None:
        return find_port(self.ports(), source, self.routes.interface(source))

    def respond(self, method: str, path: str, source: str, body: bytes) -> metadata_local.Answer:
        port = self.identify(source)
        if port is None:
            log.info("metadata: %s from %s: no port bound here has that address", path, source)
            return metadata_local.NOT_FOUND
        if self._nova is None:
            if method == "POST":
                return metadata_local.Answer(405, "405 Method Not Allowed\n")
            return metadata_local.answer(path, port, self.public(port))
        return self._proxy(method, path, source, body, port)

    def _proxy(
        self, method: str, path: str, source: str, body: bytes, port: JSON
    ) -> metadata_local.Answer:
        c = self.config
        url = f"{c.nova_protocol}://{c.nova_host}:{c.nova_port}{path}"
        assert self._nova is not None
        try:
            r = self._nova.request(
                method, url, content=body, headers=nova_headers(port, source, c.shared_secret)
            )
        except httpx.HTTPError as exc:
            log.warning("metadata: Nova at %s: %s", url, exc)
            return metadata_local.Answer(503, "503 Service Unavailable\n")
        return metadata_local.Answer(
            r.status_code, r.content, r.headers.get("content-type", "text/plain")
        )


def _handler(server: MetadataServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "l3fabric-metadata"
        # VMs are not trusted: a connection that sends nothing is closed.
        timeout = REQUEST_TIMEOUT_S

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._send(metadata_local.Answer(413, "413 Request Entity Too Large\n"))
                return
            body = self.rfile.read(length) if length else b""
            try:
                answer = server.respond(method, self.path, self.client_address[0], body)
            except Exception:
                log.exception("metadata: %s %s", method, self.path)
                answer = metadata_local.Answer(500, "500 Internal Server Error\n")
            self._send(answer, head=method == "HEAD")

        def _send(self, answer: metadata_local.Answer, head: bool = False) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if not head:
                self.wfile.write(answer.body)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metadata: " + format, *args)

    return Handler
