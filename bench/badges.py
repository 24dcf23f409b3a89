"""Badges and the status page under load: prints figures, asserts nothing.

A README badge is fetched by every viewer (GitHub's image proxy, dashboards refreshing): the
server keeps each rendered badge for server_api.badges.TTL_S with its ETag, so a request is
answered from memory with no database read or thread hop. Measured over HTTPS on loopback
against `icefloe server` (one process, SQLite) holding a seeded catalogue, with wrk (1 thread,
a fixed number of connections): a kept badge, a badge's 304 answer, /healthz (the floor of any
request) and the status page (rendered every time); and, in process, the time to render a
badge anew (what each badge costs once per TTL_S).

Run as root on Debian 12 from the repo: `.venv/bin/python bench/badges.py` (installs wrk from
Debian when it is missing).
"""

import argparse
import os
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlmodel import Session

from bench.server_feeds import apt_install, seed, wrk
from core.catalog import VersionState
from core.config import ServerSettings
from harness.processes import free_port, stop
from harness.servers import server_process
from server_api.db import make_engine
from server_api.routes.status import badge_svg

IMAGE = "bench0:one:default"


def render_ms(state: Path, rounds: int) -> float:
    engine = make_engine(ServerSettings(state_dir=state).db_url)
    times = []
    with Session(engine) as session:
        for _ in range(rounds):
            t = time.perf_counter()
            badge_svg(session, IMAGE, None)
            times.append(time.perf_counter() - t)
    engine.dispose()
    return statistics.median(times) * 1000


def etag(url: str, ca: Path) -> str:
    return httpx.get(url, verify=ssl.create_default_context(cafile=ca)).headers["etag"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--serials", type=int, default=20)
    p.add_argument("--seconds", type=int, default=10, help="per wrk run")
    p.add_argument("--connections", type=int, default=64)
    args = p.parse_args()
    apt_install("wrk")
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-") as tmp:
        state = Path(tmp) / "state"
        seed(state, args.images, args.serials, VersionState.active)
        print(
            f"{os.cpu_count()} CPUs; icefloe server: 1 process, SQLite; {args.images} images x "
            f"{args.serials} versions x 2 arches; wrk 1 thread, {args.connections} connections, "
            f"{args.seconds} s each"
        )
        print(f"a badge rendered anew (in process, median of 50): {render_ms(state, 50):.1f} ms")
        port = free_port()
        with open(Path(tmp) / "server.log", "wb") as log:
            proc = server_process(state, port, log)
        url = f"https://127.0.0.1:{port}"
        try:
            badge = f"{url}/badges/{IMAGE}.svg"
            tag = etag(badge, ServerSettings(state_dir=state).cert_path)
            script = Path(tmp) / "etag.lua"
            script.write_text(f"wrk.headers['If-None-Match'] = '{tag}'\n")
            for what, target, extra in (
                ("/healthz (the floor)", f"{url}/healthz", ()),
                ("a badge, kept", badge, ()),
                ("a badge, 304 (If-None-Match)", badge, ("-s", str(script))),
                ("an arch's badge, kept", f"{url}/badges/{IMAGE}/x86_64.svg", ()),
                ("the status page (rendered each time)", f"{url}/status", ()),
            ):
                rps = wrk(target, args.seconds, args.connections, *extra)
                print(f"  {what:40} {rps:10,.0f} requests/s")
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
