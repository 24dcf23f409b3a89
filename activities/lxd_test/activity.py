"""Test activity (arch worker): prove one arch of a version in this host's LXD.

Every check result reaches the catalog as soon as it is known; checks that already
passed (in an earlier attempt or run) are skipped, so a retry only redoes what failed.
"""

import time
from collections.abc import Callable

import pylxd
from temporalio import activity

from activities.catalog import rejected
from activities.lxd_test.checks import CHECKS
from activities.lxd_test.runner import LaunchSpec, TestSetupError, instance_name, launch, remove
from core.catalog_client import CatalogClient, CatalogRejected
from core.config import Settings
from core.lxd import host_name
from core.models import AssessmentReport, AssessmentState, Channel
from core.pipeline import ArchTestResult, CheckOutcome, TestInput


def _beat(message: str) -> None:
    activity.heartbeat(message)
    activity.logger.info(message)


class TestActivities:
    def __init__(
        self, catalog: CatalogClient, lxd: Callable[[], pylxd.Client], settings: Settings
    ) -> None:
        self.catalog = catalog
        self.lxd = lxd
        ca = settings.server_ca_path
        self.certificate = ca.read_text() if ca else None

    @activity.defn
    def test_image(self, inp: TestInput) -> ArchTestResult:
        try:
            return self._test(inp)
        except CatalogRejected as exc:
            raise rejected(exc) from None

    def _test(self, inp: TestInput) -> ArchTestResult:
        client = self.lxd()
        host = host_name(client)
        missing = self.catalog.missing_checks(inp.image.name, inp.serial).get(inp.arch, [])
        outcomes = [
            CheckOutcome(check=c, state=AssessmentState.passed, skipped=True)
            for c in inp.image.checks
            if c not in missing
        ]
        if not missing:
            _beat(f"{inp.arch}: every check already passed")
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
            outcomes.append(outcome)
            _beat(f"{inp.arch}: {outcome.check} {outcome.state}")

        spec = LaunchSpec(
            name=instance_name(inp.image.name, inp.serial, inp.arch),
            server_url=self.catalog.channel_url(Channel.testing, fresh=inp.fingerprint[:16]),
            fingerprint=inp.fingerprint,
            certificate=self.certificate,
            labels={
                "image": inp.image.name,
                "serial": inp.serial,
                "arch": inp.arch,
                "workflow": inp.workflow_id,
            },
        )
        _beat(f"{inp.arch}: launching {spec.name} from {inp.fingerprint[:12]}")
        try:
            inst = launch(client, spec, timeout_s=600, beat=_beat)
        except TestSetupError as exc:
            for check in missing:
                report(CheckOutcome(check=check, state=AssessmentState.failed, evidence=str(exc)))
            return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)
        try:
            for check in missing:
                fn = CHECKS.get(check)
                started = time.monotonic()
                ok, evidence = fn(inst) if fn else (False, f"no check named {check!r}")
                report(
                    CheckOutcome(
                        check=check,
                        state=AssessmentState.passed if ok else AssessmentState.failed,
                        evidence=evidence,
                        duration_s=time.monotonic() - started,
                    )
                )
        finally:
            remove(client, spec.name)
        return ArchTestResult(arch=inp.arch, host=host, checks=outcomes)
