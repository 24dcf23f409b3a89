"""The statements core.provenance makes from plain data: what a debootstrap build's inputs
become (the mirror, each suite index under it), and what is said when nothing is known."""

from datetime import UTC, datetime

from core.provenance import ArchSubjects, BuildFacts, build_statement

AT = datetime(2026, 12, 4, tzinfo=UTC)
ARCH = ArchSubjects("x86_64", {"lxd.tar.xz": "1" * 64, "rootfs.squashfs": "2" * 64}, "3" * 64)


def facts(**fields: object) -> BuildFacts:
    given: dict = {
        "image": "debian:12:default",
        "serial": "20261204",
        "builder": "debootstrap",
        "icefloe_version": "0.1.0",
        "definition": {"os": "debian"},
        "definition_sha256": "4" * 64,
        "published_at": AT,
        "arches": [ARCH],
    }
    return BuildFacts(**(given | fields))


def test_subjects_are_each_file_and_the_fingerprint_by_debian_arch():
    said = build_statement(facts())
    assert said["subject"] == [
        {"name": "amd64/lxd.tar.xz", "digest": {"sha256": "1" * 64}},
        {"name": "amd64/rootfs.squashfs", "digest": {"sha256": "2" * 64}},
        {"name": "amd64/lxd-fingerprint", "digest": {"sha256": "3" * 64}},
    ]


def test_a_debootstrap_build_names_its_mirror_and_each_index_under_it():
    index = "deb:bookworm/main/binary-amd64/Packages.xz"
    said = build_statement(
        facts(
            mirror="http://deb.debian.org/debian",
            inputs={"x86_64": {index: "5" * 64}},
            manifests={"x86_64": "6" * 64},
        )
    )
    deps = said["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps == [
        {"name": "mirror", "uri": "http://deb.debian.org/debian"},
        {
            "name": "amd64/bookworm/main/binary-amd64/Packages.xz",
            "digest": {"sha256": "5" * 64},
            "uri": "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz",
        },
        {"name": "amd64/manifest", "digest": {"sha256": "6" * 64}},
    ]


def test_what_the_publish_did_not_report_is_said_unknown():
    run = build_statement(facts())["predicate"]["runDetails"]
    assert run["builder"]["version"]["debootstrap"].startswith("unknown")
    assert run["metadata"] == {"invocationId": "unknown: no workflow"}
    assert run["byproducts"][0] == {
        "name": "amd64/build-host",
        "annotations": {"unknown": "the publish did not say"},
    }
