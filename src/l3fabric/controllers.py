"""Several controllers behind one client: their URLs, the one in use, and moving on.

``--api URL1,URL2,...`` names every controller of a fabric. They serve the
same API from one shared store, so any of them will do: a client uses one
until it cannot reach it (connection refused or reset, a timeout), then moves
to the next in the list, round-robin. The agents' watch, heartbeat and status
reports share one ``Controllers``, so they move together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class ControllerUrlError(ValueError):
    """A ``--api`` value that names no usable controller URL."""


def parse_urls(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"http://a:9696,http://b:9696"`` (or a list) -> the URLs, without trailing ``/``.

    Raises ControllerUrlError for an empty list or a URL that is not http(s)://HOST[:PORT].
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    urls: list[str] = []
    for part in parts:
        url = part.strip().rstrip("/")
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ControllerUrlError(
                f"{part.strip()!r} is not a controller URL (http://HOST:PORT or https://HOST:PORT)"
            )
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ControllerUrlError("no controller URL given")
    return tuple(urls)


class Controllers:
    """The controllers' URLs and the one in use; safe to share between threads."""

    def __init__(self, urls: str | Iterable[str]) -> None:
        self.urls = parse_urls(urls)
        self._index = 0
        self._lock = threading.Lock()
        self._on_move: list[Callable[[str], None]] = []

    @classmethod
    def of(cls, given: str | Iterable[str] | Controllers) -> Controllers:
        """``given`` itself if it is one (shared), else a new one from its URLs."""
        return given if isinstance(given, Controllers) else cls(given)

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def on_move(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(new_url)`` (in the thread that found out) after every move."""
        self._on_move.append(callback)

    def hostnames(self) -> tuple[str, ...]:
        """Every controller's host (a name or an address), in order."""
        return tuple(urlsplit(url).hostname or "" for url in self.urls)

    def unreachable(self, url: str, why: object) -> str:
        """``url`` could not be reached: move on from it if it is still in use; the URL to use.

        Two threads that lose the same controller move only once: a thread
        that failed on a controller already left keeps the newer choice.
        """
        with self._lock:
            moved = len(self.urls) > 1 and self.urls[self._index] == url
            if moved:
                self._index = (self._index + 1) % len(self.urls)
                log.warning("controller %s unreachable (%s); moving to %s", url, why, self.current)
            now = self.current
        if moved:
            for callback in self._on_move:
                callback(now)
        return now
