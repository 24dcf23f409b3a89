"""A counting HTTP proxy on loopback, for benchmarks: with `http_proxy` pointing at it, every
plain-HTTP request the workers make (httpx's InRelease downloads, debootstrap's wget) passes
through it, so what a refresh fetched from the mirror is counted, not guessed."""

import http.client
import io
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from harness.processes import environ


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # per path
        self.bytes = 0

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes = 0

    def downloads(self, name: str) -> int:
        """Requests whose path ends with `name` (e.g. "/InRelease")."""
        with self.lock:
            return sum(n for path, n in self.requests.items() if path.endswith(name))


def _handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            upstream = http.client.HTTPConnection(url.netloc, timeout=60)
            path = url.path + (f"?{url.query}" if url.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
            upstream.request("GET", path, headers=headers)
            answer = upstream.getresponse()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            sent = _copy(answer, self.wfile)
            upstream.close()
            with counts.lock:
                counts.requests[url.path] += 1
                counts.bytes += sent

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward


def _copy(source: http.client.HTTPResponse, sink: io.BufferedIOBase) -> int:
    sent = 0
    while block := source.read(1 << 16):
        sink.write(block)
        sent += len(block)
    return sent


@contextmanager
def counting_proxy() -> Iterator[Counts]:
    """Serve the proxy and point this process's (and its children's) `http_proxy` at it."""
    counts = Counts()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(counts))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = {
        "http_proxy": f"http://127.0.0.1:{server.server_port}",
        "no_proxy": "127.0.0.1,localhost",
    }
    try:
        with environ(proxy):
            yield counts
    finally:
        server.shutdown()
        server.server_close()
