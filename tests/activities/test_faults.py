"""Faults of the test machinery are never verdicts about the image: the test activity against
real LXD and the real image server, with a fault injected at each place it can strike
(the exec transport, the instance, the launch, the image server). A fault leaves no
`failed` result, fails the attempt as retryable, and the next attempt (the retry Temporal
would run) proves the image."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pylxd
import pytest
from pylxd.exceptions import LXDAPIException
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.lxd_test import checks
from activities.lxd_test.activity import ImageTestActivities
from activities.lxd_test.cleanup import Cleanups
from activities.lxd_test.execs import ExecFault, ExecResult, describe
from activities.lxd_test.instances import forget_image, instance_name, remove
from activities.slots import WorkerSlots
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.catalog import SATISFIED, AssessmentReport
from core.config import Settings
from core.pipeline import ArchTestInput, ArchTestResult
from core.spec import ImageSpec, Privilege
from harness.lxd_faults import kill_forkexec, stop_init
from harness.publish import busybox_spec, publish
from harness.servers import RunningServer
from harness.waiting import wait_until
from tests.support import SCOPE

pytestmark = pytest.mark.lxd

FAULT_TYPE = "TestMachineryFault"


class Tested:
    """One busybox version in testing, and the test activity run as Temporal would run it."""

    __test__ = False  # a helper, not a test class

    def __init__(
        self, catalog: CatalogClient, settings: Settings, tmp: Path, image: ImageSpec
    ) -> None:
        self.catalog, self.settings, self.image = catalog, settings, image
        self.serial, self.fingerprint = publish(catalog, image, build_in=tmp, to=("testing",))
        self.attempts = 0

    @property
    def instance(self) -> str:
        return instance_name(self.image.name, self.serial, "x86_64", Privilege.unprivileged)

    def attempt(self, fingerprint: str | None = None) -> ArchTestResult:
        """One attempt of the test activity (what Temporal runs, and runs again on a retry)."""
        self.attempts += 1
        activities = ImageTestActivities(
            self.catalog,
            lambda: connect_lxd(self.settings),
            self.settings,
            SCOPE,
            WorkerSlots("x86_64", 1, 1),
        )
        inp = ArchTestInput(
            spec=self.image,
            serial=self.serial,
            arch="x86_64",
            fingerprint=fingerprint or self.fingerprint,
            workflow_id="wf-faults",
        )
        try:
            return ActivityEnvironment().run(activities.test_image, inp)
        finally:  # what the activity left to delete once every verdict was in (cleanup.py)
            assert activities.cleanups.wait(), "its deletions ended"

    def faulted(self, fingerprint: str | None = None) -> ApplicationError:
        with pytest.raises(ApplicationError) as err:
            self.attempt(fingerprint)
        assert err.value.type == FAULT_TYPE, err.value
        assert not err.value.non_retryable, "a fault is retried on a new instance"
        return err.value

    def states(self) -> dict[str, tuple[str, str]]:
        version = self.catalog.version(self.image.name, self.serial)
        return {a.check: (a.state, a.evidence) for a in version.assessments}

    def assert_proven(self) -> None:
        """The fault gone, the next attempt passes every check and the gate lets it through."""
        result = self.attempt()
        assert result.passed, result
        assert self.catalog.missing_checks(self.image.name, self.serial) == {"x86_64": []}
        assert {s for s, _ in self.states().values()} <= SATISFIED


@pytest.fixture
def tested(
    lxd: pylxd.Client, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> Iterator[Callable[[ImageSpec], Tested]]:
    made: list[Tested] = []

    def make(image: ImageSpec) -> Tested:
        made.append(Tested(catalog, settings, tmp_path, image))
        return made[-1]

    yield make
    for t in made:
        assert remove(lxd, t.instance) is False, "the activity deletes its instance"
        forget_image(lxd, t.fingerprint)


def broken_exec(monkeypatch: pytest.MonkeyPatch, command: list[str], times: int) -> list[list[str]]:
    """The exec transport breaks (as pylxd's websocket did) in the first `times` execs of
    `command`; returns the commands that broke."""
    real, broke = checks.run, list[list[str]]()

    def run(inst: pylxd.models.Instance, cmd: list[str], timeout_s: float) -> ExecResult:
        if cmd == command and len(broke) < times:
            broke.append(cmd)
            pipe = BrokenPipeError(32, "Broken pipe")
            raise ExecFault(f"exec of {cmd[0]} in {inst.name}: {describe(pipe)}") from pipe
        return real(inst, cmd, timeout_s)

    monkeypatch.setattr(checks, "run", run)
    return broke


def test_exec_transport_broken_once_is_tried_again_on_the_same_instance(
    tested: Callable[[ImageSpec], Tested], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tested(busybox_spec("fault-exec-once", checks=["boots", "init", "stop"]))
    broke = broken_exec(monkeypatch, ["cat", "/proc/1/comm"], times=1)

    result = t.attempt()

    assert broke, "the fault was injected"
    assert result.passed, result
    init = next(c for c in result.checks if c.check == "init")
    assert init.evidence.startswith("pid 1 is init"), "the verdict says what the image did"


def when_running(t: Tested, check: str, act: Callable[[], object]) -> threading.Thread:
    """Act on the instance once `check` is recorded running (and its exec has started)."""

    def wait_then_act() -> None:
        wait_until(lambda: t.states().get(check, ("",))[0] == "running", f"{check} runs", 120, 0.1)
        time.sleep(1)
        act()

    thread = threading.Thread(target=wait_then_act)
    thread.start()
    return thread


def test_exec_killed_on_the_host_fails_the_attempt_not_the_image(
    tested: Callable[[ImageSpec], Tested], settings: Settings
) -> None:
    t = tested(busybox_spec("fault-exec", checks=["boots", {"name": "slow", "command": "sleep 5"}]))
    killed: list[int] = []
    killer = when_running(
        t, "slow", lambda: killed.append(kill_forkexec(settings.lxd_project, t.instance, "sleep 5"))
    )
    fault = t.faulted()
    killer.join()

    assert killed == [1], "LXD's forkexec of the check was killed"
    assert fault.message.startswith("LXD exec: "), fault.message
    state, evidence = t.states()["slow"]
    assert state == "running", "not failed: nothing is known about the image"
    assert "test machinery fault" in evidence, evidence
    t.assert_proven()
    assert t.attempts == 2


def test_instance_frozen_under_a_check_is_a_fault(
    tested: Callable[[ImageSpec], Tested], lxd: pylxd.Client
) -> None:
    t = tested(
        busybox_spec(
            "fault-frozen", checks=["boots", {"name": "slow", "command": "sleep 3", "timeout_s": 5}]
        )
    )
    freezer = when_running(t, "slow", lambda: lxd.instances.get(t.instance).freeze(wait=True))
    fault = t.faulted()  # the exec never reports while frozen: LXD's exit deadline ends it
    freezer.join()

    assert f"instance {t.instance} was frozen during slow" in fault.message, fault.message
    state, evidence = t.states()["slow"]
    assert state == "running" and "frozen" in evidence, (state, evidence)
    t.assert_proven()


def test_instance_deleted_under_a_check_is_a_fault(
    tested: Callable[[ImageSpec], Tested], lxd: pylxd.Client
) -> None:
    t = tested(busybox_spec("fault-gone", checks=["boots", {"name": "slow", "command": "sleep 5"}]))

    deleter = when_running(t, "slow", lambda: remove(lxd, t.instance))
    fault = t.faulted()
    deleter.join()

    assert f"instance {t.instance} vanished" in fault.message, fault.message
    state, evidence = t.states()["slow"]
    assert state == "running" and "vanished" in evidence, (state, evidence)
    t.assert_proven()


def test_lxd_error_on_launch_is_a_fault(tested: Callable[[ImageSpec], Tested]) -> None:
    t = tested(busybox_spec("fault-launch", checks=["boots", "stop"]))

    fault = t.faulted(fingerprint="0" * 64)  # a fingerprint the feed does not list

    assert fault.message.startswith("launch: "), fault.message
    assert "image couldn't be found" in fault.message, "LXD's own error"
    assert t.states() == {}, "no check ran, none is recorded"
    t.assert_proven()


def test_image_server_down_during_a_result_write_is_a_fault(
    lxd: pylxd.Client, settings: Settings, tmp_path: Path
) -> None:
    image = busybox_spec("fault-server", checks=["boots", "init", "stop"])
    with RunningServer(tmp_path / "server") as server:
        own = server.client_settings(deb_dir=settings.deb_dir)
        t = Tested(CatalogClient(own), own, tmp_path, image)
        t.settings = own
        record = t.catalog.record

        def record_then_go_down(image: str, serial: str, report: AssessmentReport) -> None:
            if report.check == "init" and report.state == "passed":
                server.__exit__()  # the image server goes down as the result is written
            record(image, serial, report)

        t.catalog.record = record_then_go_down  # type: ignore[method-assign]
        fault = t.faulted()
        assert fault.message.startswith("image server: "), fault.message
    assert remove(lxd, t.instance) is False

    with RunningServer(tmp_path / "server") as again:  # the same catalog, back up
        own = again.client_settings(deb_dir=settings.deb_dir)
        t.catalog, t.settings = CatalogClient(own), own
        assert t.states()["boots"][0] == "passed"
        assert t.states()["init"][0] == "running"
        t.assert_proven()
    forget_image(lxd, t.fingerprint)


def test_image_without_network_still_fails_with_a_verdict(
    tested: Callable[[ImageSpec], Tested],
) -> None:
    t = tested(
        busybox_spec(
            "fault-none", network="none", checks=["boots", {"kind": "ipv4", "timeout_s": 3}]
        )
    )

    result = t.attempt()  # a verdict: the attempt succeeds, the image fails

    ipv4 = next(c for c in result.checks if c.check == "ipv4")
    assert ipv4.state == "failed"
    assert "no global inet address on eth0 within 3s" in ipv4.evidence
    assert t.states()["ipv4"][0] == "failed"


class _Refused:
    """What LXD answered in the chaos soak to a clean stop of a running busybox instance."""

    status_code = 400

    def json(self) -> dict[str, str]:
        return {
            "error": 'Failed shutting down instance, status is "Running": '
            "shutting down the container failed"
        }


def refused_stops(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """LXD refuses the first `times` clean stops at once (not after the timeout)."""
    real, refused = pylxd.models.Instance.stop, list[str]()

    def stop(self: pylxd.models.Instance, *args: object, **kwargs: object) -> None:
        if kwargs.get("force") is False and len(refused) < times:
            refused.append(self.name)
            raise LXDAPIException(_Refused())
        real(self, *args, **kwargs)

    monkeypatch.setattr(pylxd.models.Instance, "stop", stop)
    return refused


def test_lxd_refusing_a_clean_stop_at_once_is_asked_again(
    tested: Callable[[ImageSpec], Tested], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tested(busybox_spec("fault-stop-once", checks=["boots", "stop"]))
    refused = refused_stops(monkeypatch, times=1)

    result = t.attempt()

    assert refused, "the fault was injected"
    assert result.passed, result


def test_lxd_refusing_every_clean_stop_at_once_is_a_fault_not_a_verdict(
    tested: Callable[[ImageSpec], Tested], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tested(busybox_spec("fault-stop", checks=["boots", "stop"]))
    refused_stops(monkeypatch, times=10)

    fault = t.faulted()

    assert "shutting down the container failed" in fault.message, fault.message
    assert t.states()["stop"][0] == "running", "not failed: the image was never asked to halt"
    monkeypatch.undo()
    t.assert_proven()


def test_instance_that_ignores_a_clean_stop_fails_the_stop_check(
    tested: Callable[[ImageSpec], Tested], lxd: pylxd.Client
) -> None:
    t = tested(
        busybox_spec(
            "fault-deaf",
            checks=[
                "boots",
                {"name": "slow", "command": "sleep 3"},
                {"kind": "stop", "timeout_s": 5},
            ],
        )
    )
    deaf = when_running(t, "slow", lambda: stop_init(lxd, t.instance))

    result = t.attempt()  # a verdict: the image never halted, the attempt succeeds
    deaf.join()

    stop = next(c for c in result.checks if c.check == "stop")
    assert stop.state == "failed", stop
    assert stop.evidence.startswith("clean stop failed after 5."), stop.evidence
    assert "shutting down the container failed" in stop.evidence, "LXD's own answer"
    assert t.states()["stop"][0] == "failed"
    assert t.attempts == 1, "a verdict is not retried"


def test_a_retry_right_after_a_verdict_waits_for_the_deletion_of_its_own_instance(
    tested: Callable[[ImageSpec], Tested],
) -> None:
    """The retry of a failed check on the same worker launches an instance of the same name
    while the last one is still being deleted after its verdicts: the deletion must not take
    the new instance (or its cached image) with it."""
    t = tested(busybox_spec("retry-at-once", checks=["boots", {"name": "no", "command": "false"}]))
    activities = ImageTestActivities(
        t.catalog, lambda: connect_lxd(t.settings), t.settings, SCOPE, WorkerSlots("x86_64", 1, 2)
    )
    inp = ArchTestInput(
        spec=t.image, serial=t.serial, arch="x86_64", fingerprint=t.fingerprint, workflow_id="wf"
    )
    try:
        for _ in range(3):  # one worker's activities, one right after the other
            result = ActivityEnvironment().run(activities.test_image, inp)
            assert {c.check: c.state for c in result.checks} == {"boots": "passed", "no": "failed"}
    finally:
        assert activities.cleanups.wait(), "its deletions ended"


def test_a_launch_waits_for_the_deferred_deletion_of_an_instance_of_its_name(
    tested: Callable[[ImageSpec], Tested], lxd: pylxd.Client
) -> None:
    """The race above made certain: a deletion of the instance's name, held open, keeps the
    next attempt from launching until it ends (the deletion, asking LXD for the name again,
    would otherwise take the new instance)."""
    t = tested(busybox_spec("held-deletion", checks=["boots"]))
    cleanups, gate = Cleanups(), threading.Event()
    cleanups.start("a deletion held open", gate.wait, [t.instance])
    activities = ImageTestActivities(
        t.catalog,
        lambda: connect_lxd(t.settings),
        t.settings,
        SCOPE,
        WorkerSlots("x86_64", 1, 2),
        cleanups,
    )
    inp = ArchTestInput(
        spec=t.image, serial=t.serial, arch="x86_64", fingerprint=t.fingerprint, workflow_id="wf"
    )
    env, beats, results = ActivityEnvironment(), list[str](), list[ArchTestResult]()
    env.on_heartbeat = lambda *details: beats.extend(str(d) for d in details)
    runner = threading.Thread(target=lambda: results.append(env.run(activities.test_image, inp)))
    runner.start()
    try:
        wait_until(
            lambda: any("waiting for the deletion" in b for b in beats), "it waits", timeout_s=60
        )
        assert not lxd.instances.exists(t.instance), "nothing launched while the deletion runs"
    finally:
        gate.set()
        runner.join(120)
        assert cleanups.wait(), "its deletions ended"
    assert [(c.check, c.state) for c in results[0].checks] == [("boots", "passed")]
