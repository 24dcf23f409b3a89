"""Test activity (arch worker): prove one arch of a version in this host's LXD.

Every check result reaches the catalog as soon as it is known; checks that already
passed (in an earlier attempt or run) are skipped, so a retry only redoes what failed.
A fault of the machinery fails the attempt as retryable (see faults.py); only verdicts
about the image are recorded as failed.
"""

from collections.abc import Callable

import httpx
import pylxd
from temporalio import activity

from activities.errors import image_server_errors
from activities.heartbeat import heartbeating
from activities.lxd_test.checks import suite
from activities.lxd_test.cleanup import Cleanups
from activities.lxd_test.execs import describe
from activities.lxd_test.faults import MachineryFault, faults_are_retried
from activities.lxd_test.instances import (
    forget_image,
    halt,
    instance_name,
    launch_spec,
    remove,
)
from activities.lxd_test.suite import run_suite
from activities.slots import LOOK_EVERY_S, Release, WorkerSlots
from clients.catalog import CatalogClient, server_ca
from clients.lxd import host_name, server_version
from core.catalog import AssessmentReport, AssessmentState, Channel
from core.config import Settings
from core.pipeline import ArchTestInput, ArchTestResult, CheckOutcome
from core.spec import check_key


class ImageTestActivities:
    def __init__(
        self,
        catalog: CatalogClient,
        lxd: Callable[[], pylxd.Client],
        settings: Settings,
        temporal: str,
        slots: WorkerSlots,
        cleanups: Cleanups | None = None,
    ) -> None:
        self.catalog = catalog
        self.slots = slots  # one test instance at a time per activity, in one of its slots
        self.cleanups = cleanups or Cleanups()
        self.temporal = temporal  # labels instances for this worker's janitor
        self.lxd = lxd
        ca = server_ca(settings)
        self.certificate = ca.read_text() if ca else None

    @activity.defn
    def test_image(self, inp: ArchTestInput) -> ArchTestResult:
        names = [
            instance_name(inp.spec.name, inp.serial, inp.arch, privilege)
            for privilege in inp.spec.privileges
        ]
        with (
            image_server_errors(),
            faults_are_retried(),
            heartbeating(on_cancel=lambda: halt(self.lxd(), names)) as beat,
            self.slots.held("test", beat) as keep,
        ):
            return self._test(inp, beat, keep)

    def _test(
        self, inp: ArchTestInput, beat: Callable[[str], None], keep: Callable[[], Release]
    ) -> ArchTestResult:
        client = self.lxd()
        host, server = host_name(client), server_version(client)
        missing = self.catalog.missing_checks(inp.spec.name, inp.serial).get(inp.arch, [])
        earlier = [c for c in inp.spec.required_checks if c not in missing]
        states = self._states(inp) if earlier else {}
        outcomes = [
            CheckOutcome(check=c, state=states.get(c, AssessmentState.passed), skipped=True)
            for c in earlier
        ]
        if not missing:
            beat(f"{inp.arch}: every check already passed")
            return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)

        def report(outcome: CheckOutcome) -> None:
            result = AssessmentReport(
                arch=inp.arch,
                check=outcome.check,
                host=host,
                server=server,
                state=outcome.state,
                evidence=outcome.evidence[-4000:],
                duration_s=round(outcome.duration_s, 3),
            )
            try:
                self.catalog.record(inp.spec.name, inp.serial, result)
            except httpx.HTTPError as exc:
                raise MachineryFault(
                    "image server", f"recording {outcome.check} {outcome.state}: {describe(exc)}"
                ) from exc
            if outcome.state != AssessmentState.running:
                outcomes.append(outcome)
            beat(f"{inp.arch}: {outcome.check} {outcome.state}")

        url = self.catalog.channel_url(Channel.testing, fresh=inp.fingerprint[:16])
        judged: list[str] = []  # instances whose suite has every verdict, still to delete
        done = False
        try:
            for privilege in inp.spec.privileges:
                checks = suite(inp.spec.checks)
                todo = [c for c in checks if check_key(c.name, privilege) in missing]
                if not todo:
                    continue
                _remove(client, judged)  # one instance of this activity's at a time
                instance = launch_spec(
                    inp.spec.name,
                    inp.serial,
                    inp.arch,
                    privilege,
                    server_url=url,
                    fingerprint=inp.fingerprint,
                    certificate=self.certificate,
                    workflow=inp.workflow_id,
                    temporal=self.temporal,
                    cloud_init_user_data=inp.spec.cloud_init_user_data,
                )
                self._await_deletion(instance.name, beat)
                fingerprint = inp.fingerprint[:12]
                beat(f"{inp.arch}: launching {instance.name} ({privilege}) from {fingerprint}")
                run_suite(client, instance, todo, report, beat, delete_later=judged.append)
            done = True
        finally:
            with activity.shield_thread_cancel_exception():
                if done:
                    self._delete_later(inp, judged, keep())
                else:
                    _remove(client, judged)
                    forget_image(client, inp.fingerprint)
        return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)

    def _states(self, inp: ArchTestInput) -> dict[str, AssessmentState]:
        """The arch's results as recorded: a skipped check shows passed or not applicable."""
        version = self.catalog.version(inp.spec.name, inp.serial)
        return {a.check: a.state for a in version.assessments if a.arch == inp.arch}

    def _await_deletion(self, name: str, beat: Callable[[str], None]) -> None:
        """A retry on this worker launches an instance of the name the last attempt's
        deferred deletion may still be removing: that deletion ends first."""
        if self.cleanups.wait_for([name], timeout_s=0):
            return
        beat(f"waiting for the deletion of the last attempt's {name}")
        while not self.cleanups.wait_for([name], timeout_s=LOOK_EVERY_S):
            pass  # short waits: the SDK's cancellation reaches this thread between them

    def _delete_later(self, inp: ArchTestInput, names: list[str], release: Release) -> None:
        """Every verdict is recorded: the instances and the cached image go in the background.
        The test slot stays taken until the instance is gone, so the limit counts it."""
        fingerprint = inp.fingerprint

        def work() -> None:
            try:
                client = self.lxd()
                _remove(client, names)
                forget_image(client, fingerprint)
            finally:
                release()

        what = f"{inp.workflow_id} {inp.arch}: deleting {', '.join(names) or 'no instance'}"
        self.cleanups.start(f"{what} and cached image {fingerprint[:12]}", work, names)


def _remove(client: pylxd.Client, names: list[str]) -> None:
    while names:
        remove(client, names.pop())
