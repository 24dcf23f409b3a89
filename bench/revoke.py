"""Revocation benchmark: the time from `icefloe revoke` to the version being absent from
every feed. Prints figures; asserts nothing.

Per round an image gets two active-ready versions (keep_active=1: the second retires the
first), then `icefloe revoke` runs as an operator runs it (a new process, through nginx
like every other client) while this process polls, as fast as it can, the three places a
host reads: the server's own feed (a fresh URL), the public channel's static tree that
nginx sends, and a private feed through nginx. Figures per round: the command's wall
time, when each place stopped listing the version (from the command's start), and
whether any still listed it once the command had answered (it must not). The API call
alone (no process start) is timed too.

Run as root on Debian 12 from the repo with nginx and njs installed (deploy/setup-host
--role dev): `.venv/bin/python bench/revoke.py [--rounds 20]`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import httpx

from harness.front import Front, credential, listed, nginx_front, wait_written
from harness.publish import new_image, publish
from harness.servers import RunningServer, client, http, token

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.005


def places(
    server: RunningServer, front: Front, private: str
) -> dict[str, tuple[httpx.Client, str]]:
    return {
        "server": (http(server), f"/channels/active/fresh/{uuid.uuid4().hex[:8]}"),
        "static tree": (httpx.Client(base_url=front.url, verify=front.trust()), "/channels/active"),
        "private feed": (httpx.Client(base_url=front.url, verify=front.trust()), private),
    }


def watch(c: httpx.Client, base: str, serial: str, gone: dict[str, float], name: str) -> None:
    """Poll every POLL_S until the feed no longer lists `serial`: when, by the monotonic
    clock (the server runs in this process: polling flat out would slow it)."""
    while serial in listed(c.get(f"{base}/streams/v1/images.json").content):
        time.sleep(POLL_S)
    gone[name] = time.monotonic()


def one_round(server: RunningServer, front: Front, operator: str, tmp: Path, cli: bool) -> dict:
    image = new_image(arches=["x86_64"])
    publish(server, image, tmp=tmp / "old", to=("testing", "active"))
    serial = publish(server, image, tmp=tmp / "new", to=("testing", "active")).serial
    private, _ = credential(server, "active")
    wait_written(server)
    clients = places(server, front, private)
    gone: dict[str, float] = {}
    watchers = [
        threading.Thread(target=watch, args=(c, base, serial, gone, name))
        for name, (c, base) in clients.items()
    ]
    for w in watchers:
        w.start()
    start = time.monotonic()
    if cli:
        env = os.environ | {
            "ICEFLOE_SERVER_URL": front.url,
            "ICEFLOE_SERVER_CA": str(front.cert),
            "ICEFLOE_OPERATOR_TOKEN": operator,
            "ICEFLOE_LOG_LEVEL": "ERROR",
        }
        argv = [sys.executable, "-m", "cli.main", "revoke", image.name, serial, "--reason", "bench"]
        subprocess.run(argv, env=env, cwd=REPO, check=True, capture_output=True, timeout=60)
    else:
        with closing(client(server, operator)) as ops:
            ops.revoke(image.name, serial, "bench")
    answered = time.monotonic()
    still = [
        name
        for name, (c, base) in clients.items()
        if serial in listed(c.get(f"{base}/streams/v1/images.json").content)
    ]
    for w in watchers:
        w.join(30)
    for c, _ in clients.values():
        c.close()
    return {
        "answered": answered - start,
        "gone": {name: at - start for name, at in gone.items()},
        "still listed after the answer": still,
    }


def report(title: str, rounds: list[dict]) -> None:
    def line(what: str, values: list[float]) -> str:
        return (
            f"  {what:<34} median {statistics.median(values) * 1000:7.1f} ms, "
            f"max {max(values) * 1000:7.1f} ms"
        )

    print(f"{title} ({len(rounds)} rounds)")
    print(line("answered", [r["answered"] for r in rounds]))
    for name in rounds[0]["gone"]:
        print(line(f"absent from the {name}", [r["gone"][name] for r in rounds]))
    print(line("absent from every feed", [max(r["gone"].values()) for r in rounds]))
    late = sum(1 for r in rounds if r["still listed after the answer"])
    print(f"  rounds where a feed still listed it after the answer: {late}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-revoke-") as work:
        tmp = Path(work)
        with (
            RunningServer(tmp / "server", accel_redirect=True, keep_active=1) as server,
            nginx_front(server, tmp / "nginx") as front,
        ):
            operator = token(server, "operator", "bench")
            for cli in (True, False):
                rounds = [
                    one_round(server, front, operator, tmp / f"{cli}-{n}", cli)
                    for n in range(args.rounds)
                ]
                report("`icefloe revoke` (a new process)" if cli else "the API call", rounds)


if __name__ == "__main__":
    main()
