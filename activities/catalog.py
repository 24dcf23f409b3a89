"""Catalog activities (control worker): read a version, tell whether a new one would be
unchanged, publish to testing, promote, retire.

The server decides; these only ask, and turn its refusals into non-retryable errors.
"""

from temporalio import activity

from activities.errors import image_server_errors
from activities.heartbeat import beating
from clients.catalog import CatalogClient, CatalogRejected, VersionUnchanged
from core.catalog import (
    GateView,
    HoldView,
    ImageCheckReport,
    ImageCheckView,
    TransitionRequest,
    VersionCreate,
    VersionState,
    VersionView,
)
from core.pipeline import (
    InputsCheck,
    PromoteInput,
    PublishInput,
    RetireInput,
    VersionRef,
    VersionStatus,
)


class CatalogActivities:
    def __init__(self, catalog: CatalogClient) -> None:
        self.catalog = catalog

    @activity.defn
    @beating
    def find_version(self, inp: VersionRef) -> VersionStatus:
        """What is already published and passed, so a re-run skips it."""
        with image_server_errors():
            try:
                version = self.catalog.version(inp.image, inp.serial)
            except CatalogRejected as exc:
                if exc.status_code == 404:
                    return VersionStatus(version=None)
                raise
            missing = self.catalog.missing_checks(inp.image, inp.serial)
        return VersionStatus(version=version, missing=missing)

    @activity.defn
    @beating
    def check_gate(self, inp: VersionRef) -> GateView:
        """The server's gate: what still keeps the version from active, per arch, once
        active known failures are let through."""
        with image_server_errors():
            return self.catalog.gate(inp.image, inp.serial)

    @activity.defn
    @beating
    def check_inputs(self, inp: InputsCheck) -> ImageCheckView | None:
        """If the image's newest active version has these inputs, record the check (the
        version is unchanged since that one) and return it; None: build."""
        with image_server_errors():
            newest = self.catalog.newest_active(inp.image)
            if newest is None or not inp.inputs.same_as(newest.inputs):
                return None
            return self._unchanged(inp.image, newest.serial, inp.workflow_id)

    def _unchanged(self, image: str, since: str, workflow_id: str) -> ImageCheckView:
        report = ImageCheckReport(unchanged_since=since, workflow_id=workflow_id)
        activity.logger.info("%s unchanged since %s", image, since)
        return self.catalog.record_check(image, report)

    @activity.defn
    @beating
    def publish_version(self, inp: PublishInput) -> VersionView | ImageCheckView:
        """Register the uploaded files as a version and move it to testing (idempotent).
        The server refuses one whose packages and definition equal its newest active
        version's (unless forced): then the check is recorded and returned instead."""
        with image_server_errors():
            try:
                version = self.catalog.publish(
                    VersionCreate(
                        spec=inp.spec,
                        serial=inp.serial,
                        arches=inp.arches,
                        workflow_id=inp.workflow_id,
                        inputs=inp.inputs,
                        force=inp.force,
                    )
                )
            except VersionUnchanged as exc:
                return self._unchanged(inp.spec.name, exc.unchanged_since, inp.workflow_id)
            if version.state in (VersionState.created, VersionState.inactive, VersionState.revoked):
                version = self.catalog.transition(
                    inp.spec.name,
                    inp.serial,
                    TransitionRequest(
                        to=VersionState.testing,
                        reason="published for testing",
                        workflow_id=inp.workflow_id,
                    ),
                )
        activity.logger.info("%s %s is %s", inp.spec.name, inp.serial, version.state)
        return version

    @activity.defn
    @beating
    def promote_version(self, inp: PromoteInput) -> VersionView:
        """Ask the server to activate; its gate checks every required result itself."""
        with image_server_errors():
            current = self.catalog.version(inp.image, inp.serial)
            if current.state == VersionState.active:
                return current
            return self.catalog.transition(
                inp.image,
                inp.serial,
                TransitionRequest(
                    to=VersionState.active,
                    reason="every required check passed on every arch",
                    workflow_id=inp.workflow_id,
                ),
            )

    @activity.defn
    @beating
    def find_hold(self, image: str) -> HoldView | None:
        """The image's hold, if an operator holds it: the pipeline waits before promoting."""
        with image_server_errors():
            return self.catalog.hold_of(image)

    @activity.defn
    @beating
    def retire_version(self, inp: RetireInput) -> VersionView:
        """Take a version out of testing (expired, cancelled); other states are left alone."""
        with image_server_errors():
            current = self.catalog.version(inp.image, inp.serial)
            if current.state != VersionState.testing:
                return current
            # Only from testing: a promotion that lands between the read and this is kept.
            retire = TransitionRequest(
                to=VersionState.inactive,
                from_state=VersionState.testing,
                reason=inp.reason,
                workflow_id=inp.workflow_id,
            )
            try:
                return self.catalog.transition(inp.image, inp.serial, retire)
            except CatalogRejected as exc:
                if exc.status_code != 409:
                    raise
                return self.catalog.version(inp.image, inp.serial)
