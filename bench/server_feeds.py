"""Image server benchmark: prints figures, asserts nothing.

1. images.json for 10,000 versions: render time cold (first request after a catalog
   change) and cached, in process and over HTTPS.
   "After a change": one image changed, the feed cache re-renders only that image.
2. Feed requests per second over HTTPS on loopback: server_api against the same bytes
   served as a static file by Debian's nginx (one worker process each), driven by wrk
   with a bounded number of connections and a fixed duration.
3. nginx in front as deploy/nginx configures it (one worker), the server behind it with
   X-Accel-Redirect: the public feed from the static tree, a private feed (nginx's njs
   checks the credential file the server keeps, nginx sends the tree's file) and a 16 MiB
   file through the private path, each against nginx serving the same bytes as a plain
   file (both up at once, the plain file measured before and after the others); and a no-op
   request to the server through nginx, the ceiling of any check the server makes per
   request.
4. server_api's peak memory (VmHWM) while a 2 GiB file is uploaded to it.

Run as root on Debian 12 from the repo: `.venv/bin/python bench/server_feeds.py`.
It installs nginx, its njs module and wrk from Debian when they are missing, starts everything it
needs on 127.0.0.1 in a temporary directory, and stops what it started by PID.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import insert, update
from sqlmodel import Session, col

from core.catalog import Channel, DeltaState, Flavour, VersionState
from core.config import ServerSettings
from deploy import nginx as nginx_site
from harness.processes import free_port, stop, wait_for_port
from harness.servers import server_process
from harness.waiting import wait_until
from server_api.db import make_engine
from server_api.feeds import FeedCache, generation, render
from server_api.models import Event, Image, Version, VersionArch
from server_api.schemas import CredentialCreate
from server_api.store import FileStore
from server_api.tls import ensure_self_signed
from server_api.tokens import create_token, issue_credential

ARCHES = ("x86_64", "i686")
MiB = 1 << 20


def apt_install(*packages: str) -> None:
    """Debian's `packages` whose program (or, for the njs module, file) is missing."""
    present = {"libnginx-mod-http-js": Path(nginx_site.NJS_MODULE).exists()}
    missing = [
        p for p in packages if not present.get(p, shutil.which(p) or shutil.which(f"/usr/sbin/{p}"))
    ]
    if missing:
        print(f"installing {' '.join(missing)} from Debian ...", flush=True)
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            check=True,
            capture_output=True,
        )


def seed(state_dir: Path, images: int, serials: int, state: VersionState) -> None:
    """A catalog of images x serials versions (every arch each), all in `state`."""
    engine = make_engine(ServerSettings(state_dir=state_dir).db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Image),
            [
                {
                    "name": f"bench{i}:one:default",
                    "os": f"bench{i}",
                    "release": "one",
                    "variant": "default",
                    "release_title": "One",
                    "aliases": [f"bench{i}"],
                    "requirements": {},
                }
                for i in range(images)
            ],
        )
        conn.execute(
            insert(Version),
            [
                {
                    "id": i * serials + s + 1,
                    "image": f"bench{i}:one:default",
                    "serial": f"20260101-{s:04d}",
                    "state": state,
                    "required_checks": ["boots"],
                    "created_at": now,
                    "state_changed_at": now,
                }
                for i in range(images)
                for s in range(serials)
            ],
        )
        rows = []
        for vid in range(1, images * serials + 1):
            for arch in ARCHES:
                h = hashlib.sha256(f"{vid}{arch}".encode()).hexdigest()
                rows.append(
                    {
                        "version_id": vid,
                        "arch": arch,
                        "fingerprint": h,
                        "metadata_sha256": h,
                        "metadata_size": 1024,
                        "rootfs_sha256": h[::-1],
                        "rootfs_size": 10 * MiB,
                        # Made-up files: nothing for the server's delta maker to try
                        # (thousands of failing tries beside the measured requests).
                        "delta_state": DeltaState.none,
                    }
                )
        conn.execute(insert(VersionArch), rows)
        conn.execute(
            insert(Event),
            [
                {
                    "version_id": 1,
                    "actor": "bench",
                    "from_state": None,
                    "to_state": state,
                    "reason": "seeded",
                    "at": now,
                }
            ],
        )
    engine.dispose()


def bump(state_dir: Path) -> None:
    """A catalog change (a new event), so the next feed request renders anew."""
    engine = make_engine(ServerSettings(state_dir=state_dir).db_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Event),
            [
                {
                    "version_id": 1,
                    "actor": "bench",
                    "from_state": "testing",
                    "to_state": "testing",
                    "reason": "bump",
                    "at": datetime.now(UTC),
                }
            ],
        )
    engine.dispose()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


@contextmanager
def server(
    state_dir: Path, env: dict[str, str] | None = None, log: IO[bytes] | None = None
) -> Iterator[tuple[str, int, ssl.SSLContext]]:
    """`icefloe server` as a subprocess on a free port: (url, pid, trust). `env` adds
    settings (a database URL, say); `log` takes its output instead of the terminal."""
    settings = ServerSettings(state_dir=state_dir, port=free_port())
    ensure_self_signed(settings.cert_path, settings.key_path, settings.host)
    environ = {**(env or {}), "ICEFLOE_LOG_LEVEL": "WARNING"}
    proc = server_process(state_dir, settings.port, log, **environ)
    try:
        trust = ssl.create_default_context(cafile=settings.cert_path)
        yield f"https://127.0.0.1:{settings.port}", proc.pid, trust
    finally:
        stop(proc, 15)


@contextmanager
def nginx(root: Path, work: Path, cert: Path, key: Path) -> Iterator[str]:
    """Debian's nginx serving `root` over HTTPS on loopback, one worker; stopped by PID."""
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    types {{ application/json json; }}
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
    }}
}}
""")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work)])
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc, work / "nginx-error.log", 10)
        yield url
    finally:
        stop(proc, 10, signal.SIGQUIT)  # graceful stop of the master and its worker


def wrk(url: str, seconds: int, connections: int, *options: str) -> float:
    """Requests per second; `options`: more of wrk's (a script)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *options, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, f"wrk printed no rate:\n{out}"
    return float(found[1])


def bench_render(work: Path, versions: int, rounds: int) -> Path:
    state = work / "big"
    images = versions // 10
    seed(state, images, 10, VersionState.testing)
    engine = make_engine(ServerSettings(state_dir=state).db_url)
    with Session(engine) as session:
        cold = []
        for _ in range(rounds):
            t = time.perf_counter()
            feed = render(session, Channel.testing, None, 1)
            cold.append(time.perf_counter() - t)
        cache = FeedCache()
        cache.get(session, Channel.testing)
        t = time.perf_counter()
        for _ in range(rounds * 10):
            cache.get(session, Channel.testing)
        cached = (time.perf_counter() - t) / (rounds * 10)
        changed = []
        for _ in range(rounds):
            bump(state)  # an event of one image's version
            t = time.perf_counter()
            cache.get(session, Channel.testing)
            changed.append(time.perf_counter() - t)
    engine.dispose()
    print(
        f"\nimages.json for {versions:,} versions ({versions * len(ARCHES):,} arch entries,"
        f" {len(feed.images) / MiB:.1f} MiB)"
    )
    print(f"  in process, cold render      {ms(statistics.median(cold))} (median of {rounds})")
    print(
        f"  in process, after a change   {ms(statistics.median(changed))} "
        f"(one image re-rendered, the rest joined; target < 200 ms)"
    )
    print(f"  in process, cached           {ms(cached)} (generation query only)")
    return state


def bench_render_http(state: Path, rounds: int) -> None:
    with server(state) as (url, _, trust), httpx.Client(verify=trust, timeout=120) as http:
        feed_url = f"{url}/channels/testing/streams/v1/images.json"
        cold, cached = [], []
        for _ in range(rounds):
            bump(state)
            t = time.perf_counter()
            http.get(feed_url).raise_for_status()
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = http.get(feed_url)
            cached.append(time.perf_counter() - t)
            etag = r.headers["etag"]
        t = time.perf_counter()
        http.get(feed_url, headers={"If-None-Match": etag})
        not_modified = time.perf_counter() - t
    print(f"  over HTTPS, cold             {ms(statistics.median(cold))} (render + transfer)")
    print(f"  over HTTPS, cached           {ms(statistics.median(cached))} (transfer)")
    print(f"  over HTTPS, If-None-Match    {ms(not_modified)} (304)")


def bench_rps(work: Path, seconds: int, connections: int, big: Path) -> None:
    small = work / "small"
    seed(small, 20, 3, VersionState.active)  # a typical fleet's active channel
    cases = [
        ("20 images x 3 versions, active", small, "active"),
        ("10,000 versions, testing", big, "testing"),
    ]
    print(f"\nfeed requests/s over HTTPS, wrk 1 thread, {connections} connections, {seconds} s")
    for label, state, channel in cases:
        path = f"channels/{channel}/streams/v1/images.json"
        with server(state) as (url, _, trust):
            body = httpx.get(f"{url}/{path}", verify=trust).content
            api = wrk(f"{url}/{path}", seconds, connections)
        root = work / f"www-{channel}"
        (root / Path(path).parent).mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(body)
        cert = state / "tls"
        with nginx(root, work, cert / "server.crt", cert / "server.key") as url:
            static = wrk(f"{url}/{path}", seconds, connections)
        print(
            f"  {label} ({len(body) / 1024:,.0f} KiB): server_api {api:8,.0f}/s   "
            f"nginx static {static:8,.0f}/s   ({api / static:.0%} of nginx)"
        )


def real_file(state: Path, size: int) -> tuple[str, int]:
    """A file of `size` random bytes in the store, listed as the rootfs of the catalog's
    first version (seeded rows list made-up sha256s); its sha256."""
    settings = ServerSettings(state_dir=state)
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    FileStore(settings.files_dir).path(sha).parent.mkdir(parents=True, exist_ok=True)
    FileStore(settings.files_dir).path(sha).write_bytes(data)
    engine = make_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(
            update(VersionArch)
            .where(col(VersionArch.id) == 1)
            .values(rootfs_sha256=sha, rootfs_size=size)
        )
    engine.dispose()
    bump(state)
    return sha, size


def private_feed(state: Path, channel: Channel) -> str:
    engine = make_engine(ServerSettings(state_dir=state).db_url)
    with Session(engine) as session:
        req = CredentialCreate(name="bench", channel=channel, flavour=Flavour.lxd)
        path = issue_credential(session, req).feed_path
    engine.dispose()
    return path


def wait_for_trees(state: Path) -> None:
    """Until the server's static trees show its catalog's newest change."""
    engine = make_engine(ServerSettings(state_dir=state).db_url)
    with Session(engine) as session:
        newest = generation(session)
    engine.dispose()
    marker = ServerSettings(state_dir=state).static_root / "generation"
    wait_until(
        lambda: marker.exists() and int(marker.read_text() or -1) >= newest,
        "the static trees written",
        120,
        0.1,
    )


@contextmanager
def nginx_front(state: Path, work: Path, upstream: str) -> Iterator[str]:
    """nginx as deploy/nginx configures it, one worker, in front of the server of `state`
    at `upstream` (its URL)."""
    settings = ServerSettings(state_dir=state, port=httpx.URL(upstream).port)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    site = nginx_site.site(settings, f"127.0.0.1:{port}", settings.cert_path, settings.key_path)
    with nginx_site.serving(site, work / "front", url):
        yield url


@contextmanager
def plain_nginx(root: Path, work: Path, settings: ServerSettings) -> Iterator[str]:
    """nginx serving `root` as plain files, with the same main configuration and TLS as the
    front (deploy/nginx's standalone): only the site differs."""
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    site = nginx_site.plain_site(f"127.0.0.1:{port}", settings.cert_path, settings.key_path, root)
    with nginx_site.serving(site, work / "plain", url):
        yield url


def bench_front(work: Path, seconds: int, connections: int, file_mib: int) -> None:
    """Requests/s and bytes/s through nginx in front, against nginx serving plain files."""
    state = work / "front-state"
    seed(state, 20, 3, VersionState.active)
    sha, size = real_file(state, file_mib * MiB)
    private = private_feed(state, Channel.active)
    feed = "streams/v1/images.json"
    env = {"ICEFLOE_SERVER_ACCEL_REDIRECT": "true"}
    root = work / "www-front"
    (root / "streams/v1").mkdir(parents=True)
    shutil.copyfile(FileStore(ServerSettings(state_dir=state).files_dir).path(sha), root / sha)
    with (
        server(state, env) as (url, _, trust),
        plain_nginx(root, work, ServerSettings(state_dir=state)) as plain,
    ):
        wait_for_trees(state)
        with nginx_front(state, work, url) as front:
            body = httpx.get(f"{front}/channels/active/{feed}", verify=trust).content
            (root / feed).write_bytes(body)
            got = httpx.get(f"{front}{private}/files/{sha}", verify=trust)
            assert got.status_code == 200 and len(got.content) == size, got.status_code
            # Plain before and after the others, all at one time: the machine's load moves.
            static_rps = wrk(f"{plain}/{feed}", seconds, connections)
            public_rps = wrk(f"{front}/channels/active/{feed}", seconds, connections)
            private_rps = wrk(f"{front}{private}/{feed}", seconds, connections)
            floor_rps = wrk(f"{front}/healthz", seconds, connections)
            static_rps = (static_rps + wrk(f"{plain}/{feed}", seconds, connections)) / 2
            static_file_rps = wrk(f"{plain}/{sha}", seconds, 4)
            file_rps = wrk(f"{front}{private}/files/{sha}", seconds, 4)
            static_file_rps = (static_file_rps + wrk(f"{plain}/{sha}", seconds, 4)) / 2
    print(
        f"\nnginx in front (deploy/nginx, 1 worker) vs the same nginx serving plain files,"
        f" wrk 1 thread, {seconds} s each; feed of 20 images x 3 versions ({len(body):,} bytes)"
    )
    print(
        f"  nginx plain file, feed         {static_rps:8,.0f}/s   (mean of a run before, one after)"
    )
    print(
        f"  public feed, static tree       {public_rps:8,.0f}/s   "
        f"({public_rps / static_rps:.2f}x of plain; target >= 0.9x)"
    )
    print(
        f"  private feed, njs check        {private_rps:8,.0f}/s   "
        f"({private_rps / static_rps:.2f}x of plain; target >= 0.5x)"
    )
    print(
        f"  no-op server request, /healthz {floor_rps:8,.0f}/s   "
        f"({floor_rps / static_rps:.2f}x of plain: the ceiling of any per-request check)"
    )
    mib_s, static_mib_s = file_rps * file_mib, static_file_rps * file_mib
    print(
        f"  {file_mib} MiB file, 4 connections: private path {mib_s:,.0f} MiB/s, plain file "
        f"{static_mib_s:,.0f} MiB/s ({mib_s / static_mib_s:.2f}x; target >= 0.8x)"
    )


def vm(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found, f"no {field} in /proc/{pid}/status"
    return int(found[1]) * 1024


def bench_upload(work: Path, gib: float) -> None:
    state = work / "upload"
    block = os.urandom(MiB)
    blocks = int(gib * 1024)
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(block)
    sha, size = digest.hexdigest(), blocks * MiB
    engine = make_engine(ServerSettings(state_dir=state).db_url)
    with Session(engine) as session:
        token = create_token(session, "bench", "publisher")
    engine.dispose()

    def body() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    with server(state) as (url, pid, trust):
        before = vm(pid, "VmHWM")
        peak_rss, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak_rss[0] = max(peak_rss[0], vm(pid, "VmRSS"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        t = time.perf_counter()
        r = httpx.put(
            f"{url}/api/v1/files/{sha}",
            params={"size": size},
            content=body(),
            headers={"Authorization": f"Bearer {token}", "Content-Length": str(size)},
            verify=trust,
            timeout=600,
        )
        took = time.perf_counter() - t
        done.set()
        sampler.join()
        r.raise_for_status()
        after = vm(pid, "VmHWM")
    print(
        f"\nupload of {size / (1 << 30):.1f} GiB over HTTPS: {took:.1f} s "
        f"({size / MiB / took:,.0f} MiB/s), stored={r.json()['stored']}"
    )
    print(
        f"  server_api VmHWM before {before / MiB:6.1f} MiB, after {after / MiB:6.1f} MiB "
        f"(+{(after - before) / MiB:.1f} MiB); highest VmRSS sampled {peak_rss[0] / MiB:.1f} MiB"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=10, help="per wrk run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--file-mib", type=int, default=16, help="the private-path download")
    p.add_argument("--upload-gib", type=float, default=2.0)
    args = p.parse_args()
    apt_install("nginx", "libnginx-mod-http-js", "wrk")
    print(f"{os.cpu_count()} CPUs; server_api: uvicorn, 1 process, SQLite; nginx: 1 worker")
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-") as tmp:
        work = Path(tmp)
        big = bench_render(work, args.versions, args.rounds)
        bench_render_http(big, args.rounds)
        bench_rps(work, args.seconds, args.connections, big)
        bench_front(work, args.seconds, args.connections, args.file_mib)
        bench_upload(work, args.upload_gib)


if __name__ == "__main__":
    main()
