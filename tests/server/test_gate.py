"""Every rule of the version state machine and the promotion gate (server_api/catalog.py),
each against the exact answer it must give over the real HTTPS API: the status code and
the message, or the state and the event the move left."""

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport
from core.spec import ImageSpec
from harness.publish import move, new_image, next_serial, pass_all, publish
from harness.servers import RunningServer, client, http, token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of this module's own (the gc rule below collects every unlisted file)."""
    state = tmp_path_factory.mktemp("gate")
    with RunningServer(state, channel_file_grace_s=0) as own:
        yield own


@pytest.fixture(scope="module")
def publisher(server: RunningServer) -> Iterator[CatalogClient]:
    with closing(client(server, server.token)) as publishing:
        yield publishing


@pytest.fixture(scope="module")
def callers(server: RunningServer) -> Iterator[dict[str, httpx.Client]]:
    """An HTTPS client per kind of caller, named by the scope of its token."""
    secrets = {
        "publisher": server.token,
        "operator": token(server, "operator", "ops-gate"),
        "reader": token(server, "reader", "reader-gate"),
    }
    made = {}
    for name, secret in secrets.items():
        made[name] = http(server)
        made[name].headers["Authorization"] = f"Bearer {secret}"
    made["anonymous"] = http(server)
    yield made
    for c in made.values():
        c.close()


class Version:
    """One published version of an image of its own, and the requests a test makes on it."""

    def __init__(
        self, publisher: CatalogClient, callers: dict[str, httpx.Client], tmp: Path, **image: object
    ) -> None:
        self.image: ImageSpec = new_image(**image)
        self.serial = next_serial()
        self.publisher = publisher
        self.callers = callers
        publish(publisher, self.image, self.serial, tmp=tmp)

    @property
    def name(self) -> str:
        return f"{self.image.name} {self.serial}"

    def move(self, to: str, caller: str = "publisher", **fields: object) -> httpx.Response:
        path = f"/api/v1/images/{self.image.name}/versions/{self.serial}/transitions"
        body = {"to": to, "reason": "gate test"} | fields
        return self.callers[caller].post(path, json=body)

    def record(self, arch: str, check: str, state: str, **fields: object) -> None:
        report = AssessmentReport.model_validate(
            {"arch": arch, "check": check, "host": "h1", "state": state} | fields
        )
        self.publisher.record(self.image.name, self.serial, report)

    def state(self) -> str:
        return self.publisher.version(self.image.name, self.serial).state

    def last_event(self) -> tuple[str, str | None, str, bool]:
        e = self.publisher.events(self.image.name, self.serial)[-1]
        return e.actor, e.from_state, e.to_state, e.forced


@pytest.fixture
def version(publisher, callers, tmp_path) -> Version:
    return Version(publisher, callers, tmp_path)


def put_in(v: Version, state: str) -> None:
    """Move a fresh version to `state` the allowed way (checks passed before active)."""
    path = {"created": [], "testing": ["testing"], "inactive": ["testing", "inactive"]}
    if state == "active":
        move(v.publisher, v.image, v.serial, "testing")
        pass_all(v.publisher, v.image, v.serial)
        move(v.publisher, v.image, v.serial, "active")
    elif path[state]:
        move(v.publisher, v.image, v.serial, *path[state])
    assert v.state() == state


ALLOWED = {
    "created": "testing",
    "testing": "active, inactive, testing",
    # revoked only by POST .../revoke and out of it only as test_revoke.py has it
    "active": "inactive, revoked",
    "inactive": "revoked, testing",
}


@pytest.mark.parametrize(
    ("start", "to"),
    [(s, t) for s in ALLOWED for t in ("created", "testing", "active", "inactive")],
)
def test_every_move_of_the_state_machine(version: Version, start: str, to: str) -> None:
    """created -> testing -> active -> inactive, re-test from testing and inactive; any
    other move is 409 naming the state and what it allows, and changes nothing."""
    put_in(version, start)
    if to == "active":
        pass_all(version.publisher, version.image, version.serial)
    answer = version.move(to)
    if to in ALLOWED[start].split(", "):
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == to
        assert version.last_event() == ("tests", start, to, False)
    else:
        assert answer.status_code == 409, answer.text
        assert answer.json()["detail"] == (
            f"{version.name} is {start}; it cannot go to {to} (allowed: {ALLOWED[start]})"
        )
        assert version.state() == start


def test_from_state_is_a_compare_and_set(version: Version) -> None:
    put_in(version, "testing")
    stale = version.move("inactive", from_state="created")
    assert stale.status_code == 409
    assert stale.json()["detail"] == (
        f"{version.name} is testing now, not created; it did not go to inactive"
    )
    assert version.state() == "testing"
    assert version.move("inactive", from_state="testing").status_code == 200


@pytest.mark.parametrize(
    ("caller", "status", "detail"),
    [
        ("publisher", 200, None),
        ("operator", 200, None),
        ("reader", 403, "token 'reader-gate' is a reader token; this needs publisher or operator"),
        ("anonymous", 401, "a valid publisher token is required"),
    ],
)
def test_who_may_move_a_version(
    version: Version, caller: str, status: int, detail: str | None
) -> None:
    answer = version.move("testing", caller)
    assert answer.status_code == status, answer.text
    if detail is not None:
        assert detail in answer.json()["detail"]
        assert version.state() == "created"
    else:
        assert version.last_event()[2] == "testing"


def test_a_version_whose_files_were_collected_never_moves_again(
    version: Version, publisher: CatalogClient, server: RunningServer
) -> None:
    put_in(version, "inactive")
    ops = client(server, token(server, "operator", "ops-gc"))
    assert version.name in ops.gc(grace_s=0).versions
    ops.close()
    answer = version.move("testing")
    assert answer.status_code == 409
    assert (
        answer.json()["detail"] == f"{version.name}: its files were garbage-collected; publish anew"
    )


# The gate: (results recorded as (arch, check, state[, instance type, host])) -> what is
# still needed per arch, "" when the promotion must pass.
BOTH = ("x86_64", "i686")
ALL_PASSED: list[tuple[str, ...]] = [(a, c, "passed") for a in BOTH for c in ("boots", "ipv4")]
GATE: dict[str, tuple[list[tuple[str, ...]], str]] = {
    "no results at all": ([], "i686: boots, ipv4; x86_64: boots, ipv4"),
    "every check passed on every arch": (ALL_PASSED, ""),
    "a failed check counts as not passed": (
        [*ALL_PASSED[:-1], ("i686", "ipv4", "failed")],
        "i686: ipv4",
    ),
    "a running check counts as not passed": (
        [*ALL_PASSED[:1], ("x86_64", "ipv4", "running"), *ALL_PASSED[2:]],
        "x86_64: ipv4",
    ),
    "passed on one arch is not passed on the other": (ALL_PASSED[:2], "i686: boots, ipv4"),
    "a failure on one host and a pass on another (a retry) is passed": (
        [*ALL_PASSED, ("i686", "boots", "failed", "container", "h2")],
        "",
    ),
    "a pass in a virtual machine counts like one in a container": (
        [(*r, "virtual-machine", "h1") for r in ALL_PASSED],
        "",
    ),
    "a failed check the image does not require does not hold it back": (
        [*ALL_PASSED, ("x86_64", "dns", "failed")],
        "",
    ),
    "a passed check it does not require stands for none it does": (
        [(a, c, "passed") for a in BOTH for c in ("boots", "dns")],
        "i686: ipv4; x86_64: ipv4",
    ),
}


@pytest.mark.parametrize("case", GATE)
def test_the_promotion_gate(publisher, callers, tmp_path, case: str) -> None:
    results, needed = GATE[case]
    v = Version(publisher, callers, tmp_path, checks=["boots", "ipv4"])
    put_in(v, "testing")
    for arch, check, state, *where in results:
        kind, host = where or ("container", "h1")
        v.record(arch, check, state, instance_type=kind, host=host)
    answer = v.move("active")
    if needed:
        assert answer.status_code == 409, answer.text
        assert answer.json()["detail"] == (
            f"not every required check passed, still needed: {needed}"
        )
        assert v.state() == "testing"
        missing = publisher.missing_checks(v.image.name, v.serial)
        assert "; ".join(f"{a}: {', '.join(c)}" for a, c in sorted(missing.items()) if c) == needed
    else:
        assert answer.status_code == 200, answer.text
        assert v.last_event() == ("tests", "testing", "active", False)


def test_a_privileged_image_needs_every_check_privileged_too(publisher, callers, tmp_path):
    v = Version(publisher, callers, tmp_path, arches=["x86_64"], privileged=True)
    put_in(v, "testing")
    v.record("x86_64", "boots", "passed")
    answer = v.move("active")
    assert answer.status_code == 409
    assert answer.json()["detail"].endswith("still needed: x86_64: boots@privileged")
    v.record("x86_64", "boots@privileged", "passed")
    assert v.move("active").status_code == 200


@pytest.mark.parametrize(
    ("caller", "start", "status", "detail", "forced"),
    [
        ("operator", "testing", 200, None, True),
        ("publisher", "testing", 403, "a forced promotion needs an operator token", False),
        ("operator", "created", 409, "is created; it cannot go to active", False),
        ("operator", "inactive", 409, "is inactive; it cannot go to active", False),
    ],
)
def test_only_an_operator_forces_and_only_past_the_gate(
    version: Version, caller: str, start: str, status: int, detail: str | None, forced: bool
) -> None:
    """A forced promotion skips the checks, not the state machine."""
    put_in(version, start)
    version.record("x86_64", "boots", "failed")
    answer = version.move("active", caller, force=True)
    assert answer.status_code == status, answer.text
    if detail is None:
        assert version.last_event() == ("ops-gate", "testing", "active", True)
    else:
        assert detail in answer.json()["detail"]
        assert version.state() == start


def test_force_applies_only_to_a_promotion(version: Version) -> None:
    answer = version.move("testing", "operator", force=True)
    assert answer.status_code == 422
    assert "force only applies to a promotion (to: active)" in answer.text
    assert version.state() == "created"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_move_needs_a_reason(version: Version, reason: str) -> None:
    assert version.move("testing", reason=reason).status_code == 422
    assert version.state() == "created"


def test_promotion_keeps_the_newest_active_versions(publisher, tmp_path, server):
    keep = server.server_settings.keep_active
    image = new_image(arches=["x86_64"])
    serials = [next_serial() for _ in range(keep + 1)]
    for n, serial in enumerate(serials):
        (tmp_path / str(n)).mkdir()
        publish(publisher, image, serial, tmp=tmp_path / str(n))
        move(publisher, image, serial, "testing")
        pass_all(publisher, image, serial)
        move(publisher, image, serial, "active")
    oldest = publisher.events(image.name, serials[0])[-1]
    assert (oldest.from_state, oldest.to_state) == ("active", "inactive")
    assert oldest.reason == f"retention: {serials[-1]} activated, keeping {keep} active"
    states = [publisher.version(image.name, s).state for s in serials]
    assert states == ["inactive"] + ["active"] * keep


def test_a_passed_result_is_final(version: Version) -> None:
    version.record("x86_64", "boots", "passed")
    version.record("x86_64", "boots", "passed")  # the same again: nothing changes
    path = f"/api/v1/images/{version.image.name}/versions/{version.serial}/assessments"
    body = {"arch": "x86_64", "check": "boots", "host": "h1", "state": "failed"}
    answer = version.callers["publisher"].put(path, json=body)
    assert answer.status_code == 409
    assert answer.json()["detail"] == "check boots on x86_64 already passed"
    other_host = version.callers["publisher"].put(path, json=body | {"host": "h2"})
    assert other_host.status_code == 200, other_host.text


def test_a_result_for_an_arch_the_version_lacks_is_422(publisher, callers, tmp_path) -> None:
    v = Version(publisher, callers, tmp_path, arches=["x86_64"])
    path = f"/api/v1/images/{v.image.name}/versions/{v.serial}/assessments"
    body = {"arch": "i686", "check": "boots", "host": "h1", "state": "passed"}
    answer = callers["publisher"].put(path, json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"] == f"version {v.serial} has no arch i686"
