"""Mixed load on the image server: prints figures, then checks the catalog's invariants.

`icefloe server` runs as a subprocess with its own state directory and port (SQLite, or
with --postgres a fresh Postgres catalog from deploy/postgres-for-tests). After seeding
a few images, --clients HTTPS clients on loopback (200 by default) run for --seconds
(60): public and private feed polls (with and without If-None-Match), API reads
(listings, a version, its events), file downloads with Range, uploads (most normal, some
slow, some stalled mid-body, a few abandoned), publishes of new serials and re-publishes
(some of one serial at once), transitions racing each other (promote vs promote, promote
vs cancel), and an operator's gc with grace 0 every few seconds.

It prints requests/s and p50/p99 latency per kind, the 5xx answers and the unexpected
answers per kind, then checks through the API and the store: every file a live version
or a feed lists exists and hashes right; each version's events replay to its state; each
racing pair had exactly one winner, the one whose answer said so, and each racing
publish one 201 and the rest 200 (or all 409 when gc took its files first); no image
keeps more active versions than retention allows; no partial upload is left in the
store. Exit status 1 on any 5xx, unanswered request or broken invariant.

Run from the repo: `PYTHONPATH=. .venv/bin/python bench/load.py [--postgres]`.
"""

import argparse
import asyncio
import hashlib
import itertools
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session

from bench.server_feeds import server
from core.catalog import (
    ArchFiles,
    AssessmentReport,
    BuiltFile,
    EventView,
    FileType,
    TransitionRequest,
    VersionCreate,
    VersionState,
    VersionView,
)
from core.config import REPO_DIR, ServerSettings
from core.spec import ImageSpec
from server_api.db import make_engine
from server_api.tokens import create_token

KiB = 1 << 10
ARCHES = ("x86_64", "i686")
IMAGES = [
    ImageSpec.model_validate(
        {"os": f"load{i}", "release": "one", "arches": list(ARCHES), "checks": ["boots"]}
    )
    for i in range(6)
]
KEEP_ACTIVE = ServerSettings.model_fields["keep_active"].default
# Share of the clients per role; the rest poll public feeds. One more client runs gc.
ROLES = {
    "feed_private": 0.15,
    "api_read": 0.075,
    "download": 0.15,
    "upload": 0.10,
    "upload_slow": 0.05,
    "upload_stalled": 0.075,
    "upload_abandoned": 0.025,
    "publish": 0.10,
    "race": 0.10,
}
# What each kind of request may answer; anything else is counted as unexpected.
EXPECTED: dict[str, Collection[int | str]] = {
    "feed_public": {200, 304},
    "feed_private": {200, 304},
    "api_read": {200},
    "download": {206},
    "upload": {201},
    "upload_slow": {201},
    # The server may give up on an idle body (408) and hang up before we read its answer
    # (closing a socket with unread bytes resets it).
    "upload_stalled": {201, 408, "WriteError", "ReadError", "RemoteProtocolError"},
    "upload_abandoned": {"abandoned"},
    "publish_upload": {201},
    # 409 "not uploaded yet": gc (grace 0) took the files before the publish listed them.
    "publish": {201, 409},
    "republish": {200},
    "publish_race": {200, 201, 409},
    "to_testing": {200},
    "cancel": {200},
    "assess": {200},
    "promote_race": {200, 409},
    "gc": {200},
    "seed": {200, 201},
}
SAMPLES = 20_000  # latencies kept per kind (reservoir): memory stays bounded


class Abandon(Exception):
    """A client that gives up mid-upload: raised from its body, so the connection drops."""


@dataclass
class Stats:
    count: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, Counter[int | str]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    server_errors: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def record(self, kind: str, seconds: float, answer: int | str, what: Callable[[], str]) -> None:
        self.count[kind] += 1
        self.answers[kind][answer] += 1
        kept = self.latency[kind]
        if len(kept) < SAMPLES:
            kept.append(seconds)
        elif (i := self.rng.randrange(self.count[kind])) < SAMPLES:
            kept[i] = seconds
        if isinstance(answer, int) and answer >= 500:
            self.server_errors.append(what())
        elif answer not in EXPECTED[kind]:
            self.note(kind, what())

    def note(self, kind: str, what: str) -> None:
        if len(self.unexpected[kind]) < 5:
            self.unexpected[kind].append(what)

    @property
    def total(self) -> int:
        return self.count.total()

    def unanswered(self) -> int:
        """Requests with no HTTP answer that their kind does not expect (timeouts, resets)."""
        return sum(
            n
            for kind, answers in self.answers.items()
            for answer, n in answers.items()
            if isinstance(answer, str) and answer not in EXPECTED[kind]
        )


@dataclass
class Client:
    """One simulated client: its connection(s), its randomness, its own versions."""

    http: httpx.AsyncClient
    rng: random.Random
    mine: list[VersionCreate] = field(default_factory=list)  # a publisher's, in testing


@dataclass
class Draft:
    """A new version's publish request and the bytes of its files."""

    req: VersionCreate
    blobs: list[bytes]


@dataclass
class Race:
    image: str
    serial: str
    answers: list[tuple[VersionState, int | str]]  # (to, status) of each racing request

    def __str__(self) -> str:
        said = ", ".join(f"to {to.value}: {status}" for to, status in self.answers)
        return f"{self.image} {self.serial} ({said})"


def files_for(rng: random.Random) -> list[tuple[BuiltFile, bytes]]:
    """A fresh metadata tarball and rootfs for one arch (random: no fingerprint clash)."""
    out = []
    for ftype, name, size in (
        (FileType.metadata, "lxd.tar.xz", KiB),
        (FileType.squashfs, "rootfs.squashfs", 8 * KiB),
    ):
        data = rng.randbytes(size)
        sha = hashlib.sha256(data).hexdigest()
        out.append((BuiltFile(ftype=ftype, name=name, sha256=sha, size=size), data))
    return out


def one_created(statuses: list[int | str]) -> bool:
    """Racing identical publishes: one 201 and the rest 200 like a re-publish, or all 409
    when gc took the uploaded files before any of them committed."""
    return Counter(statuses) == Counter({201: 1, 200: len(statuses) - 1}) or set(statuses) == {
        "gone"
    }


def passed(arch: str) -> dict:
    return AssessmentReport(arch=arch, check="boots", host="load", state="passed").model_dump(
        mode="json"
    )


@dataclass
class Load:
    url: str
    trust: ssl.SSLContext
    publisher: str
    operator: str
    feed: str  # a private feed's base path; its channel is active
    args: argparse.Namespace
    deadline: float = float("inf")
    stats: Stats = field(default_factory=Stats)
    serials: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    etags: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # channel: (sha, size)
    parsed_at: dict[str, float] = field(default_factory=dict)
    races: list[Race] = field(default_factory=list)
    published: deque[VersionCreate] = field(default_factory=lambda: deque(maxlen=200))
    publish_races: list[list[int | str]] = field(default_factory=list)

    def running(self) -> bool:
        return time.monotonic() < self.deadline and self.stats.total < self.args.max_requests

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.trust,
            timeout=httpx.Timeout(self.args.timeout, connect=30),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    async def call(
        self, c: Client, kind: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One request, recorded under `kind`; None when no answer came."""
        t = time.perf_counter()
        try:
            r = await c.http.request(method, url, **kwargs)
        except Abandon:
            self.stats.record(kind, time.perf_counter() - t, "abandoned", str)
            return None
        except httpx.HTTPError as exc:
            took, what = time.perf_counter() - t, f"{method} {url}: {exc!r}"
            self.stats.record(kind, took, type(exc).__name__, lambda: what)
            return None
        self.stats.record(
            kind,
            time.perf_counter() - t,
            r.status_code,
            lambda: f"{method} {url} -> {r.status_code} {r.text[:300]!r}",
        )
        return r

    # Feeds and downloads

    async def poll(self, c: Client, kind: str, root: str, channel: str) -> None:
        """index.json or images.json, half the time with the ETag last seen."""
        url = f"{root}/streams/v1/{c.rng.choice(['index', 'images'])}.json"
        headers = {}
        if c.rng.random() < 0.5 and url in self.etags:
            headers["If-None-Match"] = self.etags[url]
        r = await self.call(c, kind, "GET", url, headers=headers)
        if r is None or r.status_code != 200:
            return
        self.etags[url] = r.headers.get("etag", "")
        if url.endswith("images.json") and time.monotonic() - self.parsed_at.get(channel, 0) > 1:
            self.parsed_at[channel] = time.monotonic()  # what downloads pick from, once a second
            self.files[channel] = [
                (item["sha256"], item["size"])
                for product in r.json()["products"].values()
                for version in product["versions"].values()
                for item in version["items"].values()
            ]

    async def feed_public(self, c: Client) -> None:
        channel = c.rng.choice(["testing", "active"])
        await self.poll(c, "feed_public", f"/channels/{channel}", channel)

    async def feed_private(self, c: Client) -> None:
        await self.poll(c, "feed_private", self.feed, "active")

    async def api_read(self, c: Client) -> None:
        """What a dashboard or `icefloe status` reads: a listing, a version, its events."""
        url = "/api/v1/versions"
        params = {"image": c.rng.choice(IMAGES).name}
        if c.rng.random() < 0.5:
            params["state"] = c.rng.choice(list(VersionState)).value
        if self.published and c.rng.random() < 0.5:
            req = c.rng.choice(self.published)
            url = f"/api/v1/images/{req.spec.name}/versions/{req.serial}"
            url, params = url + c.rng.choice(["", "/events"]), {}
        await self.call(c, "api_read", "GET", url, params=params)

    async def download(self, c: Client) -> None:
        """A byte range of a file a feed just listed, from that feed's base URL."""
        channel, root = c.rng.choice(
            [
                ("testing", "/channels/testing"),
                ("active", "/channels/active"),
                ("active", self.feed),
            ]
        )
        if not self.files.get(channel):
            return
        sha, size = c.rng.choice(self.files[channel])
        start = c.rng.randrange(size)
        end = min(size - 1, start + c.rng.randrange(4 * KiB))
        url = f"{root}/files/{sha}"
        r = await self.call(c, "download", "GET", url, headers={"Range": f"bytes={start}-{end}"})
        if r is not None and r.status_code == 206 and len(r.content) != end - start + 1:
            self.stats.note("download", f"{url} bytes {start}-{end}: {len(r.content)} bytes came")

    # Uploads

    async def put(
        self, c: Client, kind: str, data: bytes, body: AsyncIterator[bytes] | None = None
    ) -> httpx.Response | None:
        return await self.call(
            c,
            kind,
            "PUT",
            f"/api/v1/files/{hashlib.sha256(data).hexdigest()}",
            params={"size": len(data)},
            content=data if body is None else body,
            headers={"Content-Length": str(len(data))},
        )

    async def upload(self, c: Client) -> None:
        await self.put(c, "upload", c.rng.randbytes(64 * KiB))

    async def upload_slow(self, c: Client) -> None:
        """256 KiB in 16 KiB pieces a quarter of a second apart: 4 s of a steady trickle."""
        data = c.rng.randbytes(256 * KiB)

        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 16 * KiB):
                yield data[i : i + 16 * KiB]
                await asyncio.sleep(0.25)

        await self.put(c, "upload_slow", data, body())

    async def upload_stalled(self, c: Client) -> None:
        """1,000 bytes, then silence for a quarter of --stall up to all of it, then the
        rest if the server still listens (its idle-body timeout is --body-idle)."""
        data = c.rng.randbytes(256 * KiB)
        silence = c.rng.uniform(self.args.stall / 4, self.args.stall)

        async def body() -> AsyncIterator[bytes]:
            yield data[:1000]
            await asyncio.sleep(silence)
            yield data[1000:]

        await self.put(c, "upload_stalled", data, body())

    async def upload_abandoned(self, c: Client) -> None:
        """Half the declared bytes, then the client drops the connection."""
        data = c.rng.randbytes(256 * KiB)

        async def body() -> AsyncIterator[bytes]:
            yield data[: 128 * KiB]
            await asyncio.sleep(0.5)
            raise Abandon

        await self.put(c, "upload_abandoned", data, body())

    # Publishing and transitions

    async def upload_all(self, c: Client, blobs: list[bytes]) -> bool:
        for data in blobs:
            r = await self.put(c, "publish_upload", data)
            if r is None or r.status_code != 201:
                return False
        return True

    async def new_version(self, c: Client, image: ImageSpec | None = None) -> Draft | None:
        """Fresh files for every arch, uploaded, and the publish request for a new serial."""
        built = {arch: files_for(c.rng) for arch in ARCHES}
        req = VersionCreate(
            spec=image or c.rng.choice(IMAGES),
            serial=f"20261201-{next(self.serials):06d}",
            arches=[ArchFiles(arch=a, files=[f for f, _ in b]) for a, b in built.items()],
        )
        draft = Draft(req, [data for b in built.values() for _, data in b])
        return draft if await self.upload_all(c, draft.blobs) else None

    async def post(self, c: Client, kind: str, req: VersionCreate) -> int | str:
        """The answer's status, or "gone" for a 409 because gc took the uploads first."""
        r = await self.call(c, kind, "POST", "/api/v1/versions", json=req.model_dump(mode="json"))
        if r is None:
            return "no answer"
        if r.status_code == 409:
            if "not uploaded yet" in r.text:
                return "gone"
            self.stats.note(kind, f"POST /api/v1/versions {req.serial} -> 409 {r.text[:300]!r}")
        return r.status_code

    async def publish_draft(self, c: Client, draft: Draft, kind: str = "publish") -> int | str:
        """Publish; when gc took the uploads first, upload them again and publish again
        (as a pipeline's retried activity would), up to three times."""
        for _ in range(3):
            status = await self.post(c, kind, draft.req)
            if status != "gone" or not await self.upload_all(c, draft.blobs):
                break
        return status

    async def move(
        self,
        c: Client,
        kind: str,
        req: VersionCreate,
        to: VersionState,
        from_state: VersionState | None = None,
    ) -> int | str:
        move = TransitionRequest(to=to, reason=f"load: {kind}", from_state=from_state)
        body = move.model_dump(mode="json")
        url = f"/api/v1/images/{req.spec.name}/versions/{req.serial}/transitions"
        r = await self.call(c, kind, "POST", url, json=body)
        return "no answer" if r is None else r.status_code

    async def passes(self, c: Client, req: VersionCreate, kind: str = "assess") -> bool:
        """Every required check passed on every arch."""
        url = f"/api/v1/images/{req.spec.name}/versions/{req.serial}/assessments"
        for arch in ARCHES:
            r = await self.call(c, kind, "PUT", url, json=passed(arch))
            if r is None or r.status_code != 200:
                return False
        return True

    async def publish(self, c: Client) -> None:
        """Publish, publish again, move to testing; cancel this client's oldest once it has
        more than three in testing; one time in four, publish another serial 3x at once."""
        draft = await self.new_version(c)
        if draft is None or await self.publish_draft(c, draft) != 201:
            return
        await self.post(c, "republish", draft.req)
        if await self.move(c, "to_testing", draft.req, VersionState.testing) == 200:
            c.mine.append(draft.req)
            self.published.append(draft.req)
        if len(c.mine) > 3:
            await self.move(c, "cancel", c.mine.pop(0), VersionState.inactive)
        if c.rng.random() < 0.25 and (same := await self.new_version(c)):
            statuses = list(
                await asyncio.gather(*(self.post(c, "publish_race", same.req) for _ in "abc"))
            )
            self.publish_races.append(statuses)
            if not one_created(statuses):
                self.stats.note("publish_race", f"{same.req.serial}: {statuses}")

    async def race(self, c: Client) -> None:
        """A version that passed every check, then two transitions of it at once."""
        draft = await self.new_version(c)
        if draft is None or await self.publish_draft(c, draft) != 201:
            return
        req = draft.req
        if await self.move(
            c, "to_testing", req, VersionState.testing
        ) != 200 or not await self.passes(c, req):
            return
        # Promote vs promote: the state machine lets one through. Promote vs cancel: both
        # clients decided on the testing version they saw, so both name it (compare-and-set);
        # without it, a cancel after the promotion would rightly succeed as active -> inactive.
        cancel = c.rng.random() < 0.5
        tos = [VersionState.active, VersionState.inactive if cancel else VersionState.active]
        seen = VersionState.testing if cancel else None
        statuses = await asyncio.gather(
            *(self.move(c, "promote_race", req, to, seen) for to in tos)
        )
        race = Race(req.spec.name, req.serial, list(zip(tos, statuses, strict=True)))
        self.races.append(race)
        if statuses.count(200) != 1:
            self.stats.note("promote_race", f"{race}")

    async def gc(self, c: Client) -> None:
        await asyncio.sleep(self.args.gc_every)
        await self.call(c, "gc", "POST", "/api/v1/gc", json={"grace_s": 0})

    # Driving

    async def seed(self) -> None:
        """Every image gets three active versions and two in testing, through the API."""
        async with self.http(self.publisher) as http:
            c = Client(http, random.Random(0))
            for image in IMAGES:
                for n in range(KEEP_ACTIVE + 2):
                    draft = await self.new_version(c, image)
                    assert draft is not None, "seeding failed: an upload was refused"
                    req = draft.req
                    await self.post(c, "seed", req)
                    await self.move(c, "seed", req, VersionState.testing)
                    if n >= 2 and await self.passes(c, req, "seed"):
                        await self.move(c, "seed", req, VersionState.active)

    async def run_client(
        self, role: Callable[[Client], Awaitable[None]], token: str | None, seed: int
    ) -> None:
        async with self.http(token) as http:
            c = Client(http, random.Random(seed))
            while self.running():
                await role(c)
                await asyncio.sleep(c.rng.uniform(0, 2 * self.args.think))

    async def run(self) -> float:
        """Every client until the deadline; the seconds until the last one finished."""
        counts = {role: max(1, round(self.args.clients * share)) for role, share in ROLES.items()}
        counts = {"feed_public": self.args.clients - sum(counts.values())} | counts
        seeds = itertools.count(1)
        clients = [
            self.run_client(
                getattr(self, role),
                None if role in ("feed_public", "feed_private", "download") else self.publisher,
                next(seeds),
            )
            for role, n in counts.items()
            for _ in range(n)
        ]
        clients.append(self.run_client(self.gc, self.operator, next(seeds)))
        print(
            "clients: "
            + ", ".join(f"{n} {role}" for role, n in counts.items())
            + f", 1 gc (every {self.args.gc_every:g} s, grace 0)",
            flush=True,
        )
        t = time.monotonic()
        self.deadline = t + self.args.seconds
        await asyncio.gather(*clients)
        return time.monotonic() - t


# Reading the results


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:,.0f}"


def report(stats: Stats, took: float, cpu: dict[str, float]) -> None:
    print(
        f"\n{stats.total:,} requests in {took:.1f} s: {stats.total / took:,.0f} requests/s "
        f"(CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + ")\n"
    )
    print(f"{'kind':<17}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  answers")
    for kind in EXPECTED:
        if stats.count[kind]:
            answers = ", ".join(
                f"{a}: {n}" for a, n in sorted(stats.answers[kind].items(), key=str)
            )
            print(
                f"{kind:<17}{stats.count[kind]:>9,}{stats.count[kind] / took:>8,.1f}"
                f"{ms(stats.latency[kind], 0.5):>9}{ms(stats.latency[kind], 0.99):>9}  {answers}"
            )
    print(f"\n5xx answers: {len(stats.server_errors)}")
    for what in stats.server_errors[:20]:
        print(f"  {what}")
    print(f"requests without an answer (timeouts, resets): {stats.unanswered()}")
    if stats.unexpected:
        print("unexpected answers (up to 5 per kind):")
        for kind, whats in stats.unexpected.items():
            for what in whats:
                print(f"  {kind}: {what}")


def replay(events: list[EventView], state: VersionState) -> str | None:
    """Why the events do not lead to `state`, or None when they do."""
    if not events or events[0].from_state is not None or events[0].to_state != "created":
        return f"start with {events[0] if events else 'nothing'}"
    for before, after in itertools.pairwise(events):
        if after.from_state != before.to_state:
            return (
                f"go from {after.from_state} in event {after.id}, the state was {before.to_state}"
            )
    return None if events[-1].to_state == state else f"end in {events[-1].to_state}"


def check(load: Load, store: Path) -> list[str]:
    """The catalog's invariants after the load; each broken one as a line."""
    broken: list[str] = []
    auth = {"Authorization": f"Bearer {load.publisher}"}
    with httpx.Client(base_url=load.url, verify=load.trust, timeout=120, headers=auth) as http:
        versions = [VersionView.model_validate(v) for v in http.get("/api/v1/versions").json()]
        listed: dict[str, int] = {}
        for v in versions:
            if v.files_deleted_at is None:
                listed |= {f.sha256: f.size for a in v.arches for f in a.files}
        for channel in ("testing", "active"):
            feed = http.get(f"/channels/{channel}/streams/v1/images.json").json()
            for product in feed["products"].values():
                for version in product["versions"].values():
                    listed |= {i["sha256"]: i["size"] for i in version["items"].values()}
        for sha, size in listed.items():
            path = store / sha[:2] / sha
            if not path.is_file():
                broken.append(f"file {sha} is listed but not in the store")
            elif (
                path.stat().st_size != size or hashlib.sha256(path.read_bytes()).hexdigest() != sha
            ):
                broken.append(f"file {sha} is in the store with other content")

        events: dict[tuple[str, str], list[EventView]] = {}
        for v in versions:
            r = http.get(f"/api/v1/images/{v.image}/versions/{v.serial}/events")
            events[v.image, v.serial] = [EventView.model_validate(e) for e in r.json()]
            if why := replay(events[v.image, v.serial], v.state):
                broken.append(f"{v.image} {v.serial} is {v.state}, but its events {why}")

    active = Counter(v.image for v in versions if v.state == VersionState.active)
    broken += [
        f"{image} has {n} active versions; retention keeps {KEEP_ACTIVE}"
        for image, n in active.items()
        if n > KEEP_ACTIVE
    ]
    for race in load.races:
        left = [
            e.to_state
            for e in events.get((race.image, race.serial), [])
            if e.from_state == VersionState.testing and e.to_state != VersionState.testing
        ]
        won = [to for to, status in race.answers if status == 200]
        if len(left) != 1 or won != left:
            went = ", ".join(to.value for to in left) or "nothing"
            broken.append(f"race on {race}: the version left testing for {went}")
    broken += [
        f"racing publish answered {statuses}: not one 201 and the rest 200"
        for statuses in load.publish_races
        if not one_created(statuses)
    ]
    if partial := list((store / ".incoming").iterdir()):
        broken.append(f"{len(partial)} partial uploads left in {store / '.incoming'}")
    print(
        f"\ninvariants over {len(versions):,} versions, {len(listed):,} listed files, "
        f"{len(load.races)} racing transitions, {len(load.publish_races)} racing publishes:"
    )
    return broken


def tracebacks(log: Path) -> Counter[str]:
    """The exception line that ends each traceback the server logged, counted."""
    found: Counter[str] = Counter()
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")),
                None,
            )
            if end is not None:
                found[lines[end][:300]] += 1
    return found


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh database from deploy/postgres-for-tests; the cluster is stopped again
    only if this started it."""
    out = subprocess.run(
        [REPO_DIR / "deploy" / "postgres-for-tests", "icefloe_load"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(f"no Postgres: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    try:
        yield lines[0]
    finally:
        if len(lines) > 1:
            _, version, cluster = lines[1].split()
            subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=False, timeout=60)


def start(args: argparse.Namespace, state: Path, stack: ExitStack) -> tuple[Load, int, Path]:
    """The server with an operator token, a publisher token and a private feed."""
    database_url = stack.enter_context(postgres()) if args.postgres else None
    settings = ServerSettings(state_dir=state, database_url=database_url)
    engine = make_engine(settings.db_url)
    with Session(engine) as session:
        operator = create_token(session, "load-operator", "operator")
    engine.dispose()
    log = state / "server.log"
    env = {"ICEFLOE_SERVER_BODY_IDLE_TIMEOUT_S": str(args.body_idle)}
    if database_url:
        env["ICEFLOE_SERVER_DATABASE_URL"] = database_url
    url, pid, trust = stack.enter_context(server(state, env, stack.enter_context(log.open("wb"))))
    auth = {"Authorization": f"Bearer {operator}"}
    with httpx.Client(base_url=url, verify=trust, headers=auth) as ops:
        publisher = ops.post("/api/v1/tokens", json={"name": "load-publisher"})
        feed = ops.post("/api/v1/credentials", json={"name": "load", "channel": "active"})
    load = Load(
        url,
        trust,
        publisher.raise_for_status().json()["token"],
        operator,
        feed.raise_for_status().json()["feed_path"],
        args,
    )
    return load, pid, log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--postgres", action="store_true", help="a Postgres catalog instead of SQLite")
    p.add_argument(
        "--think", type=float, default=0.1, help="mean pause between a client's requests"
    )
    p.add_argument("--stall", type=float, default=20, help="longest silence of a stalled upload")
    p.add_argument("--body-idle", type=float, default=10, help="the server's idle-body timeout")
    p.add_argument("--gc-every", type=float, default=10, help="seconds between gc runs")
    p.add_argument("--timeout", type=float, default=60, help="seconds per request")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="icefloe-load-") as tmp, ExitStack() as stack:
        state = Path(tmp)
        load, pid, log = start(args, state, stack)
        print(
            f"{os.cpu_count()} CPUs, shared by the server and this load generator; "
            f"catalog: {'Postgres' if args.postgres else 'SQLite'}; "
            f"{args.clients} clients for {args.seconds:g} s; stalls of {args.stall / 4:g} to "
            f"{args.stall:g} s against a {args.body_idle:g} s idle-body timeout"
        )
        asyncio.run(load.seed())
        if load.stats.server_errors or load.stats.unexpected:
            report(load.stats, 1, {})
            raise SystemExit("seeding failed")
        load.stats = Stats()
        before = {"server": cpu_seconds(pid), "load generator": cpu_seconds()}
        took = asyncio.run(load.run())
        cpu = {k: cpu_seconds(pid if k == "server" else "self") - v for k, v in before.items()}
        report(load.stats, took, cpu)
        print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
        broken = check(load, ServerSettings(state_dir=state).files_dir)
        for line in broken:
            print(f"  BROKEN: {line}")
        print("  all hold" if not broken else f"  {len(broken)} broken")
        if found := tracebacks(log):
            print("server tracebacks (the exception, counted):")
            for line, n in found.most_common():
                print(f"  {n:>5} x {line}")
        failed = load.stats.server_errors or load.stats.unanswered() or broken
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
