"""The OpenAI-compatible wire format: request bodies and streamed answers.

What the remote runtime sends to ``/v1/chat/completions`` (or
``/v1/completions`` for ``--raw``) and how it reads the ``data`` of the
server-sent events and the error bodies that come back. Plain functions over
dicts, strings and bytes (only the standard library and Pillow for images);
the events are split by :mod:`mlx_magic.runtime.remote.streaming`, the
dispatching, retries and timeouts are the runtime's.

Requests
    ``"stream": true`` and ``"stream_options": {"include_usage": true}``: the
    system prompt, the conversation's turns and the cell as messages; images
    as content parts ``{"type": "image_url", "image_url": {"url":
    "data:image/png;base64,…"}}`` after the text of the turn that sent them.
    A ``--raw`` request has the text as ``prompt`` (system prompt and turns
    before it, separated by blank lines, as thread mode does without a
    template). Sampling: ``max_tokens``, ``temperature``, ``top_p`` and
    ``seed`` always; ``top_k``, ``min_p`` and ``repetition_penalty``
    (understood by mlx-lm, vLLM and llama.cpp) only when set.

The model name sent
    The spec's ``key`` (a Hub id, a folder path, or the name itself for a
    spec made for a server), except for the embedded default model, which a
    server does not have: then the server's own model is used — the one
    model ``GET /v1/models`` lists, or, when it lists none or several (or
    cannot say), no ``model`` field at all, which these servers answer with
    the model they were started with (:func:`model_name`).

Answers
    Every payload with text becomes a
    :class:`~mlx_magic.vocabulary.values.TokenChunk` (without token ids: the API
    does not give them). Reasoning that a server sends apart from the answer
    (a ``reasoning_content`` delta, as DeepSeek's API and older vLLM name it,
    or ``reasoning``, as newer vLLM, OpenRouter and mlx-lm's server do)
    becomes a chunk marked ``thinking``; ``--think`` / ``--no-think`` are sent
    as ``chat_template_kwargs: {"enable_thinking": …}``, which vLLM, SGLang,
    llama.cpp and mlx-lm's server pass to the chat template. Stats: ``prompt_tokens``, ``generation_tokens`` and
    ``cached_prompt_tokens`` from the ``usage`` object (or llama.cpp's
    ``timings``; failing both, the number of chunks); ``ttft_s``, tokens per
    second and prompt tokens per second are measured here (they include the
    network).

Tools
    ``--tools`` adds ``tools`` and the tool turns to a chat request, and the
    streamed ``tool_calls`` deltas are assembled into calls
    (:mod:`mlx_magic.runtime.remote.tool_wire`).
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from mlx_magic.errors import one_line
from mlx_magic.runtime.remote.tool_wire import CallAssembler, tool_fields, wire_message
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.tools import ToolCallsFound
from mlx_magic.vocabulary.values import (
    FinishReason,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    TokenChunk,
    finish_reason_of,
)

if TYPE_CHECKING:
    from PIL import Image

#: How much of an error body is read for its message.
MAX_ERROR_BODY = 64 * 1024


@dataclass
class RemoteGenerationStats(GenerationStats):
    """The stats of an answer from a server: ``server`` is its URL (without
    credentials), ``server_model`` the model it says answered; for a stream
    cut mid-answer, ``cut_after_tokens`` (the chunks of text that came) and
    ``cut_cause`` (``"URL: why"``)."""

    server_model: Optional[str] = None
    cut_after_tokens: Optional[int] = None
    cut_cause: Optional[str] = None


class StreamReader:
    """Turns the ``data:`` payloads of one answer into events and stats."""

    def __init__(self, job: Job, started: float, raw: bool, secrets: Sequence[str] = ()):
        self.job = job
        #: Text chunks past ``max_tokens`` (a server that ignores it): not shown.
        self.overflow = 0
        self.limit = job.request.sampling.max_tokens
        self.started = started
        self.raw = raw
        # A server may echo what it was sent (the Authorization header...):
        # the key never reaches the cell, even split across chunks.
        self.redactor = StreamRedactor(secrets)
        self.reasoning_redactor = StreamRedactor(secrets)
        self.chunks = 0
        #: Of ``chunks``, those of reasoning sent apart from the answer.
        self.reasoning_chunks = 0
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.finish_reason: Optional[str] = None
        self.usage: dict = {}
        self.timings: dict = {}
        self.model: Optional[str] = None
        self.done = False
        #: ``--tools``: the calls streamed so far, and the answer's text beside them.
        self.calls = CallAssembler()
        self.tools = job.request.tools is not None and not raw
        self.text: list[str] = []

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
        reasoning = None
        if self.raw:
            text = choice.get("text")
        else:
            delta = choice.get("delta") or choice.get("message") or {}
            delta = delta if isinstance(delta, dict) else {}
            text = delta.get("content")
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if self.tools:
                self.calls.take(delta.get("tool_calls"))
                if isinstance(text, str):
                    self.text.append(text)
        for piece, thinking in ((reasoning, True), (text, False)):
            if not isinstance(piece, str) or not piece:
                continue
            if self.chunks >= self.limit:
                self.overflow += 1
                continue
            now = time.perf_counter()
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            self.chunks += 1
            self.reasoning_chunks += thinking
            redactor = self.reasoning_redactor if thinking else self.redactor
            shown = redactor.feed(piece)
            if shown:
                self.job.emit(TokenChunk(text=shown, thinking=thinking))
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        return None

    @property
    def began(self) -> bool:
        """Whether the answer has begun: text, reasoning or a tool call came."""
        return self.chunks > 0 or self.calls.deltas > 0

    def tool_calls(self) -> Optional[ToolCallsFound]:
        """``--tools``: the calls of the finished answer (``None`` when none were offered)."""
        return self.calls.found("".join(self.text)) if self.tools else None

    def flush(self) -> None:
        """Emit the text held back while it could have begun a secret."""
        reasoning = self.reasoning_redactor.flush()
        if reasoning:
            self.job.emit(TokenChunk(text=reasoning, thinking=True))
        rest = self.redactor.flush()
        if rest:
            self.job.emit(TokenChunk(text=rest))

    def stats(self) -> RemoteGenerationStats:
        """What the answer's ``usage`` (or ``timings``) said, and what was measured here."""
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
        completion = usage.get("completion_tokens_details") or {}
        reasoning = _int(
            completion.get("reasoning_tokens") if isinstance(completion, dict) else None
        )
        ttft = self.first_at - self.started if self.first_at is not None else None
        generation_tps = 0.0
        first, last = self.first_at, self.last_at
        if generated > 1 and first is not None and last is not None and last > first:
            generation_tps = (generated - 1) / (last - first)
        return RemoteGenerationStats(
            prompt_tokens=prompt or 0,
            cached_prompt_tokens=cached,
            prompt_tps=(prompt / ttft) if prompt and ttft else 0.0,
            generation_tokens=generated,
            generation_tps=generation_tps,
            ttft_s=ttft,
            peak_memory_gb=0.0,  # the server's memory is not reported
            load_s=0.0,
            warm=True,
            server_model=self.model,
            thinking_tokens=reasoning if reasoning is not None else self.reasoning_chunks,
        )


def model_name(spec: ModelSpec, served: Optional[list]) -> Optional[str]:
    """The ``model`` to send: the spec's key, except for the embedded default
    model, which a server does not have: then the one model the server lists
    (``served``), or ``None`` (no ``model`` field: the server's own) when it
    lists none or several, or cannot say."""
    if spec.source != "embedded":
        return spec.key
    if served is not None and len(served) == 1:
        return served[0]
    return None


def request_body(request: GenerationRequest, model: Optional[str], raw: bool) -> dict:
    sampling = request.sampling
    body: dict = {}
    if model is not None:
        body["model"] = model
    if raw:
        body["prompt"] = request.plain_prompt()
    else:
        tools, turns = tool_fields(request)
        body["messages"] = [wire_message(m) for m in request.chat_messages(_user_message)] + turns
        body.update(tools)
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
    if request.think is not None and not raw:
        body["chat_template_kwargs"] = {"enable_thinking": request.think}
    return body


def _user_message(text: str, images: Sequence[Image.Image]) -> dict:
    """A user message; its images (each stays in the turn that sent it) as
    data URI content parts."""
    if not images:
        return {"role": "user", "content": text}
    content: list[dict] = [{"type": "text", "text": text}]
    for image in images:
        content.append({"type": "image_url", "image_url": {"url": image_data_uri(image)}})
    return {"role": "user", "content": content}


def image_data_uri(image: Image.Image) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def error_detail(body: bytes) -> str:
    """The message in an error answer's body (JSON ``error``/``detail``/``message``,
    else the text), on one line."""
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


def _message_of(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def finish_reason(reason: str) -> FinishReason:
    # mlx_magic knows stop, length, cancelled (and cut, made by the client
    # when a stream breaks, never said by a server); tool calls and content
    # filters end the answer too.
    return "stop" if reason == "cut" else finish_reason_of(reason)


def _int(*values: object) -> Optional[int]:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None


class StreamRedactor:
    """Replaces secrets in streamed text by ``***``, holding back the end of a
    chunk while it could be the start of a secret that the next chunk ends."""

    def __init__(self, secrets: Sequence[str]):
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.held = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        for secret in self.secrets:
            text = text.replace(secret, "***")
        keep = 0
        for secret in self.secrets:
            for size in range(min(len(secret) - 1, len(text)), keep, -1):
                if secret.startswith(text[-size:]):
                    keep = size
                    break
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        rest, self.held = self.held, ""
        return rest
