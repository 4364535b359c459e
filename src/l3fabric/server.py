"""The controller process: opens the store, binds the listening sockets, serves the API.

Sockets can be bound inside other network namespaces (``--listen-in``): the
thread enters the namespace, binds, and returns; the socket stays in the
namespace it was made in. So agents in an isolated lab reach the controller
without any link between the lab and the root namespace.

``--auth`` says who callers are (``authenticator_for``); SIGHUP re-reads the
credentials. ``--tls-cert/--tls-key`` serve HTTPS on every socket.

SIGTERM and SIGINT shut down cleanly: open long polls end at once, the
store is closed, the exit code is 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from l3fabric import event_trace, gc_tuning, sdnotify
from l3fabric.auth.base import Authenticator, NoAuth
from l3fabric.http_guard import ServerLimits, fd_budget, guarded_protocol, raise_fd_limit
from l3fabric.nova.events import NovaNotifier, NovaTarget
from l3fabric.store import Store, open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9696"
NETNS_DIR = Path("/run/netns")
# Connections the kernel queues until we accept them.
LISTEN_BACKLOG = 2048
# Long polls are ended by the stopping flag; this bounds anything else in flight.
_GRACEFUL_SHUTDOWN_S = 3


class ServerError(Exception):
    """A configuration problem the user can fix (bad address, busy port, bad store URL)."""


@dataclass(frozen=True)
class Listen:
    """One listening address, optionally inside a named network namespace."""

    host: str
    port: int
    netns: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f" in netns {self.netns}" if self.netns else ""
        return f"http://{host}:{self.port}{where}"


def parse_listen(text: str, netns: str | None = None) -> Listen:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) with a literal IP address."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ServerError(f"{text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN} or [::1]:9696")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ServerError(f"{text!r}: {host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ServerError(f"{text!r}: the port must be a number from 1 to 65535")
    return Listen(host, int(port_text), netns)


def parse_listen_in(text: str) -> Listen:
    """``NETNS=HOST:PORT``: listen on HOST:PORT inside the named network namespace."""
    netns, sep, address = text.partition("=")
    if not sep or not netns or "/" in netns:
        raise ServerError(f"{text!r}: expected NETNS=HOST:PORT, e.g. l3f-lab-mgmt=10.255.0.1:9696")
    return parse_listen(address, netns)


@contextlib.contextmanager
def _in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name``, then come back."""
    from pyroute2.netns import setns

    path = NETNS_DIR / name
    if not path.exists():
        raise ServerError(f"network namespace {name!r} does not exist ({path} is missing)")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            setns(str(path), flags=0)  # flags=0: never create a namespace by accident
        except OSError as exc:
            raise ServerError(f"cannot enter network namespace {name!r}: {exc}") from None
        try:
            yield
        finally:
            setns(home, flags=0)
    finally:
        os.close(home)


def bind(listen: Listen) -> socket.socket:
    """A bound, listening TCP socket for ``listen`` (made inside its namespace, if any)."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with _in_netns(listen.netns) if listen.netns else contextlib.nullcontext():
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit this. Without it, uvicorn serving a socket
            # we made answers keep-alive requests after a ~40 ms delayed-ACK stall
            # (measured: 44 ms per request, 0.9 ms with it).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((listen.host, listen.port))
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise ServerError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the app's long polls to end on shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.stopping.set()
        self._app.state.watch_hub.stop(wait=False)  # its long polls end now
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # asyncio listens with config.backlog, which is also how many connections it
        # accepts at once (kept small to fit the descriptors: http_guard.fd_budget);
        # the kernel's queue stays long, so a burst of connects is not dropped.
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)
        event_trace.watch_process()
        if not self.should_exit:
            sdnotify.notify()  # systemd (Type=notify): started once it listens


AUTH_MODES = ("none", "tokens", "keystone")


def authenticator_for(
    mode: str, token_file: str | None = None, keystone_config: str | None = None
) -> Authenticator:
    """The authenticator of ``--auth MODE`` (a ServerError for what cannot work)."""
    from l3fabric.auth.tokens import TokenAuth, TokenFileError

    if keystone_config and mode != "keystone":
        raise ServerError("--keystone-config needs --auth keystone")
    if mode == "none":
        if token_file:
            raise ServerError("--token-file needs --auth tokens")
        return NoAuth()
    if mode == "tokens":
        if not token_file:
            raise ServerError("--auth tokens needs --token-file FILE")
        try:
            return TokenAuth(token_file)
        except TokenFileError as exc:
            raise ServerError(str(exc)) from None
    if mode == "keystone":
        if not keystone_config:
            raise ServerError("--auth keystone needs --keystone-config FILE")
        # Imported here: keystonemiddleware is an optional extra.
        from l3fabric.auth.keystone import KeystoneAuth, KeystoneConfigError

        try:
            return KeystoneAuth(Path(keystone_config))
        except KeystoneConfigError as exc:
            raise ServerError(str(exc)) from None
    raise ServerError(f"--auth {mode!r}: expected one of {', '.join(AUTH_MODES)}")


@dataclass(frozen=True)
class Tls:
    """The server's certificate chain and key (PEM files)."""

    cert: str
    key: str


def warn_if_open(authenticator: Authenticator, listens: list[Listen]) -> bool:
    """Log a warning (and say True) when ``--auth none`` listens beyond loopback."""
    exposed = [str(listen) for listen in listens if not _is_loopback(listen)]
    if not isinstance(authenticator, NoAuth) or not exposed:
        return False
    log.warning(
        "--auth none: anyone who reaches %s may do anything; use --auth tokens or keystone",
        ", ".join(exposed),
    )
    return True


def _is_loopback(listen: Listen) -> bool:
    return listen.netns is None and ipaddress.ip_address(listen.host).is_loopback


def open_store_checked(url: str) -> Store:
    try:
        return open_store(url)
    except ValueError as exc:
        raise ServerError(str(exc)) from None
    except Exception as exc:  # sqlite3 and OS errors: say which store failed, not a traceback
        raise ServerError(f"cannot open the store {url}: {exc}") from None


def serve(
    store_url: str,
    listens: list[Listen],
    log_level: str = "info",
    limits: ServerLimits | None = None,
    authenticator: Authenticator | None = None,
    tls: Tls | None = None,
    nova: NovaTarget | None = None,
) -> int:
    """Run the controller until SIGTERM/SIGINT; returns the exit code (0 after a clean stop).

    SIGHUP re-reads ``authenticator``'s credentials. ``nova``: where port
    events go (nova/events.py); None: nowhere."""
    # Imported here so that `l3fabric --help` and argument errors stay fast.
    from l3fabric.api.app import create_app

    if not listens:
        raise ServerError("nothing to listen on")
    limits = limits or ServerLimits()
    authenticator = authenticator or NoAuth()
    warn_if_open(authenticator, listens)
    # Before anything opens descriptors: the cap is sized from the limit in force.
    cap, backlog = fd_budget(limits.max_connections, raise_fd_limit())
    store = open_store_checked(store_url)
    sockets: list[socket.socket] = []
    app: FastAPI | None = None
    notifier = NovaNotifier(nova) if nova is not None else None
    try:
        for listen in listens:
            sockets.append(bind(listen))
        app = create_app(store, limits.max_body_bytes, authenticator, notifier)
        config = uvicorn.Config(
            app,
            http=guarded_protocol(limits, cap),
            backlog=backlog,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
            lifespan="off",
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
        )
        if tls:
            _check_tls(config)
        server = _Server(config, app)
        # uvicorn re-raises the signal that stopped it once it is done; with
        # these handlers in place that re-raise is harmless and we exit 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)
        # Off the event loop's thread: 10,000 tokens take ~0.1 s to parse.
        signal.signal(signal.SIGHUP, lambda sig, frame: _reload_in_thread(authenticator))
        log.info(
            "l3fabric server: store %s; listening on %s; at most %d connections",
            store_url,
            ", ".join(str(lis).replace("http:", "https:" if tls else "http:") for lis in listens),
            cap,
        )
        gc_tuning.tune_for_server()
        server.run(sockets=sockets)
    finally:
        if app is not None:
            app.state.watch_hub.stop()
            app.state.fabric.close()
        for sock in sockets:
            sock.close()
        if notifier is not None:
            notifier.close()
        store.close()
    log.info("l3fabric server: stopped")
    return 0


def _reload_in_thread(authenticator: Authenticator) -> None:
    threading.Thread(target=authenticator.reload, name="auth-reload", daemon=True).start()


def _check_tls(config: uvicorn.Config) -> None:
    """Load the certificate and key now, so a bad file is a clear error, not a traceback."""
    try:
        config.load()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ServerError(f"cannot use the TLS certificate or key: {exc}") from None


def _ignore(sig: int, frame: FrameType | None) -> None:
    log.debug("signal %d after shutdown ignored", sig)
