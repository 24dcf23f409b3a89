"""Package manifests: the packages in a version's rootfs, as the `manifest` file of each arch
(one `name<TAB>version` line per package, sorted, as Ubuntu's cloud images' `.manifest`),
and the differences between two of them.

Plain functions on text: builders write manifests, the server checks and compares them.
"""

import re
from collections.abc import Mapping

from pydantic import BaseModel

# A Debian minbase lists ~100 packages (~3 KiB), an Ubuntu desktop ~2,000 (~80 KiB).
MANIFEST_MAX_BYTES = 1 << 20
# A field: printable, no whitespace (names and versions of dpkg, rpm and apk all are).
_FIELD = r"[^\s\x00-\x1f\x7f]{1,256}"
_LINE = re.compile(rf"({_FIELD})\t({_FIELD})")

Packages = dict[str, str]  # name -> version


class ManifestError(ValueError):
    """Bytes that are not a manifest; the message says where and why."""


class Package(BaseModel):
    name: str
    version: str


class PackageChange(BaseModel):
    name: str
    old: str
    new: str


class ManifestDiff(BaseModel):
    """What changed from one manifest to the next, each list by package name."""

    added: list[Package]
    removed: list[Package]
    changed: list[PackageChange]

    def summary(self) -> str:
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"


def parse_manifest(data: bytes) -> Packages:
    """The packages a manifest lists; ManifestError if it is too large, not UTF-8, has a
    line that is not `name<TAB>version`, or names a package twice. Empty is valid: a
    rootfs without a package database lists nothing."""
    if len(data) > MANIFEST_MAX_BYTES:
        raise ManifestError(f"a manifest is at most {MANIFEST_MAX_BYTES} bytes, not {len(data)}")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ManifestError(f"a manifest is UTF-8 text; byte {exc.start} is not") from None
    packages: Packages = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ManifestError(
                f"line {number} is not `name<TAB>version` (two fields without spaces): "
                f"{line[:80]!r}"
            )
        name, version = match.groups()
        if name in packages:
            raise ManifestError(f"line {number} lists package {name!r} again")
        packages[name] = version
    return packages


def format_manifest(packages: Mapping[str, str]) -> bytes:
    """The manifest of `packages`: sorted by name, so the same packages give the same bytes."""
    return "".join(f"{name}\t{packages[name]}\n" for name in sorted(packages)).encode()


def dpkg_installed(status: str) -> Packages:
    """The installed packages a dpkg status file (`var/lib/dpkg/status`) lists. A package
    installed for two arches (multiarch) is listed again as `name:arch`."""
    packages: Packages = {}
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if line[:1].strip() and ":" in line
        )
        fields = {k: v.strip() for k, v in fields.items()}
        if not fields.get("Status", "").endswith(" installed"):
            continue  # removed with its configuration kept, half-installed, ...
        name = fields["Package"]
        if name in packages:
            name = f"{name}:{fields['Architecture']}"
        packages[name] = fields["Version"]
    return packages


def diff_manifests(old: Mapping[str, str], new: Mapping[str, str]) -> ManifestDiff:
    return ManifestDiff(
        added=[Package(name=n, version=new[n]) for n in sorted(new.keys() - old.keys())],
        removed=[Package(name=n, version=old[n]) for n in sorted(old.keys() - new.keys())],
        changed=[
            PackageChange(name=n, old=old[n], new=new[n])
            for n in sorted(old.keys() & new.keys())
            if old[n] != new[n]
        ],
    )
