"""Signed provenance: the time signing adds to a publish and to a promotion, and the size of
each document, for the Debian 12 image (images/debian-bookworm.yaml: two arches, the default
suite and its own checks). Prints figures, asserts nothing.

A server of its own (in this process, over HTTPS, SQLite) publishes `--rounds` versions with
a manifest of `--count` real packages (this host's dpkg status, as bench/sbom.py takes them),
debootstrap's inputs (each arch's Packages indexes) and each arch's build record; each is
promoted after every required check was recorded passed on an LXD host. Per round the whole
publish and the whole promotion are timed as a client sees them, and the signing part of
each (making the statement, signing it, adding its row) is done again on the same version
in a transaction that is rolled back. Run from the repo:
`PYTHONPATH=. .venv/bin/python bench/provenance.py [--rounds 20]`.
"""

import argparse
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from clients.catalog import CatalogClient
from core.arch import to_debian
from core.catalog import AssessmentReport, BuildRecord, TransitionRequest, VersionCreate
from core.config import REPO_DIR
from core.images import load_image
from core.inputs import ArchInputs, VersionInputs, spec_digest
from core.manifest import dpkg_installed, format_manifest
from core.provenance import AttestationKind, build_statement
from core.spec import ImageSpec
from harness.publish import next_serial, upload
from harness.servers import RunningServer, client, http
from server_api.catalog import get_version
from server_api.provenance import build_facts, promotion_statement

DEBIAN = REPO_DIR / "images" / "debian-bookworm.yaml"


def packages(status: Path, count: int) -> bytes:
    installed = dpkg_installed(status.read_text())
    names = sorted(installed)
    step = max(1, len(names) // count)
    return format_manifest({n: installed[n] for n in names[::step][:count]})


def inputs(spec: ImageSpec) -> VersionInputs:
    """What debootstrap's resolve reports for bookworm: main's indexes of each arch."""
    return VersionInputs(
        spec_digest=spec_digest(spec),
        arches={
            a: ArchInputs(
                items={
                    f"deb:bookworm/main/binary-{to_debian(a)}/Packages{ext}": f"{n:x}" * 64
                    for n, ext in enumerate(("", ".gz", ".xz"), start=1)
                }
            )
            for a in spec.arches
        },
    )


def ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f} ms (median; best {min(times) * 1000:.1f})"


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def build_records(req: VersionCreate) -> None:
    now = datetime.now(UTC)
    for a in req.arches:
        a.built = BuildRecord(
            host=f"build-{a.arch}.example",
            tool_version="debootstrap 1.0.128+nmu2+deb12u2",
            started_at=now - timedelta(minutes=9),
            finished_at=now,
        )


def pass_every_check(catalog: CatalogClient, spec: ImageSpec, serial: str) -> None:
    for arch, checks in catalog.missing_checks(spec.name, serial).items():
        for check in checks:
            said = AssessmentReport(
                arch=arch,
                check=check,
                host=f"test-{arch}.example",
                server="lxd 5.0.2",
                state="passed",
                evidence="x" * 200,
            )
            catalog.record(spec.name, serial, said)


class Round:
    """One version published and promoted; the signing of each timed again, rolled back."""

    def __init__(self, server: RunningServer, catalog: CatalogClient, req: VersionCreate) -> None:
        self.server, self.catalog, self.req = server, catalog, req
        self.spec = req.spec

    def publish(self) -> float:
        return timed(lambda: self.catalog.publish(self.req))

    def promote(self) -> float:
        name, serial = self.spec.name, self.req.serial
        self.catalog.transition(name, serial, TransitionRequest(to="testing", reason="bench"))
        pass_every_check(self.catalog, self.spec, serial)
        promote = TransitionRequest(to="active", reason="every check passed")
        return timed(lambda: self.catalog.transition(name, serial, promote))

    def signing(self) -> tuple[float, float]:
        """The build and the test statement made and signed again, rows added, not kept."""
        key = self.server.services.provenance
        with Session(self.server.services.engine) as session:
            version = get_version(session, self.spec.name, self.req.serial)

            def build() -> None:
                facts = build_facts(session, version, self.req, spec_digest(self.spec))
                key.attest(session, version, AttestationKind.build, build_statement(facts))
                session.flush()

            def test() -> None:
                at = version.state_changed_at
                made = promotion_statement(session, version, at, "bench", False, "bench", [])
                key.attest(session, version, AttestationKind.test, made)
                session.flush()

            took = timed(build), timed(test)
            session.rollback()
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--status", type=Path, default=Path("/var/lib/dpkg/status"))
    parser.add_argument("--count", type=int, default=175)
    args = parser.parse_args()
    spec = load_image(DEBIAN)
    manifest = packages(args.status, args.count)
    times: dict[str, list[float]] = {k: [] for k in ("publish", "promote", "sign-b", "sign-t")}
    with (
        tempfile.TemporaryDirectory() as tmp,
        RunningServer(Path(tmp) / "server") as server,
        closing(client(server, server.token)) as catalog,
        http(server) as anonymous,
    ):
        for _ in range(args.rounds):
            serial = next_serial()
            req = upload(catalog, spec, serial, tmp=Path(tmp), manifest=manifest)
            req.inputs = inputs(spec)
            req.force = True  # the same packages each round: published all the same
            build_records(req)
            one = Round(server, catalog, req)
            times["publish"].append(one.publish())
            times["promote"].append(one.promote())
            build, test = one.signing()
            times["sign-b"].append(build)
            times["sign-t"].append(test)
        answer = anonymous.get(f"/api/v1/images/{spec.name}/versions/{serial}/attestations")
    print(
        f"{spec.name}: {len(spec.arches)} arches, {len(spec.required_checks)} required checks "
        f"per arch, manifest of {args.count} packages; {args.rounds} rounds"
    )
    print(f"publish: {ms(times['publish'])}, of which signing {ms(times['sign-b'])}")
    print(f"promotion: {ms(times['promote'])}, of which signing {ms(times['sign-t'])}")
    for a in answer.json()["attestations"]:
        envelope = a["envelope"]
        statement = base64.b64decode(envelope["payload"])
        print(
            f"{a['kind']} statement: {len(statement)} bytes; its DSSE envelope "
            f"{len(json.dumps(envelope, separators=(',', ':')))} bytes"
        )
    print(f"the attestations answer (both envelopes): {len(answer.content)} bytes")


if __name__ == "__main__":
    main()
