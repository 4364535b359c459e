"""Nova external events: tell Nova when a VM's port is plugged or unplugged.

Nova boots a VM only once Neutron says ``network-vif-plugged`` for each of
its ports (and waits for it on a live migration's destination). The
controller posts these to Nova's ``POST /os-server-external-events`` as
Neutron's nova notifier does: ``network-vif-plugged`` when a compute port
turns ACTIVE, ``network-vif-unplugged`` when it goes DOWN,
``network-vif-deleted`` when it is deleted; ``status`` ``completed``
(``failed`` for ERROR), ``tag`` the port id.

Events go through a bounded queue to one sender thread, so a slow or absent
Nova never holds up a heartbeat: what arrives together is sent in one
request; a connection error or a 5xx is retried with backoff a bounded
number of times; a 4xx is Nova's answer (an unknown server: 404) and not
retried. When the queue is full the newest event is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

JSON = dict[str, Any]

PLUGGED = "network-vif-plugged"
UNPLUGGED = "network-vif-unplugged"
DELETED = "network-vif-deleted"
# Neutron's default (nova.send_events_interval is 2 s; we send at once).
QUEUE_SIZE = 10_000
BATCH = 100
ATTEMPTS = 5
BACKOFF_S = 0.5
TIMEOUT_S = 10.0


def event_for(port: JSON, status: str) -> JSON | None:
    """The event of ``port`` turning ``status`` (``DELETED``: the port was
    deleted), or None when Nova has nothing to hear.

    As Neutron: only ports of a Nova server (``device_owner`` ``compute:*``
    and a ``device_id``) and only the statuses Nova waits on."""
    server = port.get("device_id") or ""
    if not server or not str(port.get("device_owner", "")).startswith("compute:"):
        return None
    if status == DELETED:
        name, outcome = DELETED, "completed"
    elif status == "ACTIVE":
        name, outcome = PLUGGED, "completed"
    elif status == "DOWN":
        name, outcome = UNPLUGGED, "completed"
    elif status == "ERROR":
        name, outcome = PLUGGED, "failed"
    else:
        return None
    return {"name": name, "server_uuid": server, "tag": port["id"], "status": outcome}


@dataclass(frozen=True)
class NovaTarget:
    """Where Nova's API is and how we authenticate to it.

    ``url``: the compute endpoint (e.g. ``http://nova:8774/v2.1``); with a
    Keystone ``session`` it may be empty (then the catalog's). ``token``: a
    static X-Auth-Token. ``session``: a keystoneauth1 Session that gets (and
    renews) tokens itself."""

    url: str = ""
    token: str = ""
    session: Any = None
    region: str | None = None


class NovaNotifier:
    """Queues port events and posts them to Nova on its own thread."""

    def __init__(
        self,
        target: NovaTarget,
        *,
        queue_size: int = QUEUE_SIZE,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.attempts = attempts
        self.backoff = backoff
        self._sleep = sleep
        self._queue: queue.Queue[JSON | None] = queue.Queue(maxsize=queue_size)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._http = httpx.Client(timeout=TIMEOUT_S)
        self._thread = threading.Thread(target=self._run, name="nova-events", daemon=True)
        self._thread.start()

    def port_status(self, port: JSON) -> None:
        """A port's status changed (it holds the new one): queue its event, if any."""
        self._queue_event(event_for(port, str(port.get("status", ""))), port)

    def port_deleted(self, port: JSON) -> None:
        """A port was deleted (its last value): Nova's network-vif-deleted."""
        self._queue_event(event_for(port, DELETED), port)

    def _queue_event(self, event: JSON | None, port: JSON) -> None:
        if event is None:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning(
                "nova events: queue full, dropped %s for port %s", event["name"], port["id"]
            )

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._http.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send(batch)
                    return
                batch.append(more)
            self._send(batch)

    def _send(self, events: list[JSON]) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._post({"events": events})
            except (httpx.HTTPError, OSError) as exc:
                log.warning("nova events: attempt %d: %s", attempt, exc)
            else:
                if status < 500:
                    if status >= 400:
                        self.failed += len(events)
                        log.warning(
                            "nova events: Nova answered %d to %d events", status, len(events)
                        )
                    else:
                        self.sent += len(events)
                    return
                log.warning("nova events: attempt %d: Nova answered %d", attempt, status)
            if attempt < self.attempts:
                self._sleep(delay)
                delay *= 2
        self.failed += len(events)
        log.error("nova events: gave up on %d events after %d attempts", len(events), self.attempts)

    def _post(self, body: JSON) -> int:
        target = self.target
        if target.session is not None:
            # keystoneauth1: the token (renewed on a 401) and, without a URL, the catalog's endpoint.
            response = target.session.post(
                f"{target.url.rstrip('/')}/os-server-external-events"
                if target.url
                else "/os-server-external-events",
                json=body,
                raise_exc=False,
                endpoint_filter=None
                if target.url
                else {
                    "service_type": "compute",
                    "interface": "internal",
                    "region_name": target.region,
                },
            )
            return int(response.status_code)
        headers = {"X-Auth-Token": target.token} if target.token else {}
        response = self._http.post(
            f"{target.url.rstrip('/')}/os-server-external-events", json=body, headers=headers
        )
        return response.status_code
