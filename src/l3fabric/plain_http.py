"""The agents' small stdlib HTTP servers (metrics and health, metadata) share this."""

from __future__ import annotations

import socketserver
from http.server import ThreadingHTTPServer


class PlainHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that binds without asking DNS for its own name.

    ``HTTPServer.server_bind`` calls ``socket.getfqdn`` on the bound address:
    in a namespace without a reachable resolver (a lab host, a compute host
    whose DNS is down) that blocked an agent's start for 10 s. Nothing here
    uses the name.
    """

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
