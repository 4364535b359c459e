"""Talking to a running BIRD over its control socket, and reading its status.

The client speaks BIRD's CLI protocol directly (lines of a 4-digit reply code,
then '-' for more or ' ' for the last line of that code; a line starting with
a space continues the previous code), so errors are told apart by their codes
(8xxx run-time, 9xxx parse) rather than by guessing from birdc's text.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from typing import TextIO

_TIMEOUT_S = 10.0
_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)\s+"
    r"(?P<since>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(?P<info>.*)$"
)
_ROUTES = re.compile(
    r"Routes:\s+(?P<imported>\d+) imported,(?: (?P<filtered>\d+) filtered,)?"
    r" (?P<exported>\d+) exported,(?: (?P<preferred>\d+) preferred)?"
)
_CHANNEL = re.compile(r"^\s*Channel (\S+)")
_NEIGHBOR = re.compile(r"^\s*Neighbor address:\s*(\S+)")


class BirdError(RuntimeError):
    """BIRD answered a command with an error; the message is BIRD's."""

    def __init__(self, command: str, code: int, message: str) -> None:
        self.command = command
        self.code = code
        self.message = message
        super().__init__(f"bird: {command}: {message}")


@dataclass
class ProtocolStatus:
    """One row of ``show protocols all``; ``routes`` per channel (imported/exported/...).

    ``name`` as BIRD shows it: a BGP session's is ``role:peer`` (``h:compute-1``,
    see ``routing.bird_config.protocol_name``); ``neighbor``: a BGP session's peer address.
    """

    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str
    routes: dict[str, dict[str, int]] = field(default_factory=dict)
    neighbor: str = ""

    @property
    def filtered(self) -> int:
        """Routes the import filter refused and BIRD keeps (``import keep filtered``), all channels."""
        return sum(r.get("filtered", 0) for r in self.routes.values())

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.startswith("Established")


def _reply_done(code: int, sep: str) -> bool:
    return sep == " " and (code < 1000 or code >= 8000)


class BirdControl:
    """A client of BIRD's control socket at ``path``; one connection per command."""

    def __init__(self, path: str, timeout_s: float = _TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def request(self, command: str) -> list[tuple[int, str]]:
        """Run ``command``; returns (code, text) lines, raises BirdError on an error code."""
        if "\n" in command:
            raise ValueError("one command per request")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout_s)
            sock.connect(self.path)
            reader = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
            self._read_reply(reader, "(greeting)")
            sock.sendall(command.encode() + b"\n")
            return self._read_reply(reader, command)

    @staticmethod
    def _read_reply(reader: TextIO, command: str) -> list[tuple[int, str]]:
        lines: list[tuple[int, str]] = []
        code = 0
        while True:
            line = reader.readline()
            if not line:
                raise ConnectionError(f"bird closed the control socket during {command!r}")
            line = line.rstrip("\n")
            if line.startswith("+"):  # spontaneous printout, not part of the reply
                continue
            if line.startswith(" "):
                lines.append((code, line[1:]))
                continue
            code, sep, text = int(line[:4]), line[4:5], line[5:]
            lines.append((code, text))
            if _reply_done(code, sep):
                if code >= 8000:
                    message = "; ".join(t for c, t in lines if c >= 8000 or c == code)
                    raise BirdError(command, code, message)
                return lines

    def alive(self) -> bool:
        """True if BIRD answers on the socket."""
        try:
            self.request("show status")
        except OSError:
            return False
        return True

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"bird did not answer on {self.path} within {timeout_s} s")
            time.sleep(0.05)

    def configure_check(self, config_path: str) -> None:
        """Parse ``config_path`` in the running BIRD without applying it; BirdError if wrong."""
        self.request(f'configure check "{_quoted(config_path)}"')

    def configure(self, config_path: str) -> None:
        """Apply ``config_path`` (BIRD restarts only protocols whose options changed)."""
        self.request(f'configure "{_quoted(config_path)}"')

    def protocols(self) -> list[ProtocolStatus]:
        """Every protocol with its state, since, info and per-channel route counts."""
        return parse_protocols(self.request("show protocols all"))


def _quoted(path: str) -> str:
    if '"' in path or "\\" in path:
        raise ValueError(f"path {path!r} cannot be quoted for BIRD")
    return path


def parse_protocols(lines: list[tuple[int, str]]) -> list[ProtocolStatus]:
    """Protocol rows (code 1002) with their detail lines (code 1006) from ``show protocols``."""
    result: list[ProtocolStatus] = []
    channel = ""
    for code, text in lines:
        if code == 1002:
            match = _ROW.match(text)
            if not match:
                raise ValueError(f"unexpected protocol line from bird: {text!r}")
            result.append(ProtocolStatus(**{k: v.strip() for k, v in match.groupdict().items()}))
            channel = ""
        elif code == 1006 and result:
            found = _CHANNEL.match(text)
            if found:
                channel = found.group(1)
                continue
            neighbor = _NEIGHBOR.match(text)
            if neighbor and not channel:
                result[-1].neighbor = neighbor.group(1)
                continue
            counts = _ROUTES.search(text)
            if counts:
                result[-1].routes[channel or "main"] = {
                    k: int(v) for k, v in counts.groupdict().items() if v is not None
                }
    return result
