"""The servers of a remote runtime: their URLs, their health and their load.

URLs
    ``http://host:port``, ``http://host:port/v1`` and ``host:port`` name a
    server; a ``user:password@`` in the URL is kept apart (sent as basic
    auth) and never shown. See :func:`parse_url`.

Several URLs: the least busy healthy one
    Each queued job goes to the healthy URL with the fewest requests in
    flight (ties: round robin, :meth:`Endpoints.least_busy`), at most
    ``max_in_flight`` at a time per URL.

Health
    An unhealthy URL gets no requests. It is probed in the background with
    ``GET /v1/models`` after ``probe_after_s`` seconds, then after twice as
    long for each failure in a row, at most ``max_probe_after_s``
    (:meth:`Endpoints.mark_unhealthy`); an answer (any HTTP status) makes it
    healthy again, a successful generation resets its backoff.

Every method that reads or changes an endpoint expects the caller to hold
the runtime's lock.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from mlx_magic.errors import one_line
from mlx_magic.vocabulary.job import Job


@dataclass
class Endpoint:
    """One server URL, its health and its counters."""

    scheme: str
    host: str
    port: int
    base_path: str
    shown: str  # the URL as shown to the user: no credentials, no query
    index: int = 0
    server_models: Optional[list] = None
    # Health: an unhealthy URL gets no requests until a probe answers.
    healthy: bool = True
    failures_in_a_row: int = 0
    next_probe_at: float = 0.0
    probing: bool = False
    last_error: Optional[str] = None
    last_answer_at: Optional[float] = None  # monotonic time of its last HTTP answer
    # Load and outcomes.
    in_flight: int = 0
    streaming: int = 0
    requests: int = 0
    completed: int = 0
    failed: int = 0
    cut: int = 0

    def __repr__(self) -> str:
        return f"<endpoint {self.shown}>"

    def url(self, path: str) -> str:
        """The full URL of an API path (``/v1/models``), without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}{path}"


class Pending:
    """A job waiting for a URL, with the URLs that already failed it."""

    def __init__(self, job: Job):
        self.job = job
        self.failures: dict[int, str] = {}  # endpoint index -> one line, in order
        self.awaiting: set[int] = set()  # probes this job waits for


class Attempt:
    """One request of a job to one URL."""

    def __init__(self, pending: Pending, endpoint: Endpoint):
        self.pending = pending
        self.endpoint = endpoint
        self.streamed = False
        self.connection_broke = False  # a cut stream whose connection failed
        self.cut_cause: Optional[str] = None  # "URL: why", for a stream cut mid-answer


def parse_url(url: str) -> tuple[Endpoint, Optional[str]]:
    """An endpoint from a server URL, and the ``user:password`` in it if any.

    ``http://host:port``, ``http://host:port/v1`` and ``host:port`` are
    accepted; the API paths are added to what is left after ``/v1``.

    Raises:
        ValueError: not an http(s) URL (the message shows no credentials).
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise ValueError(f"{shown} is not an http(s) server URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{parts.scheme}://{parts.hostname} has a bad port") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    host = parts.hostname
    host_shown = f"[{host}]" if ":" in host else host
    shown = f"{parts.scheme}://{host_shown}:{port}{path}"
    credentials = None
    if parts.username is not None:
        credentials = (
            urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        )
    return Endpoint(parts.scheme, host, port, path, shown), credentials


class Endpoints:
    """A runtime's URLs in the order given, with the credentials found in them.

    Args:
        urls: the server URLs (see :func:`parse_url`).
        probe_after_s: the first wait before probing a failing URL.
        max_probe_after_s: the longest wait, however many failures in a row.
    """

    def __init__(self, urls: Sequence[str], probe_after_s: float, max_probe_after_s: float):
        self.probe_after_s = probe_after_s
        self.max_probe_after_s = max_probe_after_s
        self.all: list[Endpoint] = []
        self.credentials: dict[int, str] = {}  # endpoint index -> "user:password"
        for url in urls:
            endpoint, credentials = parse_url(url)
            endpoint.index = len(self.all)
            if credentials is not None:
                self.credentials[endpoint.index] = credentials
            self.all.append(endpoint)
        self._next_turn = 0  # round robin among equally busy URLs

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    @property
    def shown(self) -> list[str]:
        """The URLs as shown (without credentials)."""
        return [endpoint.shown for endpoint in self.all]

    def in_order(self) -> list[Endpoint]:
        """Healthy URLs in the given order, then the others (to ask for a model list)."""
        return [e for e in self.all if e.healthy] + [e for e in self.all if not e.healthy]

    def least_busy(self, free: list[Endpoint]) -> Endpoint:
        """The one with the fewest requests in flight; ties go round robin."""
        fewest = min(e.in_flight for e in free)
        count = len(self.all)
        chosen = min(
            (e for e in free if e.in_flight == fewest),
            key=lambda e: (e.index - self._next_turn) % count,
        )
        self._next_turn = (chosen.index + 1) % count
        return chosen

    def mark_unhealthy(self, endpoint: Endpoint, error: str, now: float) -> None:
        """No requests until a probe after the backoff answers."""
        endpoint.healthy = False
        endpoint.failures_in_a_row += 1
        endpoint.last_error = error
        backoff = self.probe_after_s * 2 ** min(endpoint.failures_in_a_row - 1, 16)
        endpoint.next_probe_at = now + min(backoff, self.max_probe_after_s)

    @staticmethod
    def mark_healthy(endpoint: Endpoint) -> None:
        endpoint.healthy = True
        endpoint.last_error = None

    @staticmethod
    def mark_completed(endpoint: Endpoint, now: float) -> None:
        """A generation that ended well: its backoff starts over."""
        endpoint.completed += 1
        endpoint.failures_in_a_row = 0
        endpoint.last_answer_at = now

    def due_for_probe(self, now: float) -> list[Endpoint]:
        return [e for e in self.all if not e.healthy and not e.probing and e.next_probe_at <= now]

    def probe_waits(self, now: float) -> list[float]:
        """Seconds until each failing URL not being probed is due."""
        return [
            max(0.0, e.next_probe_at - now) + 0.001
            for e in self.all
            if not e.healthy and not e.probing
        ]

    def not_heard_lately(self, endpoints: list[Endpoint], now: float) -> list[Endpoint]:
        """Those with no HTTP answer for ``max_probe_after_s`` (or ever)."""
        return [
            e
            for e in endpoints
            if e.last_answer_at is None or now - e.last_answer_at > self.max_probe_after_s
        ]

    def status_line(self) -> str:
        return ", ".join(e.shown + ("" if e.healthy else " (failing)") for e in self.all)

    def rows(self, now: float) -> list[dict]:
        """Per URL: see :meth:`~mlx_magic.runtime.remote.RemoteRuntime.endpoint_stats`."""
        return [
            dict(
                url=e.shown,
                healthy=e.healthy,
                in_flight=e.in_flight,
                streaming=e.streaming,
                requests=e.requests,
                completed=e.completed,
                failed=e.failed,
                cut=e.cut,
                last_error=e.last_error,
                next_probe_in_s=None if e.healthy or e.probing else max(0.0, e.next_probe_at - now),
            )
            for e in self.all
        ]


def all_failed(failures: list) -> str:
    """One line for a request every URL failed."""
    if not failures:
        return "No server answered"
    if len(failures) == 1:
        return one_line(failures[0], 400)
    return one_line("No server answered: " + "; ".join(failures), 800)
