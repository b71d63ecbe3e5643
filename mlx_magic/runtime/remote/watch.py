"""A request's deadlines and its job's cancellation, kept by a watch thread.

Timeouts
    ``connect_timeout_s`` to open a connection (httpx's connect timeout);
    ``first_token_timeout_s`` from the open connection to the first text (a
    server may be loading a model or reading a long prompt: keep-alive
    comments do not stop this clock); ``idle_timeout_s`` between any two
    arrivals of bytes once an answer has begun (keep-alive comments count).
    A :class:`Watch` per request enforces the last two, and cancellation, by
    shutting its socket down, which ends a blocked read at once: a cancelled
    job's HTTP connection closes within ~20 ms.

The watch learns the socket through httpx's ``trace`` request extension (the
``connection.connect_tcp.complete`` and ``connection.start_tls.complete``
events hand over the network stream), and what has arrived through the
response's ``num_bytes_downloaded``. The requests it watches open a
connection of their own (the client keeps none alive), so the connect events
always come.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional

import httpx

from mlx_magic.vocabulary.job import Job

#: How often a watch looks at its deadlines and its job.
WATCH_S = 0.02
_CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class Watch:
    """Shuts a request's socket down when its job is cancelled, when no text
    came within the first-token timeout, or when an answer that has begun
    is silent for the idle timeout (checked every 20 ms); ``reason`` says
    which.

    Pass :meth:`trace` as the request's ``trace`` extension, hand the
    response to :meth:`attach` once it came, and call :meth:`stop` when done.
    """

    def __init__(self, job: Job, first_token_s: float, idle_s: float, name: str):
        self.job = job
        self.first_token_s = first_token_s
        self.idle_s = idle_s
        self.name = name
        self.reason: Optional[str] = None  # "cancelled", "first token" or "idle"
        self.streaming = False  # set by the reader at the first text
        self.started = self.last_heard = time.monotonic()
        self.done = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self._socket: Optional[socket.socket] = None
        self._response: Optional[httpx.Response] = None
        self._bytes_seen = 0

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace callback: the watch starts once the connection is open."""
        if event not in _CONNECTED:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            self._socket = sock  # after TLS, the TLS socket that wraps the first
        # The first-token clock starts once the connection is open (TLS included).
        self.started = self.last_heard = time.monotonic()
        if self.thread is None and not self.done.is_set():
            self.thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
            self.thread.start()

    def attach(self, response: httpx.Response) -> None:
        """From now on, every byte of ``response`` that arrives counts as heard."""
        self._response = response
        self._bytes_seen = response.num_bytes_downloaded

    def began_streaming(self) -> None:
        """The first text came: from now on the idle timeout applies."""
        self.last_heard = time.monotonic()
        self.streaming = True

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(1.0)

    def _watch(self) -> None:
        shut: Optional[socket.socket] = None
        while not self.done.wait(WATCH_S):
            if self.reason is None and not self._due():
                continue
            # Once due, any socket that comes later (TLS wraps the first) is
            # shut down too, until the request is over.
            sock = self._socket
            if sock is not None and sock is not shut:
                shut = sock
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _due(self) -> bool:
        """Whether a deadline passed or the job was cancelled (sets ``reason``)."""
        now = time.monotonic()
        response = self._response
        if response is not None and response.num_bytes_downloaded != self._bytes_seen:
            self._bytes_seen = response.num_bytes_downloaded
            self.last_heard = now
        if self.job.cancelled:
            self.reason = "cancelled"
        elif not self.streaming and now - self.started > self.first_token_s:
            self.reason = "first token"
        elif self.streaming and now - self.last_heard > self.idle_s:
            self.reason = "idle"
        return self.reason is not None
