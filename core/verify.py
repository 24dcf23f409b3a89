"""What `icefloe verify` concludes about one image on a host from its server's signed
statements (issue 20): the DSSE envelopes checked against the keys the host pinned, the host's
fingerprint among each statement's subjects, the version not revoked, its checks passed.

Plain functions over the server's JSON answers, so that the command does the I/O and the
tests give real envelopes signed with a fresh key. Signatures are checked by
securesystemslib, in-toto's own library: `Envelope.verify` with the pinned `SSlibKey`s.
"""

import base64
import binascii
import copy
import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, SSlibKey

from core.arch import UnknownArchError, to_debian
from core.provenance import (
    BUILDER_ID,
    FINGERPRINT_NAME,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE,
    STATEMENT_TYPE,
    TEST_RESULTS,
)

# Subject names of fingerprints: `<arch>/lxd-fingerprint`, and `<arch>/incus-fingerprint`
# where Incus' differs.
FINGERPRINT_SUBJECTS = (FINGERPRINT_NAME, "incus-fingerprint")
# Results that satisfy the gate (the server's rule: not applicable counts, never as passed).
GATE_STATES = ("passed", "not_applicable")
NOT_PROMOTED = ("created", "testing")


class Problem(StrEnum):
    """Why an image is not verified, one word each (the `--json` answer's `problem`)."""

    unsigned = "unsigned"  # no signed statement of its build
    altered = "altered"  # a signature by a pinned key that does not verify, or not an envelope
    unpinned = "unpinned"  # signed, but only by keys this host does not pin
    other_subject = "other-subject"  # a statement about other files than this fingerprint's
    revoked = "revoked"
    untested = "untested"  # no signed test results for this fingerprint's arch
    failed = "failed"  # a signed result that failed, in a promotion not forced past the gate
    forced = "forced"  # promoted past the gate by an operator


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)  # hashable: the same one found twice shows once

    problem: Problem
    reason: str


class PinnedKey(BaseModel):
    """One provenance key as the server's `GET /api/v1/keys` lists it, saved by `icefloe pin`."""

    keyid: str
    key: dict[str, Any]
    created_at: datetime | None = None
    retired_at: datetime | None = None

    def sslib(self) -> SSlibKey:
        return SSlibKey.from_dict(self.keyid, copy.deepcopy(self.key))


class PinRefused(ValueError):
    """The server's keys answer is not something to pin (the message says why)."""


def default_keyid(key: dict[str, Any]) -> str:
    """securesystemslib's keyid of a public key: the sha256 of its canonical JSON. Pinning
    requires it, so that comparing a keyid out of band compares the key itself."""
    fields = {name: key.get(name) for name in ("keytype", "scheme", "keyval")}
    return hashlib.sha256(str(encode_canonical(fields)).encode()).hexdigest()


def keys_to_pin(answer: Any) -> list[PinnedKey]:
    """The provenance keys of a `GET /api/v1/keys` answer, each checked to load as a key and
    to carry its own keyid; the streams' OpenPGP key (no `key`) is not one of them."""
    try:
        listed = answer["keys"]
        keys = [PinnedKey.model_validate(k) for k in listed if k.get("purpose") == "provenance"]
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise PinRefused(f"not a keys answer: {exc}") from None
    if not keys:
        raise PinRefused("the server lists no provenance key")
    for k in keys:
        try:
            k.sslib()
        except (KeyError, TypeError, ValueError) as exc:
            raise PinRefused(f"key {k.keyid} is not a public key: {exc}") from None
        if default_keyid(k.key) != k.keyid:
            raise PinRefused(f"key {k.keyid} does not carry its own keyid ({default_keyid(k.key)})")
    return keys


class Build(BaseModel):
    """What the signed build statement says the image was built from, where and by what."""

    image: str | None
    serial: str | None
    definition_sha256: str | None
    builder: str | None
    versions: dict[str, str]
    dependencies: list[str]  # the mirror or .deb URLs it was built from
    manifest_sha256: str | None  # of this arch's package manifest
    build_host: str | None
    finished_on: str | None
    signed_by: list[str]


class CheckResult(BaseModel):
    check: str
    arch: str
    host: str | None = None
    instance_type: str | None = None
    server: str | None = None
    state: str
    evidence_sha256: str | None = None


class Promotion(BaseModel):
    at: str | None = None
    actor: str | None = None
    forced: bool = False
    reason: str | None = None
    known_failures: list[Any] = []


class Verdict(BaseModel):
    """What `icefloe verify` prints (and `--json` answers): what was built from what, which
    checks passed where, and every problem found; verified only when there is none."""

    fingerprint: str
    server: str
    image: str | None = None
    serial: str | None = None
    state: str | None = None
    arch: str | None = None  # Debian's name, as in the feeds and the statements' subjects
    flavour: str | None = None  # lxd or incus: which fingerprint of the version this is
    build: Build | None = None
    results: list[CheckResult] = []
    promotion: Promotion | None = None
    tests_signed_by: list[str] = []
    problems: list[Finding] = []

    @property
    def verified(self) -> bool:
        return not self.problems

    def only_forced(self) -> bool:
        """Every check but the gate's passed: the version was forced past it."""
        return bool(self.problems) and all(f.problem == Problem.forced for f in self.problems)

    def lines(self) -> list[str]:
        """The human answer: the record, then VERIFIED or each problem on a line of its own."""
        what = f"{self.image or '?'} {self.serial or '?'}"
        out = [f"{what}: {self.flavour or 'image'} fingerprint {self.fingerprint}"]
        out.append(f"  server {self.server}, state {self.state or 'unknown'}")
        if (b := self.build) is not None:
            versions = ", ".join(f"{k} {v}" for k, v in b.versions.items()) or "version unknown"
            out.append(
                f"  built by {b.builder or 'an unknown builder'} ({versions}) on "
                f"{b.build_host or 'an unknown host'}, finished {b.finished_on or 'unknown'}"
            )
            out.append(f"  from definition sha256:{b.definition_sha256 or 'unknown'}")
            for uri in b.dependencies:
                out.append(f"  from {uri}")
            out.append(f"  {self.arch} package manifest sha256:{b.manifest_sha256 or 'unknown'}")
            out.append(f"  build statement signed by {', '.join(b.signed_by)}")
        for r in self.results:
            where = ", ".join(x for x in (r.host, r.instance_type, r.server) if x) or "unknown"
            out.append(f"  {r.arch} {r.check}: {r.state} on {where}")
        if (p := self.promotion) is not None:
            how = "FORCED past the gate" if p.forced else "promoted"
            why = f": {p.reason}" if p.reason else ""
            out.append(f"  {how} by {p.actor or 'unknown'} at {p.at or 'unknown'}{why}")
            out.append(f"  test statement signed by {', '.join(self.tests_signed_by)}")
        if self.verified:
            out.append(
                "VERIFIED: signed by a pinned key, about this fingerprint, every check passed"
            )
        for f in self.problems:
            out.append(f"{f.problem.value.upper()}: {f.reason}")
        return out


class _Opened(BaseModel):
    kind: str  # the predicate type
    statement: dict[str, Any]
    signed_by: list[str]


def _open(envelope: Any, keys: list[PinnedKey]) -> _Opened | Finding:
    """The statement a pinned key signed in this envelope, or why there is none."""
    try:
        env = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict rewrites its input
    except (KeyError, TypeError, ValueError, AttributeError, FormatError, binascii.Error) as exc:
        return Finding(problem=Problem.altered, reason=f"not a DSSE envelope ({exc!r})")
    if not env.signatures:
        return Finding(problem=Problem.unsigned, reason="an envelope without a signature")
    pinned: list[Key] = [k.sslib() for k in keys if k.keyid in env.signatures]
    if not pinned:
        return Finding(
            problem=Problem.unpinned,
            reason=f"signed only by key {', '.join(env.signatures)}, which this host does not "
            "pin: the server's key was rotated to it (or it is not the server's); compare it "
            "with the server's operator and re-pin with `icefloe pin`",
        )
    try:
        accepted = env.verify(pinned, 1)
    except VerificationError:
        return Finding(
            problem=Problem.altered,
            reason=f"the signature by pinned key {', '.join(k.keyid for k in pinned)} does not "
            "verify: the statement was changed after it was signed",
        )
    if env.payload_type != PAYLOAD_TYPE:  # signed, so the server said so: not in-toto
        return Finding(problem=Problem.altered, reason=f"payload type {env.payload_type!r}")
    try:
        statement = json.loads(env.payload)
        if statement["_type"] != STATEMENT_TYPE or not isinstance(statement["subject"], list):
            raise ValueError(f"not an in-toto Statement v1: {statement['_type']!r}")
        return _Opened(
            kind=statement["predicateType"], statement=statement, signed_by=sorted(accepted)
        )
    except (ValueError, KeyError, TypeError) as exc:
        return Finding(problem=Problem.altered, reason=f"a signed payload that is not ({exc})")


def _subject_of(statement: dict[str, Any], fingerprint: str) -> tuple[str, str] | None:
    """(arch, flavour) of the statement's subject that is this fingerprint, if one is."""
    for s in statement["subject"]:
        name = s.get("name", "") if isinstance(s, dict) else ""
        arch, _, what = name.rpartition("/")
        digest = s.get("digest", {}) if isinstance(s, dict) else {}
        if what in FINGERPRINT_SUBJECTS and digest.get("sha256") == fingerprint:
            return arch, what.removesuffix("-fingerprint")
    return None


def _debian(arch: str) -> str:
    """A result's arch in the subjects' (Debian) spelling, whichever the result used."""
    try:
        return to_debian(arch)
    except UnknownArchError:
        return arch


def _of_arch(dependency: dict[str, Any], arch: str) -> bool:
    """A dependency of this arch's build, or of every arch's (the mirror)."""
    name = str(dependency.get("name", ""))
    return "/" not in name or name.startswith(f"{arch}/")


def _dependency(d: dict[str, Any]) -> str:
    """One thing the image was built from, as a line: its URL, else its name and version,
    and its digest."""
    version = (d.get("annotations") or {}).get("version")
    sha = (d.get("digest") or {}).get("sha256")
    words = [d.get("uri") or d.get("name") or "?", version, f"sha256:{sha}" if sha else None]
    return " ".join(str(w) for w in words if w)


def _build(opened: _Opened, arch: str) -> Build:
    """The build statement's record, each field None where the statement does not say."""
    p = opened.statement.get("predicate") or {}
    definition = p.get("buildDefinition") or {}
    params = definition.get("externalParameters") or {}
    deps = definition.get("resolvedDependencies") or []
    run = p.get("runDetails") or {}
    builder = run.get("builder") or {}
    manifest: dict[str, Any] = next((d for d in deps if d.get("name") == f"{arch}/manifest"), {})
    made = {b.get("name"): b for b in run.get("byproducts") or []}
    host = made.get(f"{arch}/build-host") or made.get("build-host") or {}
    try:
        build_host = base64.b64decode(host["content"]).decode() if host.get("content") else None
    except (binascii.Error, UnicodeDecodeError):
        build_host = host["content"]
    if build_host is None and (why := (host.get("annotations") or {}).get("unknown")):
        build_host = f"an unknown host ({why})"
    builder_id = builder.get("id")
    return Build(
        image=params.get("image"),
        serial=params.get("serial"),
        definition_sha256=params.get("definition_sha256"),
        builder=builder_id.removeprefix(BUILDER_ID) if builder_id else None,
        versions={str(k): str(v) for k, v in (builder.get("version") or {}).items()},
        dependencies=[_dependency(d) for d in deps if _of_arch(d, arch) and d is not manifest],
        manifest_sha256=(manifest.get("digest") or {}).get("sha256"),
        build_host=build_host,
        finished_on=(run.get("metadata") or {}).get("finishedOn"),
        signed_by=opened.signed_by,
    )


def verdict(
    answer: dict[str, Any] | None, keys: list[PinnedKey], fingerprint: str, server: str
) -> Verdict:
    """The verdict on the image with this fingerprint from the server's attestations answer
    (`GET /api/v1/attestations/{fingerprint}`; None: it knows no such image) and the keys the
    host pinned.

    Only what a pinned key signed is believed, except the answer's revocation: an unsigned
    "revoked" can only refuse an image, never make one pass."""
    if answer is None:
        reason = "the server knows no version with this fingerprint: not an image it published"
        problem = Finding(problem=Problem.unsigned, reason=reason)
        return Verdict(fingerprint=fingerprint, server=server, problems=[problem])
    v = Verdict(
        fingerprint=fingerprint,
        server=server,
        image=answer.get("image"),
        serial=answer.get("serial"),
        state=answer.get("state"),
    )
    problems: list[Finding] = []
    builds: list[_Opened] = []
    tests: list[_Opened] = []
    for item in answer.get("attestations") or []:
        opened = _open(item.get("envelope") if isinstance(item, dict) else None, keys)
        if isinstance(opened, Finding):
            problems.append(opened)
            continue
        found = _subject_of(opened.statement, fingerprint)
        if found is None:
            others = [
                f"{s.get('name')} {(s.get('digest') or {}).get('sha256', '')[:12]}"
                for s in opened.statement["subject"]
                if isinstance(s, dict) and str(s.get("name", "")).endswith("-fingerprint")
            ]
            problems.append(
                Finding(
                    problem=Problem.other_subject,
                    reason=f"a statement about {', '.join(others) or 'other files'}, not "
                    f"fingerprint {fingerprint}",
                )
            )
            continue
        v.arch, v.flavour = found
        if opened.kind == SLSA_PROVENANCE:
            builds.append(opened)
        elif opened.kind == TEST_RESULTS:
            tests.append(opened)

    # A statement refused explains what is missing: no "untested" for a test statement altered.
    refused = list(dict.fromkeys(problems))  # each once, however many statements it hit
    problems = []
    if (revoked := answer.get("revoked")) or v.state == "revoked":
        r = revoked or {}
        problems.append(
            Finding(
                problem=Problem.revoked,
                reason=f"revoked by {r.get('actor', 'unknown')} at {r.get('at', 'unknown')}: "
                f"{r.get('reason', 'no reason given')}",
            )
        )
    if builds:
        v.build = _build(builds[-1], v.arch or "")
    elif not refused:
        problems.append(
            Finding(
                problem=Problem.unsigned,
                reason="the server has no signed build statement for this version"
                if answer.get("attestations") == []
                else "no signed build statement among the server's statements",
            )
        )
    tested = _tested(v, tests)
    if refused:
        tested = [f for f in tested if f.problem != Problem.untested]
    v.problems = refused + problems + tested
    return v


def _promotion_at(statement: dict[str, Any]) -> Any:
    return ((statement.get("predicate") or {}).get("promotion") or {}).get("at")


def _tested(v: Verdict, tests: list[_Opened]) -> list[Finding]:
    """Fill the verdict's results and promotion from the newest test statement; what it lacks."""
    if not tests:
        return [
            Finding(
                problem=Problem.untested,
                reason="no signed test results: "
                + (
                    f"the version was never promoted (state {v.state})"
                    if v.state in NOT_PROMOTED
                    else f"none for this version (state {v.state or 'unknown'})"
                ),
            )
        ]
    newest = max(tests, key=lambda t: str(_promotion_at(t.statement)))
    p = newest.statement.get("predicate") or {}
    try:
        results = [CheckResult.model_validate(r) for r in p.get("results") or []]
        promotion = Promotion.model_validate(p.get("promotion") or {})
    except ValidationError as exc:
        return [Finding(problem=Problem.altered, reason=f"a test statement not as signed: {exc}")]
    mine = [r for r in results if _debian(r.arch) == v.arch]
    v.results, v.promotion, v.tests_signed_by = mine, promotion, newest.signed_by
    problems = []
    if not mine:
        problems.append(
            Finding(problem=Problem.untested, reason=f"no check ran on {v.arch}, this image's arch")
        )
    # A check passed if any result of it did (a retry, another host), as in the gate.
    passed = {r.check for r in mine if r.state in GATE_STATES}
    bad = sorted({r.check for r in mine} - passed)
    if promotion.forced:
        failing = f"; not passed on {v.arch}: {', '.join(bad)}" if bad else ""
        problems.append(
            Finding(
                problem=Problem.forced,
                reason=f"forced past the gate by {promotion.actor or 'unknown'} at "
                f"{promotion.at or 'unknown'}: {promotion.reason or 'no reason given'}{failing}",
            )
        )
    elif unwaived := [c for c in bad if c not in _waived(promotion.known_failures)]:
        problems.append(
            Finding(
                problem=Problem.failed,
                reason=f"signed results not passed on {v.arch}: {', '.join(unwaived)}",
            )
        )
    return problems


def _waived(known_failures: list[Any]) -> set[str]:
    """The checks a promotion's known failures name (each a check name or an object with one)."""
    return {str(k.get("check")) if isinstance(k, dict) else str(k) for k in known_failures}
