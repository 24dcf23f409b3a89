"""Catalog activities (control worker): read a version, publish to testing, promote, retire.

The server decides; these only ask, and turn its refusals into non-retryable errors.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.catalog_client import CatalogClient, CatalogRejected
from core.models import TransitionRequest, VersionCreate, VersionState, VersionView
from core.pipeline import PromoteInput, PublishInput, RetireInput, VersionRef, VersionStatus


def rejected(exc: CatalogRejected) -> ApplicationError:
    """A 4xx will be the same next time: fail the activity without retrying."""
    return ApplicationError(str(exc), type="CatalogRejected", non_retryable=True)


class CatalogActivities:
    def __init__(self, catalog: CatalogClient) -> None:
        self.catalog = catalog

    @activity.defn
    def find_version(self, inp: VersionRef) -> VersionStatus:
        """What is already published and passed, so a re-run skips it."""
        try:
            version = self.catalog.version(inp.image, inp.serial)
        except CatalogRejected as exc:
            if exc.status_code == 404:
                return VersionStatus(version=None)
            raise rejected(exc) from None
        return VersionStatus(
            version=version, missing=self.catalog.missing_checks(inp.image, inp.serial)
        )

    @activity.defn
    def publish_version(self, inp: PublishInput) -> VersionView:
        """Register the uploaded files as a version and move it to testing (idempotent)."""
        try:
            version = self.catalog.publish(
                VersionCreate(
                    image=inp.image,
                    serial=inp.serial,
                    arches=inp.arches,
                    workflow_id=inp.workflow_id,
                )
            )
            if version.state in (VersionState.created, VersionState.inactive):
                version = self.catalog.transition(
                    inp.image.name,
                    inp.serial,
                    TransitionRequest(
                        to=VersionState.testing,
                        reason="published for testing",
                        workflow_id=inp.workflow_id,
                    ),
                )
        except CatalogRejected as exc:
            raise rejected(exc) from None
        activity.logger.info("%s %s is %s", inp.image.name, inp.serial, version.state)
        return version

    @activity.defn
    def promote_version(self, inp: PromoteInput) -> VersionView:
        """Ask the server to activate; its gate checks every required result itself."""
        try:
            current = self.catalog.version(inp.image.name, inp.serial)
            if current.state == VersionState.active:
                return current
            return self.catalog.transition(
                inp.image.name,
                inp.serial,
                TransitionRequest(
                    to=VersionState.active,
                    reason="every required check passed on every arch",
                    workflow_id=inp.workflow_id,
                ),
            )
        except CatalogRejected as exc:
            raise rejected(exc) from None

    @activity.defn
    def retire_version(self, inp: RetireInput) -> VersionView:
        """Take a version out of testing (expired, cancelled); other states are left alone."""
        try:
            current = self.catalog.version(inp.image, inp.serial)
            if current.state != VersionState.testing:
                return current
            return self.catalog.transition(
                inp.image,
                inp.serial,
                TransitionRequest(
                    to=VersionState.inactive, reason=inp.reason, workflow_id=inp.workflow_id
                ),
            )
        except CatalogRejected as exc:
            raise rejected(exc) from None
