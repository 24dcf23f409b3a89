"""What one arch of an image would be built from, worked out before building, so a pipeline
whose inputs equal the newest active version's builds nothing. Plain functions, no Temporal.

busybox: the .deb it would unpack (version and sha256). debootstrap: the suite's package
indexes for the arch, read from its InRelease: the mirror answers no conditional request,
so one InRelease download per suite (shared for `TTL_S` by every pipeline of this worker
process) is all an unchanged suite costs. Other builders cannot say: always built.
"""

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from activities.builders.base import HostDirs
from activities.builders.busybox import deb_version, find_deb
from activities.builders.debootstrap import DISTROS
from activities.builders.errors import BuildError
from core.arch import LxdArch, to_debian
from core.inputs import ArchInputs
from core.spec import ImageSpec

# Long enough that a refresh's pipelines of one suite share a download, short enough that
# the next refresh sees the mirror as it is.
TTL_S = 120.0
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
    process: concurrent pipelines of one suite wait for the first one's download."""

    def __init__(self, ttl_s: float = TTL_S, get: Callable[[str], httpx.Response] | None = None):
        self.ttl_s = ttl_s
        self._get = get or (lambda url: httpx.get(url, timeout=30, follow_redirects=True))
        self._lock = threading.Lock()
        self._suites: dict[tuple[str, str], _Fetched] = {}
        self.downloads = 0

    def release(self, mirror: str, suite: str) -> str:
        with self._lock:
            entry = self._suites.setdefault((mirror, suite), _Fetched(at=-self.ttl_s, text=""))
        with entry.lock:
            if time.monotonic() - entry.at >= self.ttl_s:
                entry.text = release_text(self._download(mirror.rstrip("/"), suite))
                entry.at = time.monotonic()
            return entry.text

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


# Every arch worker of a process shares it, so a suite is downloaded once for all of them.
RELEASES = ReleaseCache()


def debootstrap_inputs(
    spec: ImageSpec, arch: LxdArch, releases: ReleaseCache = RELEASES
) -> ArchInputs:
    """The digests of the suite's package indexes debootstrap would read for the arch."""
    default_mirror, components = DISTROS[spec.os]
    release = releases.release(spec.mirror or default_mirror, spec.release)
    items = index_digests(release, spec.release, components.split(","), to_debian(arch))
    if not items:
        raise BuildError(
            f"the Release file of {spec.release} lists no binary-{to_debian(arch)} index "
            f"of {components}: is {arch} built for this suite?"
        )
    return ArchInputs(items=items)


def arch_inputs(
    spec: ImageSpec, arch: LxdArch, dirs: HostDirs, releases: ReleaseCache = RELEASES
) -> ArchInputs:
    """What the arch's build would install, as far as its builder can say."""
    if spec.builder == "busybox":
        return busybox_inputs(arch, dirs)
    if spec.builder == "debootstrap" and spec.os in DISTROS:
        return debootstrap_inputs(spec, arch, releases)
    return ArchInputs(known=False)
