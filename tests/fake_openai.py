"""A tiny OpenAI-compatible server on 127.0.0.1 that streams a fixed answer and
records what it was sent (errors, cut streams, keep-alive pauses, unescaped
separators and slow probes on request). ``answers`` scripts whole answers:
each POST streams the next one's deltas (``tool_calls`` pieces, text...)."""

import http.server
import json
import socket
import sys
import threading
import time


class Recorder(http.server.ThreadingHTTPServer):
    """A tiny OpenAI-style server that records what it was sent."""

    daemon_threads = True

    def __init__(self, mode="stream"):
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.mode = mode
        self.probe_delay_s = 0.0  # how long GET /v1/models takes to answer
        self.words = None  # the answer's chunks, if not the default greeting
        # Scripted answers, one per POST: each a list of (delta, finish_reason) chunks.
        self.answers = []
        self.requests = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        # A client that hung up (a timeout, a cancel) is expected here.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


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
        self._json(
            401,
            {"error": {"message": f"Invalid key in header: {self.headers.get('Authorization')}"}},
        )

    def do_GET(self):
        self._record()
        time.sleep(self.server.probe_delay_s)
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
        if mode == "close-before-text":
            self.wfile.flush()
            return self._hang_up()
        events = [": keep-alive"]
        words = list(self.server.words or ["Hello", ",", " wörld", " 🚀"])
        if mode == "endless":
            words = [f" w{index}" for index in range(2000)]  # ignores max_tokens
        if mode == "echo-auth":
            # Echoes the Authorization header, split across chunks.
            header = self.headers.get("Authorization") or ""
            words = ["You sent: "] + [header[i : i + 5] for i in range(0, len(header), 5)]
        if mode == "raw-unicode":
            words[2] = " w\u2028ö\x85rld"  # line and next-line separators, sent unescaped
        scripted = self.server.answers.pop(0) if self.server.answers else None
        for delta, finish in scripted or []:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            events.append("data: " + json.dumps(chunk))
        for word in [] if scripted is not None else words:
            events.append(
                "data: "
                + json.dumps(
                    {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]},
                    ensure_ascii=mode != "raw-unicode",
                )
            )
        if scripted is None:
            finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            events.append("data: " + json.dumps(finish))
        # vLLM style: the usage chunk with "choices": null.
        events.append(
            "data: "
            + json.dumps(
                {
                    "choices": None,
                    "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
                }
            )
        )
        events.append("data: [DONE]")
        if mode in ("cut", "idle"):
            events = events[:4]  # the keep-alive and "Hello", ",", " wörld"
        if mode == "pauses":
            # Silent but for keep-alive comments for longer than an idle timeout.
            events[4:4] = [": keep-alive"] * 6
        for event in events:
            data = (event + "\r\n\r\n").encode()
            try:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client stopped reading (-n reached, a cancel)
            time.sleep(
                0.2
                if event == ": keep-alive" and mode == "pauses"
                else 0.001
                if mode == "endless"
                else 0.01
            )
        if mode == "cut":
            return self._hang_up()  # no [DONE], no last chunk: the socket just closes
        if mode == "idle":
            time.sleep(3)  # silent, the connection open
            return self._hang_up()
        self.wfile.write(b"0\r\n\r\n")

    def _hang_up(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
