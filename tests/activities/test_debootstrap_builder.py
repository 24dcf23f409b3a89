"""The debootstrap builder's per-release settings and its shared package cache, on real
files in a temporary tree: fast, no debootstrap run, no network (tests/pipeline/
test_debian_releases.py builds and boots the releases themselves)."""

import os
from pathlib import Path

import pytest

from activities.builders.debootstrap import _configure, borrowed_cache, release_of
from core.spec import ImageSpec


def spec(os_name: str, release: str) -> ImageSpec:
    return ImageSpec(os=os_name, release=release, arches=["x86_64"], builder="debootstrap")


def debootstrapped(root: Path) -> Path:
    """The directories `_configure` writes into, as debootstrap leaves them."""
    for d in ("etc/systemd/system", "etc/apt/apt.conf.d", "var/lib/dbus", "var/lib/apt/lists"):
        (root / d).mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("release", "dhcp", "masked", "apt_conf"),
    [
        ("bookworm", "isc-dhcp-client", {"systemd-binfmt.service"}, None),
        (
            "trixie",
            "isc-dhcp-client",
            {"systemd-binfmt.service", "systemd-modules-load.service"},
            None,
        ),
        (
            "sid",
            "dhcpcd-base",
            {"systemd-binfmt.service", "console-getty.service"},
            'Acquire::Check-Valid-Until "false";',
        ),
    ],
)
def test_each_release_gets_its_dhcp_client_masks_and_apt_settings(
    tmp_path: Path, release: str, dhcp: str, masked: set[str], apt_conf: str | None
) -> None:
    image = spec("debian", release)
    assert release_of(image).dhcp_client == dhcp
    root = debootstrapped(tmp_path)
    _configure(root, image, "http://deb.debian.org/debian", "main")
    units = root / "etc/systemd/system"
    assert {p.name for p in units.iterdir() if p.is_symlink()} == masked
    assert all(os.readlink(units / u) == "/dev/null" for u in masked)
    conf = root / "etc/apt/apt.conf.d/99icefloe"
    assert (conf.read_text().splitlines()[-1] if conf.exists() else None) == apt_conf
    sources = (root / "etc/apt/sources.list").read_text()
    assert sources == f"deb http://deb.debian.org/debian {release} main\n"


def test_a_release_not_in_the_table_gets_the_defaults() -> None:
    assert release_of(spec("ubuntu", "sid")).dhcp_client == "isc-dhcp-client"
    assert release_of(spec("debian", "forky")).masked == ()


def test_a_build_caches_into_its_own_directory_and_shares_what_it_fetched(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "debian-amd64"
    shared.mkdir()
    (shared / "a_1_amd64.deb").write_text("a")
    (shared / "b_1_amd64.deb").write_text("b, fetched by another build")
    with borrowed_cache(shared) as own:
        assert own.parent == shared.parent and own != shared
        assert (own / "a_1_amd64.deb").stat().st_ino == (shared / "a_1_amd64.deb").stat().st_ino
        (own / "c_1_amd64.deb").write_text("half-writ")  # debootstrap downloading c
        assert not (shared / "c_1_amd64.deb").exists(), "no other build sees it yet"
        (own / "b_1_amd64.deb").unlink()  # debootstrap removes a .deb it finds bad...
        (own / "b_1_amd64.deb").write_text("b")  # ...and fetches it anew
    assert (shared / "c_1_amd64.deb").read_text() == "half-writ"
    assert (shared / "b_1_amd64.deb").read_text() == "b, fetched by another build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debian-amd64"], "own one removed"


def test_a_failed_build_shares_nothing(tmp_path: Path) -> None:
    """Its last .deb may be half-downloaded: only a finished debootstrap checked them all."""
    shared = tmp_path / "debian-i386"
    shared.mkdir()
    with pytest.raises(RuntimeError), borrowed_cache(shared) as own:
        (own / "d_1_i386.deb").write_text("half")
        raise RuntimeError("debootstrap failed")
    assert list(shared.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debian-i386"]
