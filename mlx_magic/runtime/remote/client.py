"""HTTP to the servers through one httpx client: auth, timeouts, errors in one
line, and no secrets in any of it.

Connections
    One :class:`httpx.Client` per runtime, shared by its threads. No
    connection is kept alive: each request opens its own, so that a connect
    timeout means what it says and a request's
    :class:`~mlx_magic.runtime.remote.watch.Watch` finds its socket. No proxy
    is taken from the environment (a local server is reached directly), and
    TLS checks certificates against the system's store, as Python's
    :mod:`ssl` module finds it.

API keys
    Read at each request from the environment variable *named* by
    ``api_key_env`` (never given as a value, never stored on an object) and
    sent as ``Authorization: Bearer …``; a ``user:password`` in a URL goes
    as basic auth instead. The key — and any password in a URL — is
    replaced by ``***`` in every message, notice, exception, repr and status
    the remote runtime makes (:meth:`ServerClient.redact`).

Errors
    Connection refused, HTTP 4xx/5xx, timeouts: one line naming the URL
    (without credentials) and the cause. What cannot be reached, answers
    5xx/429/408 or times out is :class:`~mlx_magic.errors.Unreachable`
    (another URL may answer); another 4xx is
    :class:`~mlx_magic.errors.Refused` (every server would refuse it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import time
from typing import Iterator, Optional

import httpx

from mlx_magic.errors import Cancelled, Refused, Unreachable, one_line
from mlx_magic.runtime.remote import openai_wire as wire
from mlx_magic.runtime.remote.endpoints import Endpoint
from mlx_magic.runtime.remote.watch import Watch

#: The most bytes of a model list read.
MAX_MODEL_LIST = 4 << 20


class ServerClient:
    """Requests to the servers of one runtime (see the module docstring).

    Args:
        api_key_env: the NAME of the environment variable with the API key.
        credentials: endpoint index -> ``user:password`` from its URL.
        connect_timeout_s, first_token_timeout_s, idle_timeout_s: as for
            :class:`~mlx_magic.runtime.remote.RemoteRuntime`.
    """

    def __init__(
        self,
        *,
        api_key_env: Optional[str],
        credentials: dict[int, str],
        connect_timeout_s: float,
        first_token_timeout_s: float,
        idle_timeout_s: float,
    ):
        self.api_key_env = api_key_env
        self._credentials = credentials
        self.connect_timeout_s = connect_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._http = httpx.Client(
            verify=ssl.create_default_context(),
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            headers={"User-Agent": "mlx_magic", "Accept-Encoding": "identity"},
        )

    def __repr__(self) -> str:
        return "<ServerClient>"

    @property
    def list_timeout_s(self) -> float:
        # GET /v1/models answers at once, even from a busy server.
        return max(self.connect_timeout_s, 10.0)

    @property
    def stream_backstop_s(self) -> float:
        """The socket timeout of a watched request: its watch ends it sooner."""
        return max(self.first_token_timeout_s, self.idle_timeout_s) + 5.0

    def api_key(self) -> tuple[Optional[str], Optional[str]]:
        """The key, or why there is none when one is asked for."""
        if self.api_key_env is None:
            return None, None
        key = os.environ.get(self.api_key_env)
        if not key:
            return None, (
                f"The API key variable {self.api_key_env} is not set: set it in the "
                "kernel's environment (not in the notebook's text)"
            )
        return key, None

    def secrets(self) -> list[str]:
        """The API key and the URLs' credentials, longest first."""
        secrets = []
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                secrets.append(key)
        for credentials in self._credentials.values():
            user, _, password = credentials.partition(":")
            secrets += [credentials, password]
        return sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with the API key and the URLs' credentials as ``***``."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def _headers(self, endpoint: Endpoint, key: Optional[str], events: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if events else "application/json"}
        if events:
            headers["Cache-Control"] = "no-store"
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif endpoint.index in self._credentials:
            token = base64.b64encode(self._credentials[endpoint.index].encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    @contextlib.contextmanager
    def open(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        key: Optional[str],
        body: Optional[dict] = None,
        watch: Optional[Watch] = None,
    ) -> Iterator[httpx.Response]:
        """Send a request; its 200 response, streaming, closed on leaving.

        With a ``watch``, from the moment the connection is open the watch
        shuts its socket down when the job is cancelled or a deadline
        passes; the caller stops the watch when done. Without one (model
        lists), each read times out after ``list_timeout_s``.

        Raises:
            Unreachable: no connection, a timeout, or 5xx/429/408.
            Refused: another 4xx answer.
            Cancelled: the watch's job was cancelled before the answer began.
        """
        events = bool(body and body.get("stream"))
        headers = self._headers(endpoint, key, events)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        wait = self.list_timeout_s if watch is None else self.stream_backstop_s
        timeout = httpx.Timeout(wait, connect=self.connect_timeout_s)
        extensions = {} if watch is None else {"trace": watch.trace}
        with contextlib.ExitStack() as stack:
            try:
                response = stack.enter_context(
                    self._http.stream(
                        method,
                        endpoint.url(path),
                        content=payload,
                        headers=headers,
                        timeout=timeout,
                        extensions=extensions,
                    )
                )
            except (httpx.HTTPError, OSError) as error:
                if watch is not None and (watch.reason == "cancelled" or watch.job.cancelled):
                    raise Cancelled from None
                if isinstance(error, httpx.ConnectTimeout):
                    cause = f"could not connect within {self.connect_timeout_s:g} s"
                elif isinstance(error, httpx.ConnectError):
                    cause = describe(error, self.connect_timeout_s)
                else:
                    cause = self.why(watch, error, "the server closed the connection")
                raise Unreachable(f"{endpoint.shown}: {cause}") from None
            endpoint.last_answer_at = time.monotonic()
            if response.status_code != 200:
                detail = wire.error_detail(read_at_most(response, wire.MAX_ERROR_BODY, True))
                text = f"{endpoint.shown} answered HTTP {response.status_code} "
                text = (text + response.reason_phrase).rstrip()
                if detail:
                    text += f": {detail}"
                if response.status_code >= 500 or response.status_code in (408, 429):
                    raise Unreachable(text)
                raise Refused(text)
            yield response

    def list_models(self, endpoint: Endpoint, key: Optional[str]) -> list[str]:
        """The model ids ``GET /v1/models`` lists.

        Raises:
            Unreachable, Refused: as :meth:`open`; Refused also for a list
                that cannot be read.
        """
        with self.open(endpoint, "GET", "/v1/models", key) as response:
            try:
                data = json.loads(read_at_most(response, MAX_MODEL_LIST) or b"{}")
            except (httpx.HTTPError, OSError, ValueError) as error:
                raise Refused(
                    f"{endpoint.shown} sent a model list that cannot be read: "
                    f"{type(error).__name__}"
                ) from None
        entries = data.get("data") if isinstance(data, dict) else None
        return [str(e["id"]) for e in entries or [] if isinstance(e, dict) and "id" in e]

    def why(self, watch: Optional[Watch], error: Optional[BaseException], otherwise: str) -> str:
        """Why a request that had connected ended early."""
        if watch is not None and watch.reason == "first token":
            return f"no first token within {self.first_token_timeout_s:g} s"
        if watch is not None and watch.reason == "idle":
            return f"nothing came for {self.idle_timeout_s:g} s"
        if error is None:
            return otherwise
        return describe(error, self.list_timeout_s if watch is None else self.stream_backstop_s)


def read_at_most(response: httpx.Response, limit: int, quiet: bool = False) -> bytes:
    """Up to ``limit`` bytes of a streaming response's body (what came, if
    ``quiet`` and the connection fails)."""
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= limit:
                break
    except (httpx.HTTPError, OSError):
        if not quiet:
            raise
    return bytes(data[:limit])


def closed_by_server(error: BaseException) -> bool:
    """Whether an error only says that the server closed the connection."""
    return isinstance(error, httpx.RemoteProtocolError) and (
        "peer closed" in str(error) or "disconnected" in str(error).lower()
    )


def describe(error: BaseException, timeout: float) -> str:
    """A few words for what went wrong with a request (no URL, no secrets)."""
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    if isinstance(error, httpx.RemoteProtocolError):
        if str(error).startswith("Server disconnected"):
            return "the server closed the connection without answering"
        if closed_by_server(error):
            return "the server closed the connection"
        return one_line(f"HTTP protocol error ({error})", 120)
    error = _os_error_under(error) or error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({one_line(error.reason or str(error), 80)})"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return one_line(f"{type(error).__name__}: {error}", 120)


def _os_error_under(error: BaseException) -> Optional[OSError]:
    """The operating system's error that an httpx error was raised from, if any."""
    seen: Optional[BaseException] = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
