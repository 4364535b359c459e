"""Starting the host's BIRD before the first snapshot has arrived.

BIRD's start is slow on a host with many taps (its interface scan is
quadratic: ~1 s at 10,000 alone, several seconds while the first pass
programs routes beside it), and the BGP session can only come up after it.
Its configuration depends on a few small objects (the fabric config, this
host's registration, the gateways and the other hosts), not on the ports, so
the agent reads those with four small requests and starts BIRD while the
snapshot (every port of the host: ~1 s at 10,000) is still being fetched and
the first pass runs. The pass then announces the endpoints whose routes it
added (one configure), over a session that is already up or nearly so.

The first pass renders the configuration from the snapshot as usual: equal
text is not applied again, a difference (something changed in between) is
applied with ``birdc configure`` like any later change. A BIRD that is already
running (an agent restart) is left alone here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx

from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.client import ApiError, FabricClient, HostState, Urls
from l3fabric.routing.bird_config import render

log = logging.getLogger(__name__)

# The early start is an optimisation: if the controller is slow, the first pass does it.
REQUEST_TIMEOUT_S = 5.0


def bird_state(client: FabricClient, host: str) -> HostState:
    """What the host's BIRD configuration is computed from, without the ports.

    Raises NotRegistered when the controller does not know ``host``.
    """
    try:
        registration = client.get_host(host)
    except ApiError as exc:
        if exc.status == 404:
            raise NotRegistered(f"host {host} is not registered") from None
        raise
    return HostState(
        fabric=client.get_fabric(),
        host=registration,
        gateways={g["name"]: g for g in client.list_gateways()},
        # As in the snapshot: the other hosts (mesh peers), not this one.
        hosts={h["name"]: h for h in client.list_hosts() if h.get("name") != host},
    )


class EarlyBird:
    """Starts BIRD from ``bird_state`` in a thread; ``wait()`` before touching BIRD again.

    ``start_bird(text)`` is the agent's own start-or-reconfigure call, so the
    early start and the passes share one code path. ``alive()`` tells whether
    BIRD runs already (then nothing is done).
    """

    def __init__(
        self,
        api_url: Urls,
        host: str,
        alive: Callable[[], bool],
        start_bird: Callable[[str], object],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url
        self.transport = transport
        self.host = host
        self._alive = alive
        self._start_bird = start_bird
        self._thread = threading.Thread(target=self._run, name="bird-early", daemon=True)
        self.started = False  # True once BIRD was started here

    def start(self) -> EarlyBird:
        self._thread.start()
        return self

    def done(self) -> bool:
        """True once the early start has finished (or was never begun)."""
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Return once the early start has finished (or was never begun)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._alive():
            return
        try:
            with FabricClient(
                self.api_url, timeout=REQUEST_TIMEOUT_S, transport=self.transport
            ) as client:
                text = render(host_bird_config(bird_state(client, self.host)))
            self._start_bird(text)
            self.started = True
        except NotRegistered:
            log.info("BIRD not started early: %s is not registered yet", self.host)
        except Exception as exc:
            # Controller unreachable, a bad registration, BIRD refusing the
            # config: the first pass tries again and reports what is wrong.
            log.warning("BIRD not started early (the first pass will): %s", exc)
