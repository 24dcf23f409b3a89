"""The outbound rules of a webhook delivery, against real sockets on loopback: a receiver
that never answers times out, and one that answers without end is read no further than
the cap."""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.receivers import READ_CAP, DeliveryFailed, TargetRefused, post, target_address
from harness.receiver import Receiver
from server_api.tls import ensure_self_signed

UNRESOLVED = "icefloe-receiver.invalid"  # .invalid never resolves (RFC 6761)


def serve(answer: bytes) -> Iterator[str]:
    """An HTTP server on loopback that reads a request, sends `answer` and then holds the
    connection open, sending nothing more, until the test ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
            done.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        done.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def silent() -> Iterator[str]:
    yield from serve(b"")


@pytest.fixture
def endless() -> Iterator[str]:
    """A 500 that declares a MiB and sends twice the cap of it, then stalls."""
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: 1048576\r\n\r\n"
    yield from serve(head + b"x" * (2 * READ_CAP))


def test_a_receiver_that_never_answers_times_out(silent: str):
    with pytest.raises(DeliveryFailed, match="ReadTimeout"):
        post(silent, "{}", {}, timeout_s=0.5, ca=None, address="127.0.0.1")


def test_an_endless_answer_is_read_no_further_than_the_cap(endless: str):
    with pytest.raises(DeliveryFailed) as failed:
        post(endless, "{}", {}, timeout_s=20, ca=None, address="127.0.0.1")
    assert failed.value.status == 500
    assert str(failed.value) == "answered 500: " + "x" * 300


def test_an_attempt_connects_to_the_address_it_checked_not_a_second_lookup(tmp_path: Path):
    """The name is resolved once (target_address) and the request goes to that address,
    with the name in the Host header and TLS: a name that resolves to nothing here still
    arrives, so nothing looked it up again."""
    cert, key = tmp_path / "r.crt", tmp_path / "r.key"
    ensure_self_signed(cert, key, host=UNRESOLVED)
    receiver = Receiver(cert, key).start()
    try:
        url = f"https://{UNRESOLVED}:{receiver.port}/hook"
        with pytest.raises(DeliveryFailed, match="does not resolve"):
            target_address(url, allow_local=True)
        assert post(url, "{}", {}, timeout_s=5, ca=cert, address="127.0.0.1") == 204
        (got,) = receiver.received
        assert got.headers["Host"] == f"{UNRESOLVED}:{receiver.port}"
    finally:
        receiver.stop()


def test_an_attempt_refuses_a_name_that_resolves_to_loopback():
    with pytest.raises(TargetRefused, match="loopback or link-local"):
        target_address("https://localhost:8443/hook", allow_local=False)
    assert target_address("https://localhost:8443/hook", allow_local=True) in ("127.0.0.1", "::1")
