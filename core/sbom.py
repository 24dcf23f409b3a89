"""Software bills of materials: the packages of one arch of a version (its package manifest,
`core.manifest`) as SPDX 2.3 JSON and CycloneDX 1.5 JSON, the image itself the described
component.

Plain functions on values, no I/O: the same input gives the same bytes (the documents' time
is the version's creation time, their namespace and serial number come from the image, the
serial and the arch), so a document can be made again on any server and compared.
"""

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from packageurl import PackageURL

from core.arch import KNOWN_ARCHES, to_debian

SPDX_MEDIA_TYPE = "application/spdx+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
TOOL = "icefloe"
# uuid5's namespace for the documents' ids: fixed, so an id depends on image, serial and arch only.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:icefloe:sbom")
_DEBIAN_ARCHES = frozenset(to_debian(a) for a in KNOWN_ARCHES)
_SPDX_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


class SbomFormat(StrEnum):
    spdx = "spdx"
    cyclonedx = "cyclonedx"

    @property
    def media_type(self) -> str:
        return SPDX_MEDIA_TYPE if self is SbomFormat.spdx else CYCLONEDX_MEDIA_TYPE

    @property
    def ftype(self) -> str:
        """The document's name as a stored file of a version arch: its feed item's key and
        ftype (LXD and Incus take only the ftypes they know, `shared/simplestreams`) and its
        name among the build statement's subjects (`amd64/sbom.spdx.json`)."""
        return "sbom.spdx.json" if self is SbomFormat.spdx else "sbom.cdx.json"


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str  # Debian's name (amd64, i386, ...)

    @property
    def purl(self) -> str:
        return PackageURL(
            type="deb",
            namespace="debian",
            name=self.name,
            version=self.version,
            qualifiers={"arch": self.arch},
        ).to_string()


@dataclass(frozen=True)
class ImageBom:
    """What a bill of materials is made from: one arch of one version and its packages."""

    image: str  # os:release:variant
    serial: str
    arch: str  # LXD's name (x86_64, ...)
    created_at: datetime  # the version's creation time; naive means UTC
    packages: Mapping[str, str] = field(default_factory=dict)  # name -> version (a manifest)
    fingerprint: str | None = None  # LXD's, when known

    @property
    def debian_arch(self) -> str:
        return to_debian(self.arch)

    @property
    def name(self) -> str:
        return f"{self.image} {self.serial} {self.arch}"

    @property
    def timestamp(self) -> str:
        at = self.created_at
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.uuid5(_NAMESPACE, f"{self.image}/{self.serial}/{self.arch}")

    def deb_packages(self) -> list[DebPackage]:
        """Sorted by name. A manifest names a multiarch package's second copy `name:arch`
        (`core.manifest.dpkg_installed`); every other package is of the image's arch."""
        found = []
        for listed in sorted(self.packages):
            name, _, arch = listed.partition(":")
            if arch not in _DEBIAN_ARCHES:
                name, arch = listed, self.debian_arch
            found.append(DebPackage(name, self.packages[listed], arch))
        return found


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


def _image_properties(bom: ImageBom) -> list[tuple[str, str]]:
    props = [("arch", bom.arch), ("debian-arch", bom.debian_arch)]
    if bom.fingerprint:
        props.append(("lxd-fingerprint", bom.fingerprint))
    return props


def spdx_json(bom: ImageBom) -> bytes:
    """SPDX 2.3: the image is the package the document describes (documentDescribes and a
    DESCRIBES relationship) and CONTAINS each Debian package, whose purl is its external
    reference and whose architecture its comment says."""
    image_id = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": image_id,
            "name": bom.image,
            "versionInfo": bom.serial,
            "primaryPackagePurpose": "CONTAINER",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "supplier": f"Tool: {TOOL}",
            "description": f"LXD image {bom.image}, version {bom.serial}, arch {bom.arch}",
            "comment": "; ".join(f"{k}: {v}" for k, v in _image_properties(bom)),
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    for number, pkg in enumerate(bom.deb_packages(), 1):
        spdx_id = f"SPDXRef-deb-{number}-{_SPDX_ID_UNSAFE.sub('-', pkg.name)}-{pkg.arch}"
        packages.append(
            {
                "SPDXID": spdx_id,
                "name": pkg.name,
                "versionInfo": pkg.version,
                "primaryPackagePurpose": "LIBRARY",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "comment": f"arch: {pkg.arch}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": pkg.purl,
                    }
                ],
            }
        )
        relationships.append(
            {
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": spdx_id,
            }
        )
    return _encode(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": bom.name,
            "documentNamespace": f"urn:icefloe:sbom:{bom.image}/{bom.serial}/{bom.arch}",
            "creationInfo": {"created": bom.timestamp, "creators": [f"Tool: {TOOL}"]},
            "documentDescribes": [image_id],
            "packages": packages,
            "relationships": relationships,
        }
    )


def cyclonedx_json(bom: ImageBom) -> bytes:
    """CycloneDX 1.5: the image is metadata.component, each Debian package a component with
    its purl (also its bom-ref) and its architecture as a property."""
    image_ref = f"image:{bom.image}/{bom.serial}/{bom.arch}"
    debs = [(pkg, pkg.purl) for pkg in bom.deb_packages()]
    return _encode(
        {
            "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": bom.uuid.urn,
            "version": 1,
            "metadata": {
                "timestamp": bom.timestamp,
                "tools": {"components": [{"type": "application", "name": TOOL}]},
                "component": {
                    "type": "container",
                    "bom-ref": image_ref,
                    "name": bom.image,
                    "version": bom.serial,
                    "description": f"LXD image {bom.image}, version {bom.serial}, arch {bom.arch}",
                    "properties": [
                        {"name": f"icefloe:{k}", "value": v} for k, v in _image_properties(bom)
                    ],
                },
            },
            "components": [
                {
                    "type": "library",
                    "bom-ref": purl,
                    "name": pkg.name,
                    "version": pkg.version,
                    "purl": purl,
                    "properties": [{"name": "icefloe:debian-arch", "value": pkg.arch}],
                }
                for pkg, purl in debs
            ],
            "dependencies": [{"ref": image_ref, "dependsOn": [purl for _, purl in debs]}],
        }
    )


def sbom_json(bom: ImageBom, fmt: SbomFormat) -> bytes:
    return spdx_json(bom) if fmt is SbomFormat.spdx else cyclonedx_json(bom)
