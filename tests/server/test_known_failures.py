"""Not-applicable results and known failures at the promotion gate (server_api/gate.py),
each check's pass rate over an image's versions, over the real HTTPS API, the pages, the
metrics and the real CLI: what each lets through, what it never does, and a known failure
that stops letting a version through when its date passes, with nobody acting."""

import re
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport
from core.spec import ImageSpec
from harness.metrics import increase, scrape
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, client, http, token
from harness.waiting import wait_until
from tests.cli.test_catalog_tables import icefloe

pytestmark: list[pytest.MarkDecorator] = []  # the fast tier: a server in this process

CHECKS = ["boots", "ipv6", "dns"]
KNOWN = "/api/v1/known-failures"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("known")) as own:
        yield own


@pytest.fixture(scope="module")
def publisher(server: RunningServer) -> Iterator[CatalogClient]:
    with closing(client(server, server.token)) as publishing:
        yield publishing


@pytest.fixture(scope="module")
def ops(server: RunningServer) -> Iterator[httpx.Client]:
    with http(server) as c:
        c.headers["Authorization"] = f"Bearer {token(server, 'operator', 'ops-kf')}"
        yield c


@pytest.fixture(scope="module")
def operator_token(server: RunningServer) -> str:
    return token(server, "operator", "ops-cli")


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


class InTesting:
    """A version of an image of its own in testing, and the results a test records on it."""

    def __init__(self, publisher: CatalogClient, tmp: Path, image: ImageSpec | None = None):
        self.image = image or new_image(checks=CHECKS)
        self.serial = next_serial()
        self.publisher = publisher
        publish(publisher, self.image, self.serial, tmp=tmp)
        move(publisher, self.image, self.serial, "testing")

    def record(self, state: str, *checks: str, arch: str = "x86_64", **fields: object) -> None:
        for check in checks:
            report = {"arch": arch, "check": check, "host": "h1", "state": state} | fields
            self.publisher.record(
                self.image.name, self.serial, AssessmentReport.model_validate(report)
            )

    def promote(self, caller: httpx.Client) -> httpx.Response:
        path = f"/api/v1/images/{self.image.name}/versions/{self.serial}/transitions"
        return caller.post(path, json={"to": "active", "reason": "every check passed"})

    def gate(self, caller: httpx.Client) -> dict:
        path = f"/api/v1/images/{self.image.name}/versions/{self.serial}/gate"
        return caller.get(path).json()

    def promotion(self) -> str:
        events = self.publisher.events(self.image.name, self.serial)
        return next(e.reason for e in events if e.to_state == "active")


def known(ops: httpx.Client, image: ImageSpec, check: str, **fields: object) -> httpx.Response:
    body = {"image": image.name, "check": check, "reason": "flaky", "until": _in(86400)}
    return ops.post(KNOWN, json=body | fields)


def test_not_applicable_satisfies_the_gate_and_is_final_and_never_shown_as_passed(
    server: RunningServer, publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    before = scrape(server)
    v = InTesting(publisher, tmp_path)
    for arch in ("x86_64", "i686"):
        v.record("passed", "boots", "dns", arch=arch)
        v.record("not_applicable", "ipv6", arch=arch, evidence="network br0 offers no IPv6")
    assert publisher.missing_checks(v.image.name, v.serial) == {"x86_64": [], "i686": []}
    again = {"arch": "x86_64", "check": "ipv6", "host": "h1", "state": "failed"}
    path = f"/api/v1/images/{v.image.name}/versions/{v.serial}/assessments"
    refused = ops.put(path, json=again)
    assert (refused.status_code, refused.json()["detail"]) == (
        409,
        "check ipv6 on x86_64 already not applicable",
    )
    page = ops.get(f"/images/{v.image.name}/versions/{v.serial}").text
    assert 'ipv6 <span class="state state-not_applicable">not applicable</span>' in page
    assert 'ipv6 <span class="state state-passed">' not in page
    assert v.promote(ops).status_code == 200
    assert v.promotion() == "every check passed"  # no known failure was relied on
    text = scrape(server)
    assert increase(before, text, 'icefloe_catalog_assessments{state="not_applicable"}') == 2
    assert increase(before, text, 'icefloe_catalog_assessments{state="passed"}') == 4


def test_a_known_failure_lets_a_failed_check_through_and_the_promotion_says_so(
    publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path)
    v.record("passed", "boots", "ipv6", "dns", arch="i686")
    v.record("passed", "boots", "dns")
    v.record("failed", "ipv6", evidence="no global inet6 address on eth0 within 60s")
    refused = v.promote(ops)
    assert refused.json()["detail"] == "not every required check passed, still needed: x86_64: ipv6"
    link = "https://bugs.example.org/19"
    made = known(ops, v.image, "ipv6", arch="x86_64", reason="RA lost on the bridge", link=link)
    assert made.status_code == 201, made.text
    kf = made.json()
    assert (kf["arch"], kf["actor"], kf["expired"]) == ("x86_64", "ops-kf", False)
    assert v.gate(ops)["unmet"] == {"x86_64": [], "i686": []}
    assert v.promote(ops).status_code == 200
    reason = v.promotion()
    assert reason.startswith("every check passed; relied on known failures, the gate did not ")
    assert "ipv6 on x86_64 until " in reason and f"(RA lost on the bridge {link})" in reason
    # The failed result is still there, and shown as it is.
    results = publisher.version(v.image.name, v.serial).assessments
    assert {(a.arch, a.check): a.state for a in results}["x86_64", "ipv6"] == "failed"


def test_a_known_failure_covers_its_arch_its_check_and_only_a_result_that_failed(
    publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path)
    assert known(ops, v.image, "ipv6", arch="i686").status_code == 201
    v.record("failed", "ipv6", "dns")  # x86_64: the i686 one does not cover it
    v.record("failed", "ipv6", arch="i686")
    assert v.gate(ops)["unmet"] == {"x86_64": ["boots", "ipv6", "dns"], "i686": ["boots", "dns"]}
    assert known(ops, v.image, "ipv6").status_code == 201  # every arch
    assert v.gate(ops)["unmet"] == {"x86_64": ["boots", "dns"], "i686": ["boots", "dns"]}
    # boots never ran: a known failure for it still does not let the version through.
    assert known(ops, v.image, "boots").status_code == 201
    v.record("running", "boots")
    assert v.gate(ops)["unmet"] == {"x86_64": ["boots", "dns"], "i686": ["boots", "dns"]}


def test_a_known_failure_expires_and_the_check_is_required_again_with_nobody_acting(
    publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path)
    for arch in ("x86_64", "i686"):
        v.record("passed", "boots", "ipv6", arch=arch)
        v.record("failed", "dns", arch=arch)
    until = datetime.now(UTC) + timedelta(seconds=2)
    made = known(ops, v.image, "dns", until=until.isoformat()).json()
    assert v.gate(ops) == {"unmet": {"x86_64": [], "i686": []}, "relied_on": [made]}
    wait_until(lambda: datetime.now(UTC) > until, "the known failure's date passes")
    assert v.gate(ops) == {"unmet": {"x86_64": ["dns"], "i686": ["dns"]}, "relied_on": []}
    refused = v.promote(ops)
    assert refused.status_code == 409
    assert refused.json()["detail"].endswith("still needed: i686: dns; x86_64: dns")
    (listed,) = ops.get(KNOWN, params={"image": v.image.name}).json()
    assert (listed["id"], listed["expired"]) == (made["id"], True)


def test_known_failures_are_replaced_listed_and_removed(
    publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path)
    first = known(ops, v.image, "dns").json()
    later = known(ops, v.image, "dns", until="2099-01-01", reason="still flaky").json()
    assert later["id"] == first["id"]
    assert (later["until"], later["reason"]) == ("2099-01-01T00:00:00Z", "still flaky")
    assert [k["id"] for k in ops.get(KNOWN, params={"image": v.image.name}).json()] == [first["id"]]
    v.record("passed", "boots", "ipv6", arch="x86_64")
    v.record("failed", "dns")
    assert v.gate(ops)["unmet"]["x86_64"] == []
    assert ops.delete(f"{KNOWN}/{first['id']}").status_code == 200
    assert v.gate(ops)["unmet"]["x86_64"] == ["dns"]
    gone = ops.delete(f"{KNOWN}/{first['id']}")
    assert (gone.status_code, gone.json()["detail"]) == (404, f"no known failure {first['id']}")


def test_bad_known_failures_get_a_4xx_that_says_why(
    server: RunningServer, publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    past = known(ops, v.image, "dns", until=yesterday)
    assert past.status_code == 422
    assert past.json()["detail"] == (
        f"until {yesterday} 00:00:00 UTC is in the past: give a later date"
    )
    a_minute_ago = known(ops, v.image, "dns", until=_in(-60))
    assert a_minute_ago.status_code == 422
    typo = known(ops, v.image, "dsn")
    assert (typo.status_code, typo.json()["detail"]) == (
        422,
        f"{v.image.name} has no check dsn; its newest version's checks are: boots, ipv6, dns",
    )
    nobody = known(ops, new_image(), "dns")
    assert nobody.status_code == 404
    for field, value in (
        ("until", "next week"),
        ("arch", "amd64"),
        ("link", "javascript:alert(1)"),
        ("reason", " "),
        ("check", "Bad Name"),
    ):
        body = {"image": v.image.name, "check": "dns", "reason": "r", "until": _in(60)}
        bad = ops.post(KNOWN, json=body | {field: value})
        assert bad.status_code == 422, (field, bad.text)
        assert field in str(bad.json()["detail"])
    with http(server) as as_publisher:
        as_publisher.headers["Authorization"] = f"Bearer {server.token}"
        assert known(as_publisher, v.image, "dns").status_code == 403
        assert as_publisher.delete(f"{KNOWN}/1").status_code == 403
    assert ops.delete(f"{KNOWN}/0").status_code == 422
    assert ops.get(f"/api/v1/images/{v.image.name}/checks", params={"versions": 0}).status_code == (
        422
    )
    assert ops.get("/api/v1/images/no:such:image/checks").status_code == 404


def test_pass_rates_count_every_failure_over_the_recent_versions(
    publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    image = new_image(checks=CHECKS, arches=["x86_64"])
    old, new = InTesting(publisher, tmp_path, image), InTesting(publisher, tmp_path, image)
    for v in (old, new):
        v.record("passed", "boots")
        v.record("not_applicable", "ipv6")
    old.record("failed", "dns")
    old.record("failed", "dns")  # a retry failed again
    old.record("passed", "dns")  # and the next one passed
    new.record("failed", "dns")
    assert known(ops, image, "dns", reason="resolver race").status_code == 201

    rates = ops.get(f"/api/v1/images/{image.name}/checks").json()
    assert rates["versions"] == [new.serial, old.serial]
    by_check = {c["check"]: c for c in rates["checks"]}
    assert {c: (r["passed"], r["failed"], r["not_applicable"]) for c, r in by_check.items()} == {
        "boots": (2, 0, 0),
        "dns": (1, 3, 0),
        "ipv6": (0, 0, 2),
    }
    assert [by_check[c]["pass_rate"] for c in CHECKS] == [1.0, None, 0.25]
    assert [k["reason"] for k in by_check["dns"]["known_failures"]] == ["resolver race"]
    newest = ops.get(f"/api/v1/images/{image.name}/checks", params={"versions": 1}).json()
    assert {c["check"]: c["failed"] for c in newest["checks"]}["dns"] == 1

    page = ops.get(f"/images/{image.name}").text
    assert "Checks over the newest 2 versions" in page
    assert "<td>dns</td>\n      <td>25%</td>" in page
    assert "resolver race" in page


def test_the_cli_adds_lists_removes_and_shows_pass_rates(
    server: RunningServer, publisher: CatalogClient, operator_token: str, tmp_path: Path
) -> None:
    v = InTesting(publisher, tmp_path, new_image(checks=CHECKS, arches=["x86_64"]))
    v.record("failed", "dns")
    env = {"ICEFLOE_OPERATOR_TOKEN": operator_token}
    flags = ("--image", v.image.name, "--check", "dns", "--reason", "resolver race")
    added = icefloe(server, "known-failure", "add", *flags, "--until", "2099-12-31", **env)
    assert added.returncode == 0, added.stderr
    assert " dns on every arch until 2099-12-31 00:00 UTC (resolver race)  by ops-cli" in (
        added.stdout
    )
    kf_id = added.stdout.split()[0]
    listed = icefloe(server, "known-failure", "list", "--image", v.image.name, **env)
    assert listed.stdout == added.stdout
    rates = icefloe(server, "checks", v.image.name, **env).stdout.splitlines()
    assert rates[0] == f"{v.image.name}: checks over the newest 1 version"
    assert rates[2].split()[:5] == ["dns", "0%", "0", "1", "0"]
    assert "every arch until 2099-12-31 00:00:00" in rates[2]
    past = icefloe(server, "known-failure", "add", *flags, "--until", "2020-01-01", **env)
    assert (past.returncode, past.stderr) == (
        2,
        "icefloe: image server said 422: until 2020-01-01 00:00:00 UTC is in the past: "
        "give a later date\n",
    )
    garbled = icefloe(server, "known-failure", "add", *flags, "--until", "soon", **env)
    assert garbled.returncode == 2
    assert "--until: 'soon' is neither a date (2026-12-31) nor an ISO datetime" in garbled.stderr
    no_token = icefloe(server, "known-failure", "remove", kf_id)
    assert (no_token.returncode, no_token.stderr) == (
        2,
        "icefloe: this needs an operator token in ICEFLOE_OPERATOR_TOKEN\n",
    )
    removed = icefloe(server, "known-failure", "remove", kf_id, **env)
    assert removed.stdout.startswith(f"removed {kf_id:>4}  {v.image.name}  dns on every arch")
    assert icefloe(server, "known-failure", "list", **env).stdout.count(v.image.name) == 0


def test_a_failed_check_a_known_failure_covers_is_a_known_failure_cell_on_every_page(
    server: RunningServer, publisher: CatalogClient, ops: httpx.Client, tmp_path: Path
) -> None:
    """The status page, the version page's table and the metric read the same known
    failures as the gate (server_api/status.py), and only while they last."""
    v = InTesting(publisher, tmp_path)
    v.record("passed", "boots", "dns")
    v.record("failed", "ipv6", evidence="no global inet6 address")
    page = f"/images/{v.image.name}/versions/{v.serial}"

    def cells(path: str) -> list[str]:
        with http(server) as anonymous:
            html = anonymous.get(path).text
        return re.findall(r'class="cell cell-([a-z-]+)"', html.split(v.image.name, 1)[1])

    assert "failed" in cells(page) and "known-failure" not in cells(page)
    assert known(ops, v.image, "ipv6", arch="x86_64", until=_in(3)).status_code == 201
    assert "known-failure" in cells(page) and "failed" not in cells(page)
    assert "known-failure" in cells("/status")
    labels = f'arch="x86_64",cell="known-failure",image="{v.image.name}"'
    assert f"icefloe_newest_version_checks{{{labels}}} 1.0" in scrape(server)
    wait_until(lambda: "known-failure" not in cells(page), "the known failure expired", 30)
    assert "failed" in cells(page)
