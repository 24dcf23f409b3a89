"""What a version is built from: its definition's digest and, per arch, what the builder
would install. Two versions with equal inputs would be the same image, so a pipeline whose
inputs equal the newest active version's builds nothing (phase `unchanged`)."""

import hashlib

from pydantic import BaseModel, Field

from core.spec import ImageSpec


def spec_digest(spec: ImageSpec) -> str:
    """sha256 of the validated spec: formatting, comments and key order do not count."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


class ArchInputs(BaseModel):
    """What one arch's build installs, as far as its builder can say before building:
    `items` maps each input (a .deb, a suite's package index) to its version or digest.
    `known` False: the builder cannot say, so the arch is always built."""

    items: dict[str, str] = Field(default={}, max_length=256)
    known: bool = True


class VersionInputs(BaseModel):
    spec_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    arches: dict[str, ArchInputs] = Field(default={}, max_length=16)

    def same_as(self, other: "VersionInputs | None") -> bool:
        """Equal and fully known: building would give the same packages at the same versions."""
        return (
            other is not None
            and self.spec_digest == other.spec_digest
            and all(a.known for a in self.arches.values())
            and self.arches == other.arches
        )
