"""The verdict on an image from its signed statements: real DSSE envelopes signed with freshly
generated ed25519 keys (securesystemslib's CryptoSigner), shaped as CONTRACT-provenance says
the server makes them; each way an image can fail verification, and a good one passing."""

import base64
import json
from typing import Any

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from core.provenance import PAYLOAD_TYPE, SLSA_PROVENANCE, STATEMENT_TYPE, TEST_RESULTS
from core.verify import (
    PinnedKey,
    PinRefused,
    Problem,
    keys_to_pin,
    verdict,
)

LXD_FP = {"amd64": "a1" * 32, "i386": "b2" * 32}
INCUS_FP = {"amd64": "c3" * 32, "i386": "d4" * 32}
SERVER = "https://images.example:8443"


def subjects(lxd: dict[str, str] = LXD_FP) -> list[dict[str, Any]]:
    out = []
    for arch, fp in lxd.items():
        out.append({"name": f"{arch}/lxd.tar.xz", "digest": {"sha256": "e5" * 32}})
        out.append({"name": f"{arch}/rootfs.squashfs", "digest": {"sha256": "f6" * 32}})
        out.append({"name": f"{arch}/lxd-fingerprint", "digest": {"sha256": fp}})
        out.append({"name": f"{arch}/incus-fingerprint", "digest": {"sha256": INCUS_FP[arch]}})
    return out


def build_statement(lxd: dict[str, str] = LXD_FP) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(lxd),
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://icefloe.dev/build/v1",
                "externalParameters": {
                    "image": "busybox:1.35:default",
                    "serial": "20261204-120000",
                    "definition": {"os": "busybox"},
                    "definition_sha256": "9a" * 32,
                },
                "resolvedDependencies": [
                    {"uri": "http://deb.debian.org/debian", "digest": {"sha256": "11" * 32}},
                    {"name": "amd64/manifest", "digest": {"sha256": "22" * 32}},
                    {"name": "i386/manifest", "digest": {"sha256": "33" * 32}},
                ],
            },
            "runDetails": {
                "builder": {
                    "id": "https://icefloe.dev/builders/busybox",
                    "version": {"icefloe": "0.1.0", "busybox": "1.35.0-4+b3"},
                },
                "metadata": {
                    "invocationId": "icefloe:busybox:1.35:default:20261204-120000",
                    "startedOn": "2026-12-04T12:00:00Z",
                    "finishedOn": "2026-12-04T12:00:09Z",
                },
                "byproducts": [
                    {"name": "build-host", "content": base64.b64encode(b"builder-1").decode()}
                ],
            },
        },
    }


def result(check: str, arch: str = "x86_64", state: str = "passed") -> dict[str, Any]:
    return {
        "check": check,
        "arch": arch,
        "host": "lxd-host-1",
        "instance_type": "container",
        "server": "lxd 5.0.2",
        "state": state,
        "evidence_sha256": "44" * 32,
    }


def results_statement(
    results: list[dict[str, Any]] | None = None, forced: bool = False, **promotion: Any
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(),
        "predicateType": TEST_RESULTS,
        "predicate": {
            "image": "busybox:1.35:default",
            "serial": "20261204-120000",
            "results": [result("boots"), result("stop"), result("boots", "i686")]
            if results is None
            else results,
            "promotion": {
                "at": "2026-12-04T12:01:00Z",
                "actor": "pipeline",
                "forced": forced,
                "reason": None,
                "known_failures": [],
            }
            | promotion,
        },
    }


def sign(statement: dict[str, Any], *signers: CryptoSigner) -> dict[str, Any]:
    env = Envelope(json.dumps(statement).encode(), PAYLOAD_TYPE, {})
    for s in signers:
        env.sign(s)
    return env.to_dict()


def answer(*envelopes: tuple[str, dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {
        "image": "busybox:1.35:default",
        "serial": "20261204-120000",
        "state": "active",
        "revoked": None,
        "attestations": [
            {"kind": kind, "created_at": "2026-12-04T12:00:10Z", "envelope": e}
            for kind, e in envelopes
        ],
    } | more


def pinned(*signers: CryptoSigner) -> list[PinnedKey]:
    return [
        PinnedKey(keyid=s.public_key.keyid, key=s.public_key.to_dict(), created_at=None)
        for s in signers
    ]


@pytest.fixture(scope="module")
def key() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


@pytest.fixture(scope="module")
def good(key: CryptoSigner) -> dict[str, Any]:
    return answer(("build", sign(build_statement(), key)), ("test", sign(results_statement(), key)))


def problems(v: Any) -> list[Problem]:
    return [f.problem for f in v.problems]


def test_a_signed_built_and_tested_image_is_verified_with_its_record(
    key: CryptoSigner, good: dict[str, Any]
):
    v = verdict(good, pinned(key), LXD_FP["amd64"], SERVER)
    assert v.verified, v.problems
    assert (v.arch, v.flavour, v.image, v.serial) == (
        "amd64",
        "lxd",
        "busybox:1.35:default",
        "20261204-120000",
    )
    assert v.build is not None
    assert v.build.builder == "busybox" and v.build.build_host == "builder-1"
    assert v.build.definition_sha256 == "9a" * 32 and v.build.manifest_sha256 == "22" * 32
    assert v.build.dependencies == ["http://deb.debian.org/debian sha256:" + "11" * 32]
    assert v.build.signed_by == [key.public_key.keyid] == v.tests_signed_by
    assert [(r.check, r.state) for r in v.results] == [("boots", "passed"), ("stop", "passed")]
    text = "\n".join(v.lines())
    assert "VERIFIED" in text and "builder-1" in text and "lxd 5.0.2" in text
    # The other arch's fingerprint and the Incus one are the same version's too.
    i386 = verdict(good, pinned(key), LXD_FP["i386"], SERVER)
    assert i386.verified and i386.arch == "i386" and [r.check for r in i386.results] == ["boots"]
    incus = verdict(good, pinned(key), INCUS_FP["amd64"], SERVER)
    assert incus.verified and incus.flavour == "incus"


def test_a_flipped_byte_in_a_statement_is_altered(key: CryptoSigner):
    env = sign(build_statement(), key)
    payload = bytearray(base64.b64decode(env["payload"]))
    at = payload.index(b"builder-1"[:1])  # any byte: the signature covers them all
    payload[at] ^= 0x01
    env["payload"] = base64.b64encode(bytes(payload)).decode()
    v = verdict(
        answer(("build", env), ("test", sign(results_statement(), key))),
        pinned(key),
        LXD_FP["amd64"],
        SERVER,
    )
    assert Problem.altered in problems(v) and not v.verified
    assert key.public_key.keyid in v.problems[0].reason
    # A byte of the base64 text, of the signature, or an envelope that is not one: altered too.
    sig = sign(build_statement(), key)
    raw = bytearray(base64.b64decode(sig["signatures"][0]["sig"]))
    raw[0] ^= 0x80
    sig["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    broken: list[Any] = [sig, {"payload": "!!", "payloadType": PAYLOAD_TYPE, "signatures": []}, "x"]
    for bad in broken:
        v = verdict(answer(("build", bad)), pinned(key), LXD_FP["amd64"], SERVER)
        assert problems(v)[0] in (Problem.altered, Problem.unsigned), v.problems


def test_a_statement_for_another_fingerprint_is_refused(key: CryptoSigner):
    other = {"amd64": "99" * 32, "i386": "98" * 32}
    a = answer(
        ("build", sign(build_statement(other), key)), ("test", sign(results_statement(), key))
    )
    v = verdict(a, pinned(key), LXD_FP["amd64"], SERVER)
    assert problems(v)[0] == Problem.other_subject
    assert "99999999" in v.problems[0].reason and LXD_FP["amd64"] in v.problems[0].reason
    # Every statement of the good answer, asked about a fingerprint none of them names.
    v = verdict(answer(("build", sign(build_statement(), key))), pinned(key), "77" * 32, SERVER)
    assert problems(v)[0] == Problem.other_subject and not v.verified


def test_no_statements_is_unsigned_and_a_build_alone_is_untested(key: CryptoSigner):
    v = verdict(answer(state="testing"), pinned(key), LXD_FP["amd64"], SERVER)
    assert problems(v) == [Problem.unsigned, Problem.untested]
    assert "no signed build statement" in v.problems[0].reason
    v = verdict(
        answer(("build", sign(build_statement(), key)), state="testing"),
        pinned(key),
        LXD_FP["amd64"],
        SERVER,
    )
    assert problems(v) == [Problem.untested] and "state testing" in v.problems[0].reason
    # Tested on the other arch only: untested on this one.
    only_i686 = results_statement([result("boots", "i686")])
    v = verdict(
        answer(("build", sign(build_statement(), key)), ("test", sign(only_i686, key))),
        pinned(key),
        LXD_FP["amd64"],
        SERVER,
    )
    assert problems(v) == [Problem.untested] and "amd64" in v.problems[0].reason


def test_a_revoked_version_says_who_and_why(key: CryptoSigner, good: dict[str, Any]):
    revoked = {"at": "2026-12-04T13:00:00Z", "actor": "ops-alice", "reason": "CVE-2026-1"}
    v = verdict(
        good | {"state": "revoked", "revoked": revoked}, pinned(key), LXD_FP["amd64"], SERVER
    )
    assert problems(v) == [Problem.revoked]
    assert "ops-alice" in v.problems[0].reason and "CVE-2026-1" in v.problems[0].reason


def test_a_forced_promotion_says_forced_by_whom_and_what_failed(key: CryptoSigner):
    tests = results_statement(
        [result("boots"), result("dns", state="failed"), result("boots", "i686")],
        forced=True,
        actor="ops-bob",
        reason="hotfix, dns flaky",
    )
    a = answer(("build", sign(build_statement(), key)), ("test", sign(tests, key)))
    v = verdict(a, pinned(key), LXD_FP["amd64"], SERVER)
    assert problems(v) == [Problem.forced] and v.only_forced()
    assert "ops-bob" in v.problems[0].reason and "hotfix" in v.problems[0].reason
    assert "dns" in v.problems[0].reason
    assert any("FORCED past the gate by ops-bob" in line for line in v.lines())


def test_a_failed_result_counts_unless_a_retry_passed_or_a_known_failure_waived_it(
    key: CryptoSigner,
):
    def judge(results: list[dict[str, Any]], **promotion: Any) -> list[Problem]:
        tests = results_statement(results, **promotion)
        a = answer(("build", sign(build_statement(), key)), ("test", sign(tests, key)))
        return problems(verdict(a, pinned(key), LXD_FP["amd64"], SERVER))

    assert judge([result("dns", state="failed")]) == [Problem.failed]
    assert judge([result("dns", state="failed"), result("dns")]) == []
    assert judge([result("dns", state="not_applicable")]) == []
    assert judge([result("dns", state="failed")], known_failures=[{"check": "dns"}]) == []


def test_a_rotated_key_old_pins_still_verify_old_statements_and_new_ones_say_re_pin(
    key: CryptoSigner,
):
    new = CryptoSigner.generate_ed25519()
    # The server added the new key's signature beside the old one: an old pin still verifies.
    both = answer(
        ("build", sign(build_statement(), key, new)), ("test", sign(results_statement(), key, new))
    )
    assert verdict(both, pinned(key), LXD_FP["amd64"], SERVER).verified
    assert verdict(both, pinned(new), LXD_FP["amd64"], SERVER).verified
    # A statement signed after the rotation, by the new key alone.
    after = answer(
        ("build", sign(build_statement(), new)), ("test", sign(results_statement(), new))
    )
    v = verdict(after, pinned(key), LXD_FP["amd64"], SERVER)
    # Once, though both statements are: and no "untested" for the test statement refused.
    assert problems(v) == [Problem.unpinned] and not v.verified
    assert new.public_key.keyid in v.problems[0].reason and "re-pin" in v.problems[0].reason
    assert verdict(after, pinned(key, new), LXD_FP["amd64"], SERVER).verified


def test_a_signature_by_a_pinned_key_id_but_another_key_is_altered(key: CryptoSigner):
    """An attacker's key that claims the pinned keyid: the keyid matches, the signature not."""
    impostor = CryptoSigner.generate_ed25519()
    env = sign(build_statement(), impostor)
    env["signatures"][0]["keyid"] = key.public_key.keyid
    v = verdict(answer(("build", env)), pinned(key), LXD_FP["amd64"], SERVER)
    assert problems(v)[0] == Problem.altered


def test_pinning_takes_the_provenance_keys_each_carrying_its_own_keyid(key: CryptoSigner):
    listed = {
        "keys": [
            {
                "keyid": key.public_key.keyid,
                "purpose": "provenance",
                "key": key.public_key.to_dict(),
                "public_key_pem": "-----BEGIN PUBLIC KEY-----...",
                "created_at": "2026-12-04T10:00:00Z",
                "retired_at": None,
            },
            {"keyid": "ABCD", "purpose": "streams", "key": None, "public_key_pem": "armor"},
        ]
    }
    assert [k.keyid for k in keys_to_pin(listed)] == [key.public_key.keyid]
    lying = json.loads(json.dumps(listed))
    lying["keys"][0]["keyid"] = "00" * 32
    with pytest.raises(PinRefused, match="does not carry its own keyid"):
        keys_to_pin(lying)
    with pytest.raises(PinRefused, match="no provenance key"):
        keys_to_pin({"keys": listed["keys"][1:]})
    with pytest.raises(PinRefused, match="not a keys answer"):
        keys_to_pin({"detail": "nope"})
