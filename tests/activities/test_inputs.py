"""What a build would install, worked out before building, on real parts: Debian's
busybox-static debs, and a local Debian-format repository made from them with Debian's own
tools (dpkg-scanpackages, apt-ftparchive, gpg), served over loopback HTTP like a mirror."""

import hashlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.builders.base import HostDirs
from activities.builders.errors import BuildError
from activities.builders.inputs import ReleaseCache, arch_inputs, busybox_inputs
from core.arch import LxdArch
from core.inputs import VersionInputs
from core.spec import ImageSpec
from harness.debian_repo import EXPIRED, DebianRepo, repack
from harness.processes import free_port
from harness.servers import DEBS

pytestmark = pytest.mark.debs

SUITE = "icefloe-test"
INRELEASE = f"/dists/{SUITE}/InRelease"


def real_deb(debian_arch: str) -> Path:
    debs = sorted(DEBS.glob(f"busybox-static_*_{debian_arch}.deb"))
    assert debs, f"run deploy/setup-host: no busybox-static {debian_arch} deb in {DEBS}"
    return debs[-1]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DebianRepo]:
    made = DebianRepo(tmp_path / "mirror", SUITE, ["amd64", "i386"])
    made.add(real_deb("amd64"), real_deb("i386"))
    made.index()
    with made.serve() as served:
        yield served


def debootstrap_spec(mirror: str) -> ImageSpec:
    return ImageSpec(
        os="debian", release=SUITE, arches=["x86_64", "i686"], builder="debootstrap", mirror=mirror
    )


def resolve(
    repo: DebianRepo, cache: ReleaseCache | None = None, host_cache: Path | None = None
) -> VersionInputs:
    """Both arches' inputs, each call with a cache of its own unless given one; without a
    `host_cache` directory to share, as a process alone on its host."""
    spec = debootstrap_spec(repo.url)
    dirs = HostDirs(debs=DEBS, cache=host_cache or Path(tempfile.mkdtemp(prefix="host-")))
    arches: list[LxdArch] = ["x86_64", "i686"]
    cache = cache or ReleaseCache()
    return VersionInputs(
        spec_digest="0" * 64,
        arches={a: arch_inputs(spec, a, dirs, cache) for a in arches},
    )


def test_an_unchanged_repository_gives_equal_inputs(repo: DebianRepo) -> None:
    first, second = resolve(repo), resolve(repo)
    assert first.same_as(second) and repo.requests[INRELEASE] == 2
    index = repo.root / "dists" / SUITE / "main" / "binary-amd64"
    assert first.arches["x86_64"].items == {
        f"deb:{SUITE}/main/binary-amd64/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(index.glob("Packages*"))
    }
    assert all(k.startswith(f"deb:{SUITE}/main/binary-i386/") for k in first.arches["i686"].items)
    # Its Valid-Until is long past (sid's often is): debootstrap builds from it all the same.
    assert EXPIRED in (repo.root / "dists" / SUITE / "InRelease").read_text()


def test_a_package_rebuilt_at_a_higher_version_changes_only_its_arch(
    repo: DebianRepo, tmp_path: Path
) -> None:
    before = resolve(repo)
    old = real_deb("amd64")
    version = old.name.split("_")[1].replace("%3a", ":") + "+icefloe1"
    newer = repack(old, tmp_path, version)
    repo.remove(old.name)
    repo.add(newer)
    repo.index()
    after = resolve(repo)
    assert not after.same_as(before)
    assert after.arches["i686"] == before.arches["i686"]
    assert after.arches["x86_64"].items.keys() == before.arches["x86_64"].items.keys()
    assert set(after.arches["x86_64"].items.values()).isdisjoint(
        before.arches["x86_64"].items.values()
    )
    packages = (repo.root / "dists" / SUITE / "main" / "binary-amd64" / "Packages").read_text()
    assert f"Version: {version}\n" in packages


def test_concurrent_pipelines_share_one_download_until_it_is_stale(repo: DebianRepo) -> None:
    cache = ReleaseCache()
    results: list[VersionInputs] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve(repo, cache))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r.same_as(results[0]) for r in results)
    assert repo.requests[INRELEASE] == 1, "one InRelease for every pipeline and arch"
    stale = ReleaseCache(ttl_s=0)
    resolve(repo, stale)
    resolve(repo, stale)
    assert repo.requests[INRELEASE] == 1 + 2 * 2, "stale at once: every arch downloads it"


def test_the_workers_of_one_host_share_one_download(repo: DebianRepo, tmp_path: Path) -> None:
    """One worker process per arch: their caches share the host's copy of the InRelease."""
    processes = [ReleaseCache() for _ in range(4)]
    results: list[VersionInputs] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(resolve(repo, c, tmp_path)))
        for c in processes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r.same_as(results[0]) for r in results)
    assert repo.requests[INRELEASE] == 1, "one InRelease for every worker of the host"
    later = ReleaseCache(ttl_s=0)
    resolve(repo, later, tmp_path)
    assert repo.requests[INRELEASE] == 1 + 2, "a stale host copy: each arch downloads again"


def test_a_mirror_without_inrelease_is_read_from_its_release(repo: DebianRepo) -> None:
    signed = resolve(repo)
    (repo.root / "dists" / SUITE / "InRelease").unlink()
    assert resolve(repo).same_as(signed)
    assert repo.requests[f"/dists/{SUITE}/Release"] == 1


def test_what_cannot_be_resolved_says_why_in_one_line(repo: DebianRepo, tmp_path: Path) -> None:
    dirs = HostDirs(debs=DEBS, cache=tmp_path)
    gone = debootstrap_spec(repo.url).model_copy(update={"release": "nosuch"})
    with pytest.raises(BuildError, match=r"^no suite 'nosuch' on http://127\.0\.0\.1:\d+") as e:
        arch_inputs(gone, "x86_64", dirs, ReleaseCache())
    assert not e.value.retryable
    with pytest.raises(BuildError, match="lists no binary-arm64 index of main") as e:
        arch_inputs(debootstrap_spec(repo.url), "aarch64", dirs, ReleaseCache())
    closed = debootstrap_spec(f"http://127.0.0.1:{free_port()}/debian")
    with pytest.raises(BuildError, match="ConnectError") as e:
        arch_inputs(closed, "x86_64", dirs, ReleaseCache())
    assert e.value.retryable and "\n" not in str(e.value)


def test_busybox_inputs_are_the_debs_version_and_content(tmp_path: Path) -> None:
    deb = real_deb("amd64")
    version = deb.name.split("_")[1].replace("%3a", ":")
    sha = hashlib.sha256(deb.read_bytes()).hexdigest()
    here = busybox_inputs("x86_64", HostDirs(debs=DEBS, cache=tmp_path))
    assert here.known and here.items == {"deb:busybox-static": f"{version} sha256:{sha}"}
    newer_dir = tmp_path / "newer"
    newer_dir.mkdir()
    repack(deb, newer_dir, version + "+icefloe1")
    newer = busybox_inputs("x86_64", HostDirs(debs=newer_dir, cache=tmp_path))
    assert newer.items["deb:busybox-static"].startswith(f"{version}+icefloe1 sha256:")
    assert newer != here
    with pytest.raises(BuildError, match="no busybox-static_"):
        busybox_inputs("x86_64", HostDirs(debs=tmp_path / "empty", cache=tmp_path))


def test_a_builder_that_cannot_say_is_always_built(tmp_path: Path) -> None:
    spec = ImageSpec(
        os="alpine",
        release="3.20",
        arches=["x86_64"],
        builder="distrobuilder",
        distrobuilder={"image": {"distribution": "alpine"}},
    )
    unknown = arch_inputs(spec, "x86_64", HostDirs(debs=DEBS, cache=tmp_path), ReleaseCache())
    assert not unknown.known
    inputs = VersionInputs(spec_digest="0" * 64, arches={"x86_64": unknown})
    assert not inputs.same_as(inputs)
