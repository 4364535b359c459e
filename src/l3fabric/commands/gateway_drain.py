"""``l3fabric gateway drain NAME`` / ``undrain NAME``: take a gateway out of (or back into) service.

A drained gateway withdraws what attracts new flows (its announcements
upstream, its default route to the fabric) and goes on forwarding what still
reaches it, so the flows it carried move to the other gateways of its pair
(whose synced NAT state knows them) before it is stopped (docs/gateway.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from l3fabric import credentials
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient

DEFAULT_API = "http://127.0.0.1:9696"
ACTIONS = ("drain", "undrain")


def run(args: argparse.Namespace) -> int:
    """Drain (POST) or undrain (DELETE) ``/v1/gateways/NAME/drain``; prints the registration."""
    if not args.target:
        print(f"l3fabric gateway {args.action}: name the gateway", file=sys.stderr)
        return 2
    try:
        creds = credentials.Credentials.from_args(args)
    except credentials.CredentialsError as exc:
        print(f"l3fabric gateway: {exc}", file=sys.stderr)
        return 2
    method = "POST" if args.action == "drain" else "DELETE"
    with FabricClient(args.api or DEFAULT_API, credentials=creds) as api:
        try:
            record = api.request(method, f"/v1/gateways/{args.target}/drain")
        except ApiError as exc:
            print(f"l3fabric gateway {args.action}: {exc.message} ({exc.type})", file=sys.stderr)
            return 1
        except ControllerUnavailable as exc:
            print(f"l3fabric gateway: cannot reach the controller: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0
