"""Serve Keystone's WSGI app on 127.0.0.1:PORT with the standard library.

Run by the Keystone venv's python (``python keystone_wsgi.py PORT``), with
OS_KEYSTONE_CONFIG_FILES naming the config. Keystone parses ``sys.argv`` as
its own command line, so the port is taken off it before Keystone loads.
"""

import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# One request at a time: threaded, Keystone on SQLite once answered a bare
# 500 while two users authenticated at once on a loaded machine.


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv.pop(1))
    from keystone.wsgi.api import application

    make_server("127.0.0.1", port, application, WSGIServer, _Quiet).serve_forever()


if __name__ == "__main__":
    main()
