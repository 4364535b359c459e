"""BIRD 2 configs of the lab's own routers: ToRs, gateways, the internet router.

Hosts are not here: each host's agent renders its own BIRD. Every link is an
eBGP session on the link's addresses (one per address family), so no IGP
and no next-hop tricks are needed. Policies, by role:

- ToR: imports everything from its hosts and the gateways, exports everything.
- gateway: imports every route from the fabric; exports all of it plus a
  default route it originates (with a low preference, so the default learned
  from upstream wins while there is one). Upstream it imports only the
  default route and exports only ``upstream_export``: the public aggregates,
  which it originates as unreachable routes (unknown public addresses are
  dropped here; the VMs' /32s are longer and win). Private ranges and
  single /32s never leave. All gateway policy is in ``gateway_config`` so a
  gateway agent can take it over later.
- internet: originates a default route to the gateways, imports what they send.
"""

from __future__ import annotations

from dataclasses import dataclass

from l3fabric.lab.plan import Plan, Session

# Timers shared with the hosts through the fabric config (see up.py).
KEEPALIVE_S = 3
HOLD_S = 9
BFD_INTERVAL_MS = 100
BFD_MULTIPLIER = 3
GRACEFUL_RESTART_S = 120


@dataclass(frozen=True)
class Policy:
    """Filters of one BGP session, as BIRD filter expressions or names."""

    import4: str = "all"
    export4: str = "all"
    import6: str = "all"
    export6: str = "all"


def _symbol(text: str) -> str:
    """A BIRD symbol from a node name ("r1-tor" -> "r1_tor"; `gw` alone is a keyword)."""
    return "bgp_" + text.replace("-", "_").replace(".", "_")


def session_name(s: Session) -> str:
    """The BIRD protocol name of a session: peer and family ("bgp_r1_tor_4")."""
    return f"{_symbol(s.peer)}_{'6' if ':' in s.remote else '4'}"


def _header(plan: Plan, node: str, log_file: str) -> list[str]:
    n = plan.node(node)
    return [
        f"# BIRD config of lab {plan.lab} node {node} ({n.role}), rendered by `l3fabric lab up`.",
        f'log "{log_file}" all;',
        f"router id {n.router_id};",
        "",
        "protocol device { scan time 10; }",
        "",
        "# The node's own loopback addresses are its only directly connected routes in BGP.",
        'protocol direct loopback { ipv4; ipv6; interface "lo"; }',
        "",
    ]


def _kernel(family: str) -> list[str]:
    # Connected routes are already in the kernel; everything else BIRD selected goes there.
    return [
        f"protocol kernel kernel{family[-1]} {{",
        f"  {family} {{ import none; export where source != RTS_DEVICE; }};",
        "  merge paths on;",
        "  netlink rx buffer 8388608;",
        "}",
        "",
    ]


def _bfd() -> list[str]:
    return [
        "protocol bfd {",
        f'  interface "l3f-*" {{ interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER}; }};',
        "}",
        "",
    ]


def _session(s: Session, local_asn: int, policy: Policy, bfd: bool) -> list[str]:
    v6 = ":" in s.remote
    family = "ipv6" if v6 else "ipv4"
    imp, exp = (policy.import6, policy.export6) if v6 else (policy.import4, policy.export4)
    return [
        f"protocol bgp {session_name(s)} {{",
        f"  local {s.local} as {local_asn};",
        f"  neighbor {s.remote} as {s.peer_asn};",
        f'  interface "{s.ifname}";',
        "  direct;",
        f"  hold time {HOLD_S}; keepalive time {KEEPALIVE_S};",
        # The peer's BIRD may start a moment later: retry fast instead of after minutes.
        "  connect delay time 1; connect retry time 2; error wait time 1, 10;",
        f"  graceful restart on; graceful restart time {GRACEFUL_RESTART_S};",
        f"  bfd {'on' if bfd else 'off'};",
        f"  {family} {{ import {imp}; export {exp}; }};",
        "}",
        "",
    ]


def _static(name: str, prefixes: list[str], preference: int | None = None) -> list[str]:
    out = []
    for family in ("ipv4", "ipv6"):
        mine = [p for p in prefixes if (":" in p) == (family == "ipv6")]
        if not mine:
            continue
        pref = f" preference {preference};" if preference is not None else ""
        out.append(f"protocol static {name}{family[-1]} {{")
        out.append(f"  {family} {{{pref} }};")
        out += [f"  route {p} unreachable;" for p in mine]
        out += ["}", ""]
    return out


def _prefix_filter(name: str, prefixes: list[str]) -> list[str]:
    """A filter accepting exactly ``prefixes`` (one per family: prefix sets are typed)."""
    out = []
    for family, suffix in (("ipv4", "4"), ("ipv6", "6")):
        mine = [p for p in prefixes if (":" in p) == (family == "ipv6")]
        body = f"if net ~ [ {', '.join(mine)} ] then accept; " if mine else ""
        out.append(f"filter {name}{suffix} {{ {body}reject; }}")
    return [*out, ""]


DEFAULT_ONLY = ["filter default_only { if net.len = 0 then accept; reject; }", ""]


def tor_config(plan: Plan, node: str, log_file: str) -> str:
    n = plan.node(node)
    lines = _header(plan, node, log_file) + _kernel("ipv4") + _kernel("ipv6") + _bfd()
    for s in plan.sessions(node):
        lines += _session(s, n.asn or 0, Policy(), bfd=True)
    return "\n".join(lines)


def gateway_config(plan: Plan, node: str, log_file: str) -> str:
    n = plan.node(node)
    lines = _header(plan, node, log_file) + _kernel("ipv4") + _kernel("ipv6") + _bfd()
    lines += _prefix_filter("upstream_export", plan.public) + DEFAULT_ONLY
    lines += _static("aggregates", plan.public)
    lines += _static("fabric_default", ["0.0.0.0/0", "::/0"], preference=50)
    upstream = Policy(
        import4="filter default_only",
        export4="filter upstream_export4",
        import6="filter default_only",
        export6="filter upstream_export6",
    )
    for s in plan.sessions(node):
        if s.peer_role == "internet":
            lines += _session(s, n.asn or 0, upstream, bfd=True)
        else:
            lines += _session(s, n.asn or 0, Policy(), bfd=True)
    return "\n".join(lines)


def internet_config(plan: Plan, node: str, log_file: str) -> str:
    n = plan.node(node)
    lines = _header(plan, node, log_file) + _kernel("ipv4") + _kernel("ipv6") + _bfd()
    lines += _static("default", ["0.0.0.0/0", "::/0"])
    for s in plan.sessions(node):
        lines += _session(s, n.asn or 0, Policy(), bfd=True)
    return "\n".join(lines)


RENDERERS = {"tor": tor_config, "gateway": gateway_config, "internet": internet_config}


def render(plan: Plan, node: str, log_file: str) -> str:
    """The BIRD config of router ``node`` (a ToR, gateway or the internet router)."""
    role = plan.node(node).role
    try:
        renderer = RENDERERS[role]
    except KeyError:
        raise ValueError(f"{node} is a {role}; the lab renders BIRD only for routers") from None
    return renderer(plan, node, log_file) + "\n"
