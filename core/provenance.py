"""in-toto Statements (v1) a version's attestations carry: the build statement (a SLSA
provenance v1 predicate: what was built from what, by which builder, where) made at publish,
and the test statement (each check's result on each arch and host, the promotion) made when
the version is promoted. Plain functions from plain data, no I/O and no keys: the server
signs what these return (server_api.provenance), `icefloe verify` reads it.

A field the server cannot know says so (`unknown: ...`) rather than holding a guess.
"""

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel, Field

from core.arch import to_debian
from core.catalog import BuildRecord, VersionState

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
TEST_RESULTS = "https://icefloe.dev/attestations/test-results/v1"
BUILD_TYPE = "https://icefloe.dev/build/v1"
BUILDER_ID = "https://icefloe.dev/builders/"
FINGERPRINT_NAME = "lxd-fingerprint"


def icefloe_version() -> str:
    """Icefloe's installed version, as the build statement names the builder's."""
    try:
        return version("icefloe")
    except PackageNotFoundError:  # run from a checkout without an install
        return "unknown"


class AttestationKind(StrEnum):
    build = "build"  # made at publish: SLSA provenance
    test = "test"  # made at each promotion: the results the gate saw


@dataclass(frozen=True)
class ArchSubjects:
    """One arch's files (name -> sha256, e.g. `lxd.tar.xz`, `sbom.spdx.json`) and its LXD
    fingerprint."""

    arch: str  # LXD's name; subjects carry Debian's, as the feeds do
    files: Mapping[str, str]
    fingerprint: str


@dataclass(frozen=True)
class BuildFacts:
    """What the publish knows of how a version was built."""

    image: str
    serial: str
    builder: str  # the definition's builder: busybox, debootstrap, distrobuilder
    icefloe_version: str
    definition: dict[str, Any]  # the validated spec, as the server stores its digest
    definition_sha256: str
    published_at: datetime
    arches: Sequence[ArchSubjects]
    # Per arch (LXD name): its manifest's sha256, and what the builder installed
    # (core.inputs.ArchInputs.items: `deb:<name>` -> `<version> sha256:<hex>`, or an index's
    # `deb:<suite>/<path>` -> sha256).
    manifests: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    mirror: str | None = None  # the apt mirror debootstrap used, if the builder uses one
    workflow_id: str | None = None
    # Per arch (LXD name), as its build reported it; an arch absent: unknown.
    builds: Mapping[str, BuildRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    check: str
    arch: str  # LXD's name
    host: str
    instance_type: str
    server: str | None  # "lxd 5.0.2" when the tester said; None: not recorded
    state: str
    evidence: str


@dataclass(frozen=True)
class Promotion:
    at: datetime
    actor: str
    forced: bool
    reason: str | None
    known_failures: Sequence[Mapping[str, Any]] = ()


def subjects(arches: Sequence[ArchSubjects]) -> list[dict[str, Any]]:
    """One subject per file of every arch, then one per fingerprint, by Debian arch name."""
    out: list[dict[str, Any]] = []
    for a in sorted(arches, key=lambda a: a.arch):
        deb = to_debian(a.arch)
        out += [
            {"name": f"{deb}/{name}", "digest": {"sha256": sha}}
            for name, sha in sorted(a.files.items())
        ]
        out.append({"name": f"{deb}/{FINGERPRINT_NAME}", "digest": {"sha256": a.fingerprint}})
    return out


def _statement(subject: list[dict[str, Any]], predicate_type: str, predicate: dict) -> dict:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _input_descriptor(deb_arch: str, key: str, value: str, mirror: str | None) -> dict:
    """An ArchInputs item as a SLSA ResourceDescriptor: a .deb by version and sha256, or a
    suite's package index by sha256 (under the mirror's `dists/`, when the mirror is known)."""
    what = key.removeprefix("deb:")
    version, _, sha = value.rpartition(" sha256:")
    if not sha or not version:
        version, sha = "", value
    desc: dict[str, Any] = {"name": f"{deb_arch}/{what}", "digest": {"sha256": sha}}
    if "/" in what and mirror:
        desc["uri"] = f"{mirror.rstrip('/')}/dists/{what}"
    if version:
        desc["annotations"] = {"version": version}
    return desc


def _unknown(why: str) -> dict[str, str]:
    return {"unknown": why}


def build_statement(facts: BuildFacts) -> dict[str, Any]:
    """The SLSA provenance v1 statement of a published version."""
    deps: list[dict[str, Any]] = []
    if facts.mirror:
        deps.append({"name": "mirror", "uri": facts.mirror})
    for arch in sorted(facts.inputs):
        deb = to_debian(arch)
        deps += [
            _input_descriptor(deb, k, v, facts.mirror)
            for k, v in sorted(facts.inputs[arch].items())
        ]
    for arch, sha in sorted(facts.manifests.items()):
        deps.append({"name": f"{to_debian(arch)}/manifest", "digest": {"sha256": sha}})
    versions: dict[str, Any] = {"icefloe": facts.icefloe_version}
    runs = [facts.builds[a] for a in sorted(facts.builds)]
    tools = {r.tool_version for r in runs if r.tool_version}
    versions[facts.builder] = (
        ", ".join(sorted(tools)) if tools else "unknown: the publish did not report it"
    )
    metadata: dict[str, Any] = {"invocationId": facts.workflow_id or "unknown: no workflow"}
    if runs:
        metadata["startedOn"] = _iso(min(r.started_at for r in runs))
        metadata["finishedOn"] = _iso(max(r.finished_at for r in runs))
    byproducts: list[dict[str, Any]] = []
    for a in sorted(facts.arches, key=lambda a: a.arch):
        deb = to_debian(a.arch)
        run = facts.builds.get(a.arch)
        if run is None:
            byproducts.append(
                {"name": f"{deb}/build-host", "annotations": _unknown("the publish did not say")}
            )
        else:
            host = base64.b64encode(run.host.encode()).decode()
            byproducts.append({"name": f"{deb}/build-host", "content": host})
    byproducts.append({"name": "published", "annotations": {"at": _iso(facts.published_at)}})
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "image": facts.image,
                "serial": facts.serial,
                "definition": facts.definition,
                "definition_sha256": facts.definition_sha256,
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID + facts.builder, "version": versions},
            "metadata": metadata,
            "byproducts": byproducts,
        },
    }
    return _statement(subjects(facts.arches), SLSA_PROVENANCE, predicate)


def evidence_sha256(evidence: str) -> str:
    return hashlib.sha256(evidence.encode()).hexdigest()


def test_statement(
    image: str,
    serial: str,
    arches: Sequence[ArchSubjects],
    results: Sequence[CheckResult],
    promotion: Promotion,
) -> dict[str, Any]:
    """The results a promotion stood on, and the promotion: forced or through the gate."""
    rows = [
        {
            "check": r.check,
            "arch": to_debian(r.arch),
            "host": r.host,
            "instance_type": r.instance_type,
            "server": r.server,
            "state": r.state,
            "evidence_sha256": evidence_sha256(r.evidence),
        }
        for r in sorted(results, key=lambda r: (r.arch, r.check, r.instance_type, r.host))
    ]
    predicate = {
        "image": image,
        "serial": serial,
        "results": rows,
        "promotion": {
            "at": _iso(promotion.at),
            "actor": promotion.actor,
            "forced": promotion.forced,
            "reason": promotion.reason,
            "known_failures": list(promotion.known_failures),
        },
    }
    return _statement(subjects(arches), TEST_RESULTS, predicate)


class KeyView(BaseModel):
    """A public key the server signs (or signed) with: `key` as securesystemslib reads it
    (`SSlibKey.from_dict(keyid, key)`), the same key as PEM."""

    keyid: str
    purpose: str
    key: dict[str, Any] | None
    public_key_pem: str
    created_at: datetime
    retired_at: datetime | None = None  # rotated away: what it signed still verifies


class KeysView(BaseModel):
    keys: list[KeyView]


class AttestationView(BaseModel):
    kind: AttestationKind
    created_at: datetime
    envelope: dict[str, Any] = Field(description="a DSSE envelope of an in-toto Statement v1")


class Revocation(BaseModel):
    at: datetime
    actor: str
    reason: str


class VersionAttestations(BaseModel):
    """A version's signed statements, oldest first; `attestations` is empty for one published
    before the server signed."""

    image: str
    serial: str
    state: VersionState
    revoked: Revocation | None = None
    attestations: list[AttestationView]
