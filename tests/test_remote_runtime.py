"""RemoteRuntime against real OpenAI-compatible servers (mlx_lm.server and
mlx_vlm.server with the tiny random models) and a small recording server."""

import base64
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mlx_magic.protocol import (
    Failed,
    Finished,
    GenerationRequest,
    ModelReady,
    ModelSpec,
    SamplingParams,
    TokenChunk,
)
from mlx_magic.remote_runtime import RemoteRuntime, RemoteServerError

KEY_VARIABLE = "MLX_MAGIC_TEST_API_KEY"
KEY = "sk-test-5up3r-s3cr3t-9f8e7d"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(argv, log_path, ready_path, env_extra=None, timeout=90):
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    log = open(log_path, "wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, open(log_path, errors="replace").read()[-3000:]
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("the server did not start: " + open(log_path).read()[-3000:])


def end_server(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from mlx_magic.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def lm_server(tiny_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlx_lm_server")
    # An empty Hub cache, so that GET /v1/models lists just the served model.
    (folder / "hub").mkdir()
    process, url = start_server(
        [sys.executable, "-m", "mlx_lm.server", "--model", str(tiny_llama),
         "--host", "127.0.0.1", "--port", str(free_port())],
        folder / "server.log", "/v1/models", {"HF_HUB_CACHE": str(folder / "hub")},
    )
    yield url
    end_server(process)


def tiny_spec(folder):
    return ModelSpec(name=folder.name, key=str(folder), path=str(folder), source="folder")


def embedded_like_spec():
    return ModelSpec(name="smollm2", key="/nowhere/SmolLM2.gguf", path="/nowhere",
                     source="embedded", gguf="/nowhere/SmolLM2.gguf")


def request(spec, prompt="Tell me about dogs.", max_tokens=24, **kwargs):
    return GenerationRequest(model=spec, prompt=prompt,
                             sampling=SamplingParams(max_tokens=max_tokens), **kwargs)


def collect(job, timeout=60.0):
    chunks, others = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = job.next_event(0.5)
        if isinstance(event, TokenChunk):
            chunks.append(event)
        elif isinstance(event, (Finished, Failed)):
            return chunks, event, others
        elif event is not None:
            others.append(event)
    raise AssertionError("the job did not end in time")


# ---- a real mlx_lm.server ------------------------------------------------------------------


def test_streams_a_chat_completion_from_mlx_lm_server(lm_server, tiny_llama):
    runtime = RemoteRuntime([lm_server + "/v1"])
    try:
        req = request(tiny_spec(tiny_llama), max_tokens=24)
        chunks, last, others = collect(runtime.generate(req))
        assert isinstance(last, Finished), last
        assert len(chunks) >= 10 and "".join(c.text for c in chunks).strip()
        assert last.finish_reason == "length"
        stats = last.stats
        assert stats["generation_tokens"] == 24
        assert stats["prompt_tokens"] > 10  # the chat template around the prompt
        assert stats["ttft_s"] > 0 and stats["generation_tps"] > 0 and stats["prompt_tps"] > 0
        assert stats["remote_url"] == lm_server
        assert isinstance(others[0], ModelReady) and others[0].model == str(tiny_llama)
        # Greedy, the same model and template: the same words as thread mode.
        from mlx_magic.runtime import ThreadRuntime

        local = ThreadRuntime(1 << 30)
        try:
            want, _, _ = collect(local.generate(req))
        finally:
            local.stop()
        assert "".join(c.text for c in chunks) == "".join(c.text for c in want)
    finally:
        runtime.stop()


def test_default_model_is_the_servers_and_raw_uses_completions(lm_server, tiny_llama):
    runtime = RemoteRuntime(lm_server)
    try:
        chunks, chat, others = collect(runtime.generate(
            request(embedded_like_spec(), "Once upon a time", 16)))
        assert isinstance(chat, Finished), chat
        assert others[0].model == str(tiny_llama)  # the one model GET /v1/models lists
        chunks, last, _ = collect(runtime.generate(
            request(embedded_like_spec(), "Once upon a time", 16, raw=True)))
        assert isinstance(last, Finished) and last.stats["generation_tokens"] == 16
        assert len(chunks) > 3
        # No chat template around the text.
        assert 0 < last.stats["prompt_tokens"] < chat.stats["prompt_tokens"] - 10
        info = runtime.load(embedded_like_spec())
        assert info.name == str(tiny_llama)
        assert [m.name for m in runtime.models()] == [str(tiny_llama)]
        assert runtime.status().generations == 2
    finally:
        runtime.stop()


def test_cancel_mid_stream_closes_the_stream(lm_server, tiny_llama):
    runtime = RemoteRuntime(lm_server)
    try:
        job = runtime.generate(request(tiny_spec(tiny_llama), max_tokens=4000))
        seen = 0
        while seen < 10:
            if isinstance(job.next_event(30), TokenChunk):
                seen += 1
        job.cancel()
        cancelled_at = time.monotonic()
        chunks, last, _ = collect(job, timeout=10)
        assert isinstance(last, Finished) and last.finish_reason == "cancelled"
        assert time.monotonic() - cancelled_at < 1.0
        assert last.stats["generation_tokens"] < 4000
        chunks, last, _ = collect(runtime.generate(request(tiny_spec(tiny_llama), max_tokens=8)))
        assert isinstance(last, Finished) and last.finish_reason == "length"
    finally:
        runtime.stop()


def test_a_dead_url_fails_in_one_line_without_credentials():
    port = free_port()  # nothing listens there
    runtime = RemoteRuntime([f"http://bob:hunter2@127.0.0.1:{port}/v1"])
    try:
        _, last, _ = collect(runtime.generate(request(embedded_like_spec())))
        assert isinstance(last, Failed) and last.user_error
        assert last.message == (f"http://127.0.0.1:{port}: connection refused "
                                "(is the server running?)")
        for text in (last.message, repr(last), repr(runtime), str(runtime.status())):
            assert "hunter2" not in text and "bob" not in text
        with pytest.raises(RemoteServerError, match="connection refused"):
            runtime.load(embedded_like_spec())
        assert runtime.models() == []
    finally:
        runtime.stop()


# ---- a recording server ------------------------------------------------------------------------


class Recorder(http.server.ThreadingHTTPServer):
    """A tiny OpenAI-style server that records what it was sent."""

    daemon_threads = True

    def __init__(self, mode="stream"):
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.mode = mode
        self.requests = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        return body

    def _json(self, status, data):
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _unauthorized(self):
        self._json(401, {"error": {
            "message": f"Invalid key in header: {self.headers.get('Authorization')}"}})

    def do_GET(self):
        self._record()
        if self.server.mode == "401-echo":
            return self._unauthorized()
        self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self):
        self._record()
        mode = self.server.mode
        if mode == "401-echo":
            return self._unauthorized()
        if mode == "404":
            return self._json(404, {"error": {"message": "model 'x' not found"}})
        if mode == "500":
            return self._json(500, {"detail": "out of memory\nwhile loading"})
        if mode == "slow":
            time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [": keep-alive"]
        for word in ["Hello", ",", " wörld", " 🚀"]:
            events.append("data: " + json.dumps({"choices": [
                {"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
        events.append("data: " + json.dumps({"choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        # vLLM style: the usage chunk with "choices": null.
        events.append("data: " + json.dumps({"choices": None, "usage": {
            "prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}))
        events.append("data: [DONE]")
        for event in events:
            data = (event + "\r\n\r\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def test_api_key_is_sent_as_bearer_and_never_shown(recorder, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    runtime = RemoteRuntime([recorder.url], api_key_env=KEY_VARIABLE)
    shown = []
    try:
        chunks, last, others = collect(runtime.generate(request(embedded_like_spec())))
        assert isinstance(last, Finished), last
        assert "".join(c.text for c in chunks) == "Hello, wörld 🚀"
        assert last.stats["prompt_tokens"] == 11 and last.stats["generation_tokens"] == 4
        posts = [r for r in recorder.requests if r[0] == "POST"]
        assert posts[0][2]["Authorization"] == f"Bearer {KEY}"
        assert posts[0][3]["model"] == "fake-model"
        assert all(r[2]["Authorization"] == f"Bearer {KEY}" for r in recorder.requests)
        shown += [repr(e) for e in chunks + others + [last]]
        # The server echoes the key in its error: it is hidden there too.
        recorder.mode = "401-echo"
        _, failed, others = collect(runtime.generate(request(embedded_like_spec())))
        recorder.mode = "stream"
        assert isinstance(failed, Failed) and failed.user_error
        assert failed.message.startswith(f"{recorder.url} answered HTTP 401 Unauthorized: ")
        assert "***" in failed.message
        shown += [failed.message, repr(failed), str(failed.error), repr(failed.error)]
        shown += [repr(e) for e in others]
        shown += [repr(runtime), str(runtime.status()), repr(vars(runtime))]
        shown += [repr(runtime.models()), repr(runtime.load(embedded_like_spec()))]
        # A GET that fails the same way: the exception hides the key too.
        recorder.mode = "401-echo"
        with pytest.raises(RemoteServerError) as raised:
            runtime.load(embedded_like_spec())
        assert "HTTP 401" in str(raised.value) and "***" in str(raised.value)
        shown += [str(raised.value), repr(raised.value)]
    finally:
        runtime.stop()
    assert shown and not [text for text in shown if KEY in text]


def test_api_key_name_not_value_and_a_missing_variable(recorder, monkeypatch):
    with pytest.raises(ValueError) as raised:
        RemoteRuntime([recorder.url], api_key_env=KEY)
    assert KEY not in str(raised.value)
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    runtime = RemoteRuntime([recorder.url], api_key_env=KEY_VARIABLE)
    try:
        _, failed, _ = collect(runtime.generate(request(embedded_like_spec())))
        assert isinstance(failed, Failed) and failed.user_error
        assert f"The API key variable {KEY_VARIABLE} is not set" in failed.message
        assert recorder.requests == []
    finally:
        runtime.stop()


def test_http_errors_and_timeouts_are_one_line(recorder):
    runtime = RemoteRuntime([recorder.url], read_timeout_s=0.5)
    try:
        for mode, expected in [
            ("404", f"{recorder.url} answered HTTP 404 Not Found: model 'x' not found"),
            ("500", f"{recorder.url} answered HTTP 500 Internal Server Error: "
                    "out of memory while loading"),
            ("slow", f"{recorder.url}: no answer within 0.5 s"),
        ]:
            recorder.mode = mode
            runtime._endpoints[0].unhealthy_until = 0
            _, failed, _ = collect(runtime.generate(request(tiny_spec_named("x"))))
            assert isinstance(failed, Failed) and failed.user_error
            assert failed.message == expected
    finally:
        runtime.stop()


def tiny_spec_named(name):
    return ModelSpec(name=name, key=name, path=name, source="remote")


def test_first_healthy_url_is_used_and_failing_ones_are_skipped(recorder):
    broken = Recorder(mode="500")
    dead = f"http://127.0.0.1:{free_port()}"
    runtime = RemoteRuntime([dead, broken.url, recorder.url], retry_after_s=60)
    try:
        for _ in range(2):
            chunks, last, _ = collect(runtime.generate(request(tiny_spec_named("m"))))
            assert isinstance(last, Finished) and last.stats["remote_url"] == recorder.url
        # The second request went straight to the healthy URL.
        assert len([r for r in broken.requests if r[0] == "POST"]) == 1
        assert len([r for r in recorder.requests if r[0] == "POST"]) == 2
        status = runtime.status().kind
        assert f"{dead} (failing)" in status and f"{broken.url} (failing)" in status
        assert recorder.requests[0][3]["model"] == "m"
    finally:
        runtime.stop()
        broken.close()


def test_images_go_as_png_data_uris_in_content_parts(recorder):
    from PIL import Image

    image = Image.new("RGB", (8, 6), (250, 10, 20))
    runtime = RemoteRuntime(recorder.url)
    try:
        spec = ModelSpec(name="v", key="v", path="v", kind="vision", source="remote")
        _, last, _ = collect(runtime.generate(request(spec, "What is this?", images=(image,),
                                                      system="Be brief.")))
        assert isinstance(last, Finished)
        body = recorder.requests[-1][3]
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        text, picture = body["messages"][1]["content"]
        assert text == {"type": "text", "text": "What is this?"}
        assert picture["type"] == "image_url"
        prefix = "data:image/png;base64,"
        assert picture["image_url"]["url"].startswith(prefix)
        sent = Image.open(io.BytesIO(base64.b64decode(picture["image_url"]["url"][len(prefix):])))
        assert sent.size == (8, 6) and sent.convert("RGB").getpixel((0, 0)) == (250, 10, 20)
    finally:
        runtime.stop()


# ---- a real mlx_vlm.server ----------------------------------------------------------------------


@pytest.mark.vision
def test_vision_through_mlx_vlm_server(tiny_vlm, tmp_path):
    from PIL import Image

    process, url = start_server(
        [sys.executable, "-m", "mlx_vlm.server", "--model", str(tiny_vlm),
         "--host", "127.0.0.1", "--port", str(free_port())],
        tmp_path / "vlm.log", "/health",
    )
    runtime = RemoteRuntime(url)
    try:
        spec = ModelSpec(name="tiny-vlm", key=str(tiny_vlm), path=str(tiny_vlm), kind="vision",
                         source="folder")
        image = Image.new("RGB", (64, 64), (200, 30, 30))
        chunks, with_image, _ = collect(runtime.generate(
            request(spec, "Describe this image.", 12, images=(image,))))
        assert isinstance(with_image, Finished), with_image
        assert len(chunks) > 3 and with_image.stats["generation_tokens"] == 12
        _, text_only, _ = collect(runtime.generate(request(spec, "Describe this image.", 12)))
        assert isinstance(text_only, Finished), text_only
        # The image's tokens were part of the prompt.
        assert with_image.stats["prompt_tokens"] > text_only.stats["prompt_tokens"]
    finally:
        runtime.stop()
        end_server(process)


def test_connect_and_disconnect_in_the_magics(lm_server, tiny_llama, capsys):
    from IPython.core.error import UsageError

    from conftest import make_shell, run

    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, f"%mlx connect {lm_server}")
        printed = capsys.readouterr().out
        assert lm_server in printed and "Served models:" in printed
        run(shell, "%%mlx -n 12\nTell me about dogs.")
        result = shell.user_ns["_mlx"]
        assert result.text and result.stats.generation_tokens > 0
        footer = capsys.readouterr().out.strip().splitlines()[-1]
        assert "tok/s" in footer and "peak" not in footer
        run(shell, "%mlx disconnect")
        assert "Back to local models" in capsys.readouterr().out
        magics = shell.magics_manager.registry["MLXMagics"]
        assert magics.runtime == "thread"
        with pytest.raises(UsageError):
            run(shell, "%mlx connect ftp://example.com")
        with pytest.raises(UsageError):
            run(shell, "%mlx runtime moon")
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
