"""Small Python programs the integration tests run inside namespaces (``python3 -c``)."""

# Echo every line on each TCP port given (dual stack); prints "ready" once listening.
ECHO_SERVERS = """
import socket, socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
class V6(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
servers = [V6(("::", int(p)), Echo) for p in sys.argv[1:]]
import threading
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
servers[0].serve_forever()
"""

# One connection to argv[1]:argv[2]: an echo, then, once the file argv[3]
# exists, another over the same connection ("got two", or "lost" if no echo
# comes within 1.5 s).
LONG_CLIENT = """
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = c.makefile("rwb")
f.write(b"one\\n"); f.flush()
print("got", f.readline().decode().strip(), flush=True)
deadline = time.monotonic() + 20
while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.02)
c.settimeout(1.5)
f.write(b"two\\n"); f.flush()
try:
    print("got", f.readline().decode().strip() or "nothing", flush=True)
except OSError:
    print("lost", flush=True)
"""
