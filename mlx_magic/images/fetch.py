"""Downloading an image named by an http(s) URL, through httpx, within bounds.

A download is bounded in size (``max_bytes``: a declared ``Content-Length``
above it is refused before the body is read, a body that grows past it is
cut off) and in time (``timeout_s`` for each wait of the connection, and as
a deadline for the whole body, so that a server that trickles bytes cannot
outlast it). Redirects are followed only to http(s) URLs, at most
:data:`MAX_REDIRECTS` of them. Proxies are taken from the environment as
usual (``HTTPS_PROXY``, ``NO_PROXY``…); certificates are checked against
the system's store. Every failure is one
:class:`~mlx_magic.errors.ImageSourceError` line naming the URL.
"""

from __future__ import annotations

import functools
import ssl
import time
from typing import TYPE_CHECKING

from mlx_magic.errors import ImageSourceError, one_line
from mlx_magic.images.decoding import short_source

if TYPE_CHECKING:
    import httpx

#: Redirects followed for one URL (as many as the standard library's urllib).
MAX_REDIRECTS = 10
_HEADERS = {"User-Agent": "mlx_magic", "Accept-Encoding": "identity"}


def fetch(source: str, url: str, max_bytes: int, timeout_s: float) -> tuple[bytes, str]:
    """The body of an http(s) URL and its media type (``"image/png"``).

    Args:
        source: what the user wrote, for the error.
        url: the URL to download.
        max_bytes: most bytes accepted.
        timeout_s: seconds allowed for each network wait and for the body.

    Raises:
        ImageSourceError: in one line naming the URL.
    """
    import httpx  # here: importing it takes longer than loading the images package

    name = short_source(url)
    deadline = time.monotonic() + timeout_s
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout_s), verify=_system_certificates(), headers=_HEADERS
        ) as client:
            response = _follow(client, url, source, name)
            try:
                return _read(response, source, name, max_bytes, timeout_s, deadline)
            finally:
                response.close()
    except ImageSourceError:
        raise
    except httpx.TimeoutException as error:
        raise ImageSourceError(f"{name}: timed out after {timeout_s:g} s", source) from error
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, ImportError) as error:
        raise ImageSourceError(f"{name}: {_describe(error)}", source) from error


def _follow(client: httpx.Client, url: str, source: str, name: str) -> httpx.Response:
    """The streaming response at the end of the redirects, if they stay on http(s)."""
    request = client.build_request("GET", url)
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True)
        following = response.next_request
        if following is None:
            return response
        response.close()
        if following.url.scheme not in ("http", "https"):
            raise ImageSourceError(
                f"{name}: redirected to {short_source(str(following.url))!r}; "
                "only http:// and https:// are fetched",
                source,
            )
        request = following
    raise ImageSourceError(f"{name}: more than {MAX_REDIRECTS} redirects", source)


def _read(
    response: httpx.Response,
    source: str,
    name: str,
    max_bytes: int,
    timeout_s: float,
    deadline: float,
) -> tuple[bytes, str]:
    if not 200 <= response.status_code < 300:
        raise ImageSourceError(
            f"{name}: HTTP {response.status_code} {response.reason_phrase}".rstrip(), source
        )
    length = response.headers.get("Content-Length")
    if length and length.strip().isdigit() and int(length) > max_bytes:
        raise ImageSourceError(
            f"{name}: {int(length):,} bytes is more than the {max_bytes:,}-byte limit", source
        )
    chunks, received = [], 0
    # Each chunk is what one read of the socket brought, so the deadline is
    # looked at however slowly the bytes come.
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        received += len(chunk)
        if received > max_bytes:
            raise ImageSourceError(f"{name}: more than the {max_bytes:,}-byte limit", source)
        if time.monotonic() > deadline:
            raise ImageSourceError(f"{name}: timed out after {timeout_s:g} s", source)
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    return b"".join(chunks), media_type or "text/plain"


def _describe(error: BaseException) -> str:
    """What went wrong, in a few words: the operating system's error if there is one."""
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None or isinstance(cause, OSError):
            break
        cause = cause.__cause__ or cause.__context__
    shown = cause if isinstance(cause, OSError) else error
    return one_line(shown) or type(shown).__name__


@functools.lru_cache(maxsize=1)
def _system_certificates() -> ssl.SSLContext:
    """The system's CA certificates, as Python's ssl module finds them (made once)."""
    return ssl.create_default_context()
