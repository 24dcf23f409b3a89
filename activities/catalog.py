"""Catalog activities (control worker): read a version, publish to testing, promote, retire.

The server decides; these only ask, and turn its refusals into non-retryable errors.
"""

from temporalio import activity

from activities.errors import image_server_errors
from activities.heartbeat import beating
from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import TransitionRequest, VersionCreate, VersionState, VersionView
from core.pipeline import PromoteInput, PublishInput, RetireInput, VersionRef, VersionStatus


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
    def publish_version(self, inp: PublishInput) -> VersionView:
        """Register the uploaded files as a version and move it to testing (idempotent)."""
        with image_server_errors():
            version = self.catalog.publish(
                VersionCreate(
                    spec=inp.spec,
                    serial=inp.serial,
                    arches=inp.arches,
                    workflow_id=inp.workflow_id,
                )
            )
            if version.state in (VersionState.created, VersionState.inactive):
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
