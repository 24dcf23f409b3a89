"""When two versions' inputs count as the same: only when building again would install the
same packages at the same versions from the same definition."""

import pytest
import yaml

from core.inputs import ArchInputs, VersionInputs, spec_digest
from core.spec import ImageSpec

DEB = {"deb:busybox-static": "1:1.35.0-4 sha256:" + "a" * 64}
INDEX = {"deb:trixie/main/binary-amd64/Packages.xz": "b" * 64}


def inputs(digest: str = "d" * 64, **arches: ArchInputs) -> VersionInputs:
    return VersionInputs(spec_digest=digest, arches=arches or {"x86_64": ArchInputs(items=DEB)})


def test_equal_and_known_inputs_are_the_same() -> None:
    assert inputs().same_as(inputs())
    assert inputs(x86_64=ArchInputs(items=INDEX), i686=ArchInputs(items=DEB)).same_as(
        inputs(i686=ArchInputs(items=DEB), x86_64=ArchInputs(items=INDEX))
    )


@pytest.mark.parametrize(
    ("newest", "why"),
    [
        (None, "no active version to compare with"),
        (inputs("e" * 64), "the definition changed"),
        (inputs(x86_64=ArchInputs(items=DEB | {"deb:busybox-static": "other"})), "a .deb changed"),
        (inputs(x86_64=ArchInputs(items=DEB | INDEX)), "an input more"),
        (inputs(x86_64=ArchInputs(items={})), "an input less"),
        (inputs(i686=ArchInputs(items=DEB)), "another arch"),
        (inputs(x86_64=ArchInputs(items=DEB), i686=ArchInputs(items=DEB)), "an arch more"),
    ],
)
def test_any_difference_is_a_change(newest: VersionInputs | None, why: str) -> None:
    assert not inputs().same_as(newest), why


def test_an_arch_whose_builder_cannot_say_is_never_the_same() -> None:
    unknown = inputs(x86_64=ArchInputs(known=False))
    assert not unknown.same_as(unknown)
    mixed = inputs(x86_64=ArchInputs(items=DEB), i686=ArchInputs(known=False))
    assert not mixed.same_as(mixed)


def test_newest_without_inputs_is_never_the_same() -> None:
    """A version published before inputs were kept has none: the next one is built."""
    assert not inputs().same_as(VersionInputs.model_validate({"spec_digest": "d" * 64}))


def test_the_spec_digest_is_the_validated_spec() -> None:
    text = "os: busybox\nrelease: '1.35'\narches: [x86_64]\nchecks: [boots]\n"
    shuffled = "# a comment\nchecks:\n  - boots\narches: [x86_64]\nrelease: '1.35'\nos: busybox\n"
    one, other = (ImageSpec.model_validate(yaml.safe_load(t)) for t in (text, shuffled))
    assert spec_digest(one) == spec_digest(other)
    edited = one.model_copy(
        update={
            "checks": one.checks
            + ImageSpec(os="x", release="1", arches=["x86_64"], checks=["stop"]).checks
        }
    )
    assert spec_digest(edited) != spec_digest(one)
