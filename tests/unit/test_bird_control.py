"""The BIRD control client against a fake BIRD speaking the CLI protocol on a Unix socket."""

from __future__ import annotations

import socket
import threading

import pytest

from l3fabric.routing.bird_control import BirdControl, BirdError, parse_protocols

SHOW_PROTOCOLS = [
    "2002-Name       Proto      Table      State  Since         Info",
    "1002-device1    Device     ---        up     2026-01-02 03:04:05.678  ",
    "1002-g:gw1:0    BGP        ---        up     2026-01-02 03:04:06.001  Established   ",
    "1006-  Description:    gw1:0",
    "  BGP state:          Established",
    "    Neighbor address: 2001:db8::1",
    "   Channel ipv4",
    "     Routes:         3 imported, 2 exported, 1 preferred",
    "1002-up:aaaaaaaaaaaaaaaaaaaaaaaaaaa::0123456789abcdef0123456789abcdef BGP        ---        start  2026-01-02 03:04:05.678  Active        Socket: Connection refused",
    "0000 ",
]


@pytest.fixture
def fake_bird(tmp_path):
    path = str(tmp_path / "bird.ctl")
    replies = {
        "show protocols all": SHOW_PROTOCOLS,
        'configure check "/x/bad.conf"': [
            "0002-Reading configuration from /x/bad.conf",
            "8002 /x/bad.conf:3:1 syntax error, unexpected GW",
        ],
    }
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rw", newline="\n") as f:
                f.write("+spontaneous noise\n0001 BIRD 2.0.12 ready.\n")
                f.flush()
                command = f.readline().strip()
                f.write("\n".join(replies.get(command, ["9001 Parse error"])) + "\n")
                f.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield BirdControl(path, timeout_s=5)
    stop.set()
    server.close()


def test_protocols_are_parsed_with_route_counts(fake_bird) -> None:
    protocols = fake_bird.protocols()
    # Session names as BIRD shows them: quoted symbols (role:name, cut ones end in a digest).
    assert [p.name for p in protocols] == [
        "device1",
        "g:gw1:0",
        "up:aaaaaaaaaaaaaaaaaaaaaaaaaaa::0123456789abcdef0123456789abcdef",
    ]
    assert protocols[1].neighbor == "2001:db8::1" and protocols[0].neighbor == ""
    gw = protocols[1]
    assert gw.established and gw.since == "2026-01-02 03:04:06.001"
    assert gw.routes == {"ipv4": {"imported": 3, "exported": 2, "preferred": 1}}
    assert protocols[2].state == "start" and not protocols[2].established
    assert protocols[2].info == "Active        Socket: Connection refused"


def test_errors_carry_birds_message(fake_bird) -> None:
    with pytest.raises(BirdError, match="unexpected GW") as caught:
        fake_bird.configure_check("/x/bad.conf")
    assert caught.value.code == 8002
    with pytest.raises(BirdError, match="Parse error"):
        fake_bird.request("show nonsense")


def test_unparseable_row_is_an_error() -> None:
    with pytest.raises(ValueError, match="unexpected protocol line"):
        parse_protocols([(1002, "garbage")])
