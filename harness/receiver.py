"""A real HTTPS webhook receiver on loopback, as an operator's service would be: it keeps
every request (body, headers, when), can be stopped and started again on the same port (a
receiver that is down for a while), and can answer with a redirect instead."""

import http.server
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.processes import free_port


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    at: float  # time.time() when it arrived


class Receiver:
    def __init__(self, cert: Path, key: Path, redirect_to: str | None = None) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._redirect_to = redirect_to
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver._redirect_to:
                    self.send_response(307)
                    self.send_header("Location", receiver._redirect_to)
                else:
                    receiver.received.append(Received(body, dict(self.headers), time.time()))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def start(self) -> "Receiver":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: connections to the port are refused until `start` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
