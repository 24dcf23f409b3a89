"""Pruning activities (control worker): find versions stuck in testing, ask Temporal
whether a pipeline still owns one, and clear results stuck in running."""

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client

from activities.errors import image_server_errors
from activities.heartbeat import beating
from clients.catalog import CatalogClient
from clients.temporal import running
from core.catalog import AssessmentState, VersionState
from core.pipeline import AbandonInput, PruneCandidate, PruneInput, pipeline_workflow_id


class PruneActivities:
    def __init__(self, catalog: CatalogClient, client: Client) -> None:
        self.catalog = catalog
        self.client = client

    @activity.defn
    @beating
    def find_prune_candidates(self, inp: PruneInput) -> list[PruneCandidate]:
        """Versions in testing past the deadline that have not passed, or with stuck results.

        A version whose every required check passed is never a candidate for expiry.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=inp.expire_after_s)
        out = []
        with image_server_errors():
            for v in self.catalog.versions(state=VersionState.testing, image=inp.image):
                past = v.state_changed_at.replace(tzinfo=v.state_changed_at.tzinfo or UTC) < cutoff
                if past:
                    past = any(self.catalog.missing_checks(v.image, v.serial).values())
                stuck = any(a.state == AssessmentState.running for a in v.assessments)
                if past or stuck:
                    wf_id = v.workflow_id or pipeline_workflow_id(v.image, v.serial)
                    out.append(
                        PruneCandidate(
                            image=v.image,
                            serial=v.serial,
                            workflow_id=wf_id,
                            past_deadline=past,
                            has_running=stuck,
                        )
                    )
        return out

    @activity.defn
    async def pipeline_running(self, workflow_id: str) -> bool:
        """Whether a live workflow owns the version: then it decides, not the pruning."""
        return workflow_id in await running(self.client, [workflow_id])

    @activity.defn
    @beating
    def abandon_running(self, inp: AbandonInput) -> int:
        """Ask the server to fail results stuck in running (their worker died)."""
        with image_server_errors():
            return self.catalog.abandon_running(inp.image, inp.serial, inp.older_than_s)
