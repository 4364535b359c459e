"""``l3fabric server``: run the controller (Neutron /v2.0 and fabric /v1 APIs)."""

from __future__ import annotations

import argparse
import logging
import sys

from l3fabric.http_guard import ServerLimits
from l3fabric.nova.target import NovaConfigError, nova_target
from l3fabric.server import (
    AUTH_MODES,
    DEFAULT_LISTEN,
    ServerError,
    Tls,
    authenticator_for,
    parse_listen,
    parse_listen_in,
    serve,
)

_DEFAULTS = ServerLimits()
# One option per field of ServerLimits.
_LIMITS = {
    "max_body_bytes": "largest request body; more is a 413 (Neutron's default)",
    "header_timeout": "close a connection whose request head is not complete S seconds"
    " after it opened or began",
    "body_timeout": "close a connection whose request body is not complete S seconds"
    " after its head",
    "keep_alive_timeout": "close a connection idle S seconds after a response",
    "max_connections": "open connections at most; lowered to fit the descriptor limit",
}


def _positive(kind: type[int] | type[float]) -> argparse._ActionType:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("server", help="run the controller's HTTP API")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the store: sqlite:///ABSOLUTE/PATH.db (default: a file in the user's data"
        " directory) or etcd://HOST:PORT[,HOST:PORT...] (an etcd v3 cluster; docs/etcd.md)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=f"address to serve on, repeatable (default {DEFAULT_LISTEN}; [::1]:PORT for IPv6)",
    )
    parser.add_argument(
        "--listen-in",
        action="append",
        default=[],
        metavar="NETNS=HOST:PORT",
        help="also serve on HOST:PORT inside network namespace NETNS (repeatable; needs root)",
    )
    trust = parser.add_argument_group("authentication and TLS (docs/security.md)")
    trust.add_argument(
        "--auth",
        choices=AUTH_MODES,
        default="none",
        help="who callers are: none (everyone is an admin; the default), tokens (--token-file),"
        " keystone",
    )
    trust.add_argument(
        "--token-file",
        metavar="FILE",
        help="credentials for --auth tokens, one a line: TOKEN PROJECT_ID ROLES; re-read on SIGHUP",
    )
    trust.add_argument(
        "--keystone-config",
        metavar="FILE",
        help="for --auth keystone: an oslo.config file whose [keystone_authtoken] section"
        " configures keystonemiddleware's auth_token",
    )
    trust.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate")
    trust.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    nova = parser.add_argument_group(
        "Nova (docs/nova.md): port events to os-server-external-events"
    )
    nova.add_argument(
        "--nova-url",
        metavar="URL",
        help="Nova's compute endpoint, e.g. http://nova:8774/v2.1 (none: no events are sent)",
    )
    nova.add_argument(
        "--nova-token-file", metavar="FILE", help="a static X-Auth-Token for --nova-url"
    )
    nova.add_argument(
        "--nova-config",
        metavar="FILE",
        help="Keystone credentials for Nova in an INI file's [nova] section (as Neutron's)",
    )
    limits = parser.add_argument_group("limits (docs/api.md, Limits)")
    for field, text in _LIMITS.items():
        default = getattr(_DEFAULTS, field)
        limits.add_argument(
            f"--{field.replace('_', '-')}",
            type=_positive(type(default)),
            default=default,
            metavar="N" if isinstance(default, int) else "S",
            help=f"{text} (default {default:g})",
        )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from l3fabric.store import default_store_url

    try:
        listens = [parse_listen(text) for text in args.listen or [DEFAULT_LISTEN]]
        listens += [parse_listen_in(text) for text in args.listen_in]
        level = "debug" if logging.getLogger().isEnabledFor(logging.DEBUG) else "info"
        limits = ServerLimits(**{field: getattr(args, field) for field in _LIMITS})
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ServerError("--tls-cert and --tls-key go together")
        return serve(
            args.store or default_store_url(),
            listens,
            log_level=level,
            limits=limits,
            authenticator=authenticator_for(args.auth, args.token_file, args.keystone_config),
            tls=Tls(args.tls_cert, args.tls_key) if args.tls_cert else None,
            nova=nova_target(args.nova_url, args.nova_token_file, args.nova_config),
        )
    except (ServerError, NovaConfigError) as exc:
        print(f"l3fabric server: {exc}", file=sys.stderr)
        return 2
