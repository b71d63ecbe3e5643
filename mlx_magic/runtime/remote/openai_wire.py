"""The OpenAI-compatible wire format: request bodies and streamed answers.

What :mod:`mlx_magic.runtime.remote.runtime` sends to ``/v1/chat/completions`` (or
``/v1/completions`` for ``--raw``) and how it reads the server-sent events
and error bodies that come back. Plain functions over dicts and bytes (only
the standard library and Pillow for images); the dispatching, retries and
timeouts are the runtime's.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import time
from typing import Optional

from mlx_magic.errors import one_line
from mlx_magic.runtime.values import GenerationRequest, Job, TokenChunk

#: How much of an error body is read for its message.
MAX_ERROR_BODY = 64 * 1024


class StreamReader:
    """Turns the ``data:`` payloads of one answer into events and stats."""

    def __init__(self, job: Job, started: float, raw: bool):
        self.job = job
        self.started = started
        self.raw = raw
        self.chunks = 0
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.finish_reason: Optional[str] = None
        self.usage: dict = {}
        self.timings: dict = {}
        self.model: Optional[str] = None
        self.done = False

    def take(self, data: str) -> Optional[str]:
        """Handle one payload; returns the server's error message, if it is one."""
        try:
            payload = json.loads(data)
        except ValueError:
            return None  # not JSON: a keep-alive or an extension; skip it
        if not isinstance(payload, dict):
            return None
        if payload.get("error"):
            return _message_of(payload["error"])
        if isinstance(payload.get("model"), str):
            self.model = payload["model"]
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("timings"), dict):
            self.timings = payload["timings"]
        choices = payload.get("choices") or []
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is None:
            return None
        if self.raw:
            text = choice.get("text")
        else:
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            now = time.perf_counter()
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            self.chunks += 1
            self.job.emit(TokenChunk(text=text))
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        return None

    def stats(self) -> dict:
        usage, timings = self.usage, self.timings
        details = usage.get("prompt_tokens_details") or {}
        prompt = _int(usage.get("prompt_tokens"), timings.get("prompt_n"))
        generated = _int(usage.get("completion_tokens"), timings.get("predicted_n"))
        if generated is None:
            generated = self.chunks
        cached = (
            _int(
                details.get("cached_tokens") if isinstance(details, dict) else None,
                timings.get("cache_n"),
            )
            or 0
        )
        ttft = self.first_at - self.started if self.first_at is not None else None
        generation_tps = 0.0
        if generated > 1 and self.first_at is not None and self.last_at > self.first_at:
            generation_tps = (generated - 1) / (self.last_at - self.first_at)
        return {
            "prompt_tokens": prompt or 0,
            "cached_prompt_tokens": cached,
            "prompt_tps": (prompt / ttft) if prompt and ttft else 0.0,
            "generation_tokens": generated,
            "generation_tps": generation_tps,
            "ttft_s": ttft,
            "peak_memory_gb": 0.0,  # the server's memory is not reported
            "load_s": 0.0,
            "warm": True,
        }


def request_body(request: GenerationRequest, model: Optional[str], raw: bool) -> dict:
    sampling = request.sampling
    body: dict = {}
    if model is not None:
        body["model"] = model
    if raw:
        body["prompt"] = request.plain_prompt()
    else:
        body["messages"] = request.chat_messages(_user_message)
    body.update(
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
    )
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.top_k:
        body["top_k"] = sampling.top_k
    if sampling.min_p:
        body["min_p"] = sampling.min_p
    if sampling.repetition_penalty is not None:
        body["repetition_penalty"] = sampling.repetition_penalty
    return body


def _user_message(text: str, images) -> dict:
    """A user message; its images (each stays in the turn that sent it) as
    data URI content parts."""
    if not images:
        return {"role": "user", "content": text}
    content = [{"type": "text", "text": text}]
    for image in images:
        content.append({"type": "image_url", "image_url": {"url": image_data_uri(image)}})
    return {"role": "user", "content": content}


def image_data_uri(image) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def sse_data(response, heard=None):
    """The ``data`` of each server-sent event (text/event-stream), as strings;
    ``heard()`` is called for every line that arrives (keep-alives too)."""
    lines: list[str] = []
    while True:
        raw = response.readline(1 << 24)
        if not raw:
            break
        if heard is not None:
            heard()
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        # Not closed by a blank line: servers that skip it still meant it.
        yield "\n".join(lines)


def error_detail(response) -> str:
    try:
        body = response.read(MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        return ""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return one_line(text, 200)
    if isinstance(data, dict):
        for name in ("error", "detail", "message"):
            if data.get(name):
                return one_line(_message_of(data[name]), 200)
    return one_line(text, 200)


def _message_of(error) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def finish_reason(reason: str) -> str:
    # mlx_magic knows stop, length, cancelled (and cut, made here); tool
    # calls and content filters end the answer too.
    return reason if reason in ("stop", "length", "cancelled") else "stop"


def _int(*values) -> Optional[int]:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None
