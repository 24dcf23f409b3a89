"""Test activity (arch worker): prove one arch of a version in this host's LXD.

Every check result reaches the catalog as soon as it is known; checks that already
passed (in an earlier attempt or run) are skipped, so a retry only redoes what failed.
"""

from collections.abc import Callable

import pylxd
from temporalio import activity

from activities.catalog import rejected
from activities.heartbeat import heartbeating
from activities.lxd_test.checks import suite
from activities.lxd_test.runner import (
    forget_image,
    halt,
    instance_name,
    launch_spec,
    run_suite,
)
from core.catalog_client import CatalogClient, CatalogRejected
from core.config import Settings
from core.lxd import host_name
from core.models import AssessmentReport, AssessmentState, Channel, check_key
from core.pipeline import ArchTestResult, CheckOutcome, TestInput


class TestActivities:
    def __init__(
        self,
        catalog: CatalogClient,
        lxd: Callable[[], pylxd.Client],
        settings: Settings,
        temporal: str,
    ) -> None:
        self.catalog = catalog
        self.temporal = temporal  # labels instances for this worker's janitor
        self.lxd = lxd
        ca = settings.server_ca_path
        self.certificate = ca.read_text() if ca else None

    @activity.defn
    def test_image(self, inp: TestInput) -> ArchTestResult:
        names = [
            instance_name(inp.image.name, inp.serial, inp.arch, kind)
            for kind in inp.image.instance_kinds
        ]
        try:
            with heartbeating(on_cancel=lambda: halt(self.lxd(), names)) as beat:
                return self._test(inp, beat)
        except CatalogRejected as exc:
            raise rejected(exc) from None

    def _test(self, inp: TestInput, beat: Callable[[str], None]) -> ArchTestResult:
        client = self.lxd()
        host = host_name(client)
        missing = self.catalog.missing_checks(inp.image.name, inp.serial).get(inp.arch, [])
        outcomes = [
            CheckOutcome(check=c, state=AssessmentState.passed, skipped=True)
            for c in inp.image.required_checks
            if c not in missing
        ]
        if not missing:
            beat(f"{inp.arch}: every check already passed")
            return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)

        def report(outcome: CheckOutcome) -> None:
            self.catalog.record(
                inp.image.name,
                inp.serial,
                AssessmentReport(
                    arch=inp.arch,
                    check=outcome.check,
                    host=host,
                    state=outcome.state,
                    evidence=outcome.evidence[-4000:],
                    duration_s=round(outcome.duration_s, 3),
                ),
            )
            if outcome.state != AssessmentState.running:
                outcomes.append(outcome)
            beat(f"{inp.arch}: {outcome.check} {outcome.state}")

        url = self.catalog.channel_url(Channel.testing, fresh=inp.fingerprint[:16])
        try:
            for kind in inp.image.instance_kinds:
                todo = [
                    (n, fn) for n, fn in suite(inp.image.checks) if check_key(n, kind) in missing
                ]
                if not todo:
                    continue
                spec = launch_spec(
                    inp.image.name,
                    inp.serial,
                    inp.arch,
                    kind,
                    server_url=url,
                    fingerprint=inp.fingerprint,
                    certificate=self.certificate,
                    workflow=inp.workflow_id,
                    temporal=self.temporal,
                )
                beat(f"{inp.arch}: launching {spec.name} ({kind}) from {inp.fingerprint[:12]}")
                run_suite(client, spec, todo, report, beat)
        finally:
            with activity.shield_thread_cancel_exception():
                forget_image(client, inp.fingerprint)
        return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)
