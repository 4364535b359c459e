"""The rtnetlink wire formats every hand-packed message of the project shares.

One home for the fixed headers (linux/netlink.h, linux/rtnetlink.h,
linux/if_link.h, linux/if_addr.h, linux/nexthop.h), all in native byte
order: the modules that pack whole messages in one ``struct.Struct``
(``netlink_batch``, ``links``) build them from these formats, and the
parsers walk attributes with ``RTATTR``.
"""

from __future__ import annotations

import struct

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
NLMSGERR = struct.Struct("=iIHHII")  # error, then the request's nlmsghdr
RTATTR = struct.Struct("=HH")  # length, type (also struct nlattr)
IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
NHMSG = struct.Struct("=BBBBI")  # family, scope, protocol, reserved, flags
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
S32 = struct.Struct("=i")

# Attribute types carry two flag bits above the type.
NLA_TYPE_MASK = 0x3FFF
NLA_F_NESTED = 0x8000
IFLA_IFNAME = 3
RT_SCOPE_LINK = 253


def message(*parts: struct.Struct | str) -> struct.Struct:
    """One fixed-shape message from its parts in order, e.g. ``message(NLMSGHDR, RTMSG, RTATTR, U32)``.

    Every part is native order without padding (``=``), so the whole is too.
    """
    return struct.Struct(
        "=" + " ".join(p.format.lstrip("=") if isinstance(p, struct.Struct) else p for p in parts)
    )
