"""Package manifests: parsing what builders write, dpkg's status file, and the differences."""

import pytest

from core.manifest import (
    MANIFEST_MAX_BYTES,
    ManifestDiff,
    ManifestError,
    Package,
    PackageChange,
    diff_manifests,
    dpkg_installed,
    format_manifest,
    parse_manifest,
)

STATUS = """\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u9
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system. Version: 0 (a continuation line, not a field)

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u9

Package: busybox
Status: install ok installed
Architecture: amd64
Version: 1:1.35.0-4+b3
"""


def test_format_sorts_and_parse_reads_it_back() -> None:
    packages = {"zlib1g": "1:1.2.13.dfsg-1", "bash": "5.2.15-2+b7"}
    text = format_manifest(packages)
    assert text == b"bash\t5.2.15-2+b7\nzlib1g\t1:1.2.13.dfsg-1\n"
    assert parse_manifest(text) == packages
    assert parse_manifest(b"") == {} and format_manifest({}) == b""
    assert parse_manifest(b"a\t1") == {"a": "1"}, "the last newline is optional"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"bash 5.2\n", "line 1 is not `name<TAB>version`"),
        (b"bash\t5.2\n\n", "line 2 is not"),
        (b"bash\t5.2\textra\n", "line 1 is not"),
        (b"bash\t\n", "line 1 is not"),
        (b"ba sh\t5.2\n", "line 1 is not"),
        (b"bash\t5.2\x00\n", "line 1 is not"),
        (b"bash\t5.2\nbash\t5.3\n", "line 2 lists package 'bash' again"),
        (b"bash\t\xff\n", "byte 5 is not"),
        (b"a\t1\n" * (MANIFEST_MAX_BYTES // 4 + 1), f"at most {MANIFEST_MAX_BYTES} bytes"),
    ],
)
def test_what_is_not_a_manifest_is_refused_saying_why(data: bytes, says: str) -> None:
    with pytest.raises(ManifestError, match=says.replace("(", r"\(")):
        parse_manifest(data)


def test_dpkg_status_lists_installed_packages_only() -> None:
    assert dpkg_installed(STATUS) == {
        "libc6": "2.36-9+deb12u9",
        "libc6:i386": "2.36-9+deb12u9",
        "busybox": "1:1.35.0-4+b3",
    }
    assert dpkg_installed("") == {}
    assert parse_manifest(format_manifest(dpkg_installed(STATUS))) == dpkg_installed(STATUS)


def test_diff_lists_added_removed_and_changed_by_name() -> None:
    old = {"bash": "5.1", "libc6": "2.36-9", "gone": "1", "same": "2"}
    new = {"bash": "5.2", "libc6": "2.36-9+deb12u9", "new": "0.1", "same": "2"}
    diff = diff_manifests(old, new)
    assert diff == ManifestDiff(
        added=[Package(name="new", version="0.1")],
        removed=[Package(name="gone", version="1")],
        changed=[
            PackageChange(name="bash", old="5.1", new="5.2"),
            PackageChange(name="libc6", old="2.36-9", new="2.36-9+deb12u9"),
        ],
    )
    assert diff.summary() == "1 added, 1 removed, 2 changed"
    assert diff_manifests(new, new).summary() == "0 added, 0 removed, 0 changed"
