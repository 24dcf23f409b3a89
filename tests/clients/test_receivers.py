"""The outbound rules of a webhook delivery, against real sockets on loopback: a receiver
that never answers times out, and one that answers without end is read no further than
the cap."""

import socket
import threading
from collections.abc import Iterator

import pytest

from clients.receivers import READ_CAP, DeliveryFailed, post


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
        post(silent, "{}", {}, timeout_s=0.5, ca=None)


def test_an_endless_answer_is_read_no_further_than_the_cap(endless: str):
    with pytest.raises(DeliveryFailed) as failed:
        post(endless, "{}", {}, timeout_s=20, ca=None)
    assert failed.value.status == 500
    assert str(failed.value) == "answered 500: " + "x" * 300
