"""Pruning activities (control worker): find versions stuck in testing, ask Temporal
whether a pipeline still owns one, and clear results stuck in running."""

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.catalog import rejected
from core.catalog_client import CatalogClient, CatalogRejected
from core.models import AssessmentState, VersionState
from core.pipeline import AbandonInput, PruneCandidate, PruneInput, pipeline_workflow_id


class PruneActivities:
    def __init__(self, catalog: CatalogClient, client: Client) -> None:
        self.catalog = catalog
        self.client = client

    @activity.defn
    def find_prune_candidates(self, inp: PruneInput) -> list[PruneCandidate]:
        """Versions in testing past the deadline that have not passed, or with stuck results.

        A version whose every required check passed is never a candidate for expiry.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=inp.expire_after_s)
        out = []
        try:
            for v in self.catalog.versions(state=VersionState.testing, image=inp.image):
                past = v.state_changed_at.replace(tzinfo=v.state_changed_at.tzinfo or UTC) < cutoff
                if past:
                    past = any(self.catalog.missing_checks(v.image, v.serial).values())
                running = any(a.state == AssessmentState.running for a in v.assessments)
                if past or running:
                    wf_id = v.workflow_id or pipeline_workflow_id(v.image, v.serial)
                    out.append(PruneCandidate(image=v.image, serial=v.serial, workflow_id=wf_id,
                                              past_deadline=past, has_running=running))  # fmt: skip
        except CatalogRejected as exc:
            raise rejected(exc) from None
        return out

    @activity.defn
    async def pipeline_running(self, workflow_id: str) -> bool:
        """Whether a live workflow owns the version: then it decides, not the pruning."""
        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING

    @activity.defn
    def abandon_running(self, inp: AbandonInput) -> int:
        """Ask the server to fail results stuck in running (their worker died)."""
        try:
            return self.catalog.abandon_running(inp.image, inp.serial, inp.older_than_s)
        except CatalogRejected as exc:
            raise rejected(exc) from None
