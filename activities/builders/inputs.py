"""What one arch of an image would be built from, worked out before building, so a pipeline
whose inputs equal the newest active version's builds nothing. Plain functions, no Temporal.

busybox: the .deb it would unpack (version and sha256). debootstrap: the suite's package
indexes for the arch, read from its InRelease: the mirror answers no conditional request,
so one InRelease download per suite (shared for ICEFLOE_INPUTS_TTL_S by every pipeline of
this host's workers: in the worker, and through a file in the host's cache for the workers
of other arches) is all an unchanged suite costs. Other builders cannot say: always built.
"""

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from activities.builders.base import HostDirs
from activities.builders.busybox import deb_version, find_deb
from activities.builders.debootstrap import DISTROS
from activities.builders.errors import BuildError
from core.arch import LxdArch, to_debian
from core.config import INPUTS_TTL_S
from core.inputs import ArchInputs
from core.spec import ImageSpec

log = logging.getLogger(__name__)
_SIGNED = re.compile(
    r"-----BEGIN PGP SIGNED MESSAGE-----\n(?:[^\n]+\n)*\n(.*?)\n-----BEGIN PGP SIGNATURE",
    re.S,
)


def busybox_inputs(arch: LxdArch, dirs: HostDirs) -> ArchInputs:
    """The busybox-static .deb the build would unpack: its version and content."""
    deb = find_deb(dirs.debs, to_debian(arch))
    sha = hashlib.sha256(deb.read_bytes()).hexdigest()
    return ArchInputs(items={f"deb:{deb.name.split('_')[0]}": f"{deb_version(deb)} sha256:{sha}"})


def release_text(signed: str) -> str:
    """The Release fields of an InRelease (clearsigned) or a plain Release file. Its signature
    and Valid-Until are debootstrap's to judge when it builds (sid's is often past; it still
    builds): here the file only says which indexes the suite has."""
    m = _SIGNED.search(signed)
    return m[1] if m else signed


def index_digests(release: str, suite: str, components: list[str], debian_arch: str) -> dict:
    """`deb:<suite>/<component>/binary-<arch>/Packages*` -> sha256, from the SHA256 field.
    Only binary-<arch>: debootstrap reads no other index (Debian lists arch-all packages
    there too), so binary-all or other arches changing builds nothing different."""
    wanted = re.compile(
        rf"^({'|'.join(map(re.escape, components))})/binary-{debian_arch}/Packages(\.\w+)?$"
    )
    items, in_sha256 = {}, False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.rstrip() == "SHA256:"
            continue
        if in_sha256:
            sha, _, name = line.split()
            if wanted.match(name):
                items[f"deb:{suite}/{name}"] = sha
    return items


@dataclass
class _Fetched:
    at: float
    text: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReleaseCache:
    """One download of a suite's InRelease per `ttl_s`, shared by the threads of a worker
    process (concurrent pipelines of one suite wait for the first one's download) and, given
    a `shared` directory, by the host's other worker processes (one per arch)."""

    def __init__(
        self, ttl_s: float = INPUTS_TTL_S, get: Callable[[str], httpx.Response] | None = None
    ):
        self.ttl_s = ttl_s
        self._get = get or (lambda url: httpx.get(url, timeout=30, follow_redirects=True))
        self._lock = threading.Lock()
        self._suites: dict[tuple[str, str], _Fetched] = {}
        self.downloads = 0

    def release(self, mirror: str, suite: str, shared: Path | None = None) -> str:
        with self._lock:
            entry = self._suites.setdefault((mirror, suite), _Fetched(at=-self.ttl_s, text=""))
        with entry.lock:
            if time.monotonic() - entry.at >= self.ttl_s:

                def fetch() -> str:
                    return release_text(self._download(mirror.rstrip("/"), suite))

                entry.text = self._from_file(shared, mirror, suite, fetch) if shared else fetch()
                entry.at = time.monotonic()
            return entry.text

    def _from_file(self, shared: Path, mirror: str, suite: str, fetch: Callable[[], str]) -> str:
        """The host's copy if younger than `ttl_s`, else a download kept there; a lock file
        makes another process's concurrent resolve wait for this one's download."""
        try:
            shared.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # no host copy then: this process's own still counts
            log.warning("cannot keep InRelease copies in %s: %s", shared, exc)
            return fetch()
        key = hashlib.sha256(f"{mirror.rstrip('/')} {suite}".encode()).hexdigest()[:32]
        path = shared / f"{key}.release"
        with (shared / f"{key}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if path.exists() and time.time() - path.stat().st_mtime < self.ttl_s:
                    return path.read_text()
                text = fetch()
                part = path.with_suffix(f".{os.getpid()}.part")
                part.write_text(text)
                part.replace(path)
                return text
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _download(self, mirror: str, suite: str) -> str:
        """InRelease, else Release (a mirror without the signed one)."""
        for name in ("InRelease", "Release"):
            url = f"{mirror}/dists/{suite}/{name}"
            try:
                r = self._get(url)
            except httpx.HTTPError as exc:
                raise BuildError(f"{url}: {type(exc).__name__}: {exc}", retryable=True) from None
            if r.status_code != 404:
                if r.is_error:
                    raise BuildError(f"{url}: HTTP {r.status_code}", retryable=r.status_code >= 500)
                self.downloads += 1
                return r.text
        raise BuildError(f"no suite {suite!r} on {mirror}: neither InRelease nor Release found")


def debootstrap_inputs(
    spec: ImageSpec, arch: LxdArch, dirs: HostDirs, releases: ReleaseCache
) -> ArchInputs:
    """The digests of the suite's package indexes debootstrap would read for the arch."""
    default_mirror, components = DISTROS[spec.os]
    mirror = spec.mirror or default_mirror
    release = releases.release(mirror, spec.release, dirs.cache / "releases")
    items = index_digests(release, spec.release, components.split(","), to_debian(arch))
    if not items:
        raise BuildError(
            f"the Release file of {spec.release} lists no binary-{to_debian(arch)} index "
            f"of {components}: is {arch} built for this suite?"
        )
    return ArchInputs(items=items)


def arch_inputs(
    spec: ImageSpec, arch: LxdArch, dirs: HostDirs, releases: ReleaseCache
) -> ArchInputs:
    """What the arch's build would install, as far as its builder can say."""
    if spec.builder == "busybox":
        return busybox_inputs(arch, dirs)
    if spec.builder == "debootstrap" and spec.os in DISTROS:
        return debootstrap_inputs(spec, arch, dirs, releases)
    return ArchInputs(known=False)
