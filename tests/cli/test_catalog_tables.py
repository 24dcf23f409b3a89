"""`icefloe versions` and `icefloe show` print what the catalog knows: the real CLI against a
real image server; and the lines `trigger --wait` and `status` print about what failed."""

from datetime import UTC
from pathlib import Path

from cli.tables import version_page
from core.catalog import AssessmentReport, ImageCheckReport, TransitionRequest
from core.pipeline import ArchTestResult, CheckOutcome
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, client, token
from tests.support import icefloe_cli as icefloe
from workflows.trigger import evidence_lines, fault_line


def test_versions_and_show_print_states_results_evidence_and_events(
    image_server: RunningServer, catalog, tmp_path: Path
) -> None:
    image = new_image(arches=["x86_64", "i686"], checks=["boots", "ipv4"])
    old, new = next_serial(), next_serial()
    for serial in (old, new):
        publish(catalog, image, serial, tmp=tmp_path)
        move(catalog, image, serial, "testing")
    report = lambda arch, check, state, evidence: catalog.record(  # noqa: E731
        image.name,
        new,
        AssessmentReport(
            arch=arch, check=check, host="vm7", state=state, evidence=evidence, duration_s=1.25
        ),
    )
    report("x86_64", "boots", "passed", "exit 0: alive\ninit")
    report("x86_64", "ipv4", "passed", "eth0: 198.51.100.7/24 after 0.4s")
    report("i686", "boots", "passed", "exit 0: alive\ninit")
    report("i686", "ipv4", "failed", "no global inet address on eth0 within 5s\nip addr: ...")
    ops = client(image_server, token(image_server, "operator", "ops"))
    ops.transition(
        image.name,
        new,
        TransitionRequest(to="active", reason="i686 host is known broken", force=True),
    )
    ops.close()
    publisher = {"ICEFLOE_PUBLISHER_TOKEN": image_server.token}

    listed = icefloe(image_server, "versions", image.name, **publisher)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"{image.name}: 2 versions"
    assert lines[1].split() == ["SERIAL", "STATE", "SINCE", "(UTC)", "ARCHES", "RESULTS"]
    assert lines[2].split()[:2] == [new, "active"] and "3 passed, 1 failed" in lines[2]
    assert lines[3].split()[:2] == [old, "testing"] and "i686, x86_64" in lines[3]
    assert lines[3].endswith("none yet")

    shown = icefloe(image_server, "show", image.name, new, **publisher)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith(f"{image.name} {new}: active since ")
    fingerprints = {a.arch: a.fingerprint for a in catalog.version(image.name, new).arches}
    assert f"i686  fingerprint {fingerprints['i686']}" in out
    rows = {tuple(line.split()[:4]): line for line in out.splitlines() if "vm7" in line}
    failed = rows[("ipv4", "failed", "1.25s", "vm7")]
    assert failed.endswith("no global inet address on eth0 within 5s"), "first line only"
    assert rows[("boots", "passed", "1.25s", "vm7")].endswith("exit 0: alive")
    events = out.split("\nevents\n")[1].splitlines()
    assert events[0].split() == ["AT", "(UTC)", "MOVE", "ACTOR", "FORCED", "WORKFLOW", "REASON"]
    assert [e.split()[2:5] for e in events[1:]] == [
        ["-", "->", "created"],
        ["created", "->", "testing"],
        ["testing", "->", "active"],
    ]
    assert events[2].split()[5:8] == ["tests", "-", "-"], "actor, not forced, no workflow"
    assert events[3].split()[5:7] == ["ops", "forced"]
    assert events[3].endswith("i686 host is known broken")


def test_versions_says_when_the_image_was_checked_and_found_unchanged(
    image_server: RunningServer, catalog, tmp_path: Path
) -> None:
    image = new_image(arches=["x86_64"])
    serial = publish(catalog, image, tmp=tmp_path, to=("testing", "active")).serial
    publisher = {"ICEFLOE_PUBLISHER_TOKEN": image_server.token}
    unchecked = icefloe(image_server, "versions", image.name, **publisher)
    assert unchecked.returncode == 0 and len(unchecked.stdout.splitlines()) == 3
    check = catalog.record_check(image.name, ImageCheckReport(unchanged_since=serial))

    listed = icefloe(image_server, "versions", image.name, **publisher)
    assert listed.returncode == 0, listed.stderr
    stamp = check.checked_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert listed.stdout.splitlines()[3] == f"checked at {stamp} UTC, unchanged since {serial}"


def test_show_reads_with_a_token_when_public_feeds_are_off(tmp_path: Path) -> None:
    """Private catalogs need a token for reads too: the CLI sends ICEFLOE_PUBLISHER_TOKEN (a
    reader token there does), else the operator's; a missing version is one line, exit 2."""
    with RunningServer(tmp_path, public_feeds=False) as server:
        catalog = client(server, server.token)
        image = new_image(arches=["x86_64"])
        serial = next_serial()
        publish(catalog, image, serial, tmp=tmp_path)
        catalog.close()
        operator = {"ICEFLOE_OPERATOR_TOKEN": token(server, "operator", "ops")}

        shown = icefloe(server, "show", image.name, serial, **operator)
        assert shown.returncode == 0, shown.stderr
        assert f"{image.name} {serial}: created since" in shown.stdout
        assert "x86_64  fingerprint " in shown.stdout and "no check results yet" in shown.stdout

        reader = {"ICEFLOE_PUBLISHER_TOKEN": token(server, "reader", "eyes")}
        listed = icefloe(server, "versions", image.name, **reader)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[2].split()[:2] == [serial, "created"]
        refused = icefloe(server, "versions", image.name)
        assert refused.returncode == 2 and refused.stderr.startswith(
            "icefloe: image server said 401"
        )

        missing = icefloe(server, "show", image.name, "20200101-1", **operator)
        assert missing.returncode == 2 and "Traceback" not in missing.stderr
        assert missing.stderr.startswith("icefloe: image server said 404")


def test_unreachable_server_is_one_line(image_server: RunningServer) -> None:
    r = icefloe(image_server, "versions", "x:y:z", ICEFLOE_SERVER_URL="https://127.0.0.1:9")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("icefloe: cannot reach the image server: ")


def test_evidence_column_is_cut_to_the_terminal_width(image_server, catalog, tmp_path) -> None:
    image = new_image(arches=["x86_64"])
    serial = next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    move(catalog, image, serial, "testing")
    catalog.record(
        image.name,
        serial,
        AssessmentReport(
            arch="x86_64", check="boots", host="h", state="failed", evidence="x" * 500
        ),
    )
    version = catalog.version(image.name, serial)
    for columns in (80, 200):
        rows = [line for line in version_page(version, [], None, columns) if " h  " in line]
        assert len(rows[0]) == columns - 1 and rows[0].endswith("x…")


def test_failures_say_why_every_line_of_evidence_and_the_fault() -> None:
    """What `trigger --wait`, `status` and the stack print under a failed check."""
    failed = CheckOutcome(check="sixty-four-bit", state="failed", evidence="exit 0\ni686\n")
    passed = CheckOutcome(check="boots", state="passed", evidence="exit 0: alive")
    test = ArchTestResult(arch="i686", host="vm", checks=[passed, failed])
    assert evidence_lines(failed) == ["    exit 0", "    i686"]
    assert evidence_lines(passed) == []
    assert fault_line(test) is None
    broken = ArchTestResult(arch="i686", host="", checks=[], fault="LXD API: socket gone")
    assert fault_line(broken) == "i686: test machinery failed: LXD API: socket gone"
