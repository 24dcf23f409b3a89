"""Scheduled pruning: versions left in testing past the deadline by a pipeline that no
longer runs go inactive, and results stuck in running are cleared.

A version a live pipeline owns is left to that pipeline (it expires it itself), and a
version whose every check passed is never touched.
"""

from temporalio import workflow

from workflows.options import CONTROL, options

with workflow.unsafe.imports_passed_through():
    from activities.catalog import CatalogActivities
    from activities.pruning import PruneActivities
    from core.pipeline import (
        DAY_S,
        AbandonInput,
        PruneCandidate,
        PruneInput,
        PruneResult,
        RetireInput,
    )


# Runs started before this change abandoned every running result, live pipeline or not.
ORPHAN_RESULTS_ONLY = "abandon-only-orphans-running-results"


@workflow.defn(name="PruneTesting")
class PruneTesting:
    @workflow.run
    async def run(self, inp: PruneInput) -> PruneResult:
        candidates: list[PruneCandidate] = await workflow.execute_activity_method(
            PruneActivities.find_prune_candidates,
            inp,
            **options(CONTROL, summary="find stale versions"),
        )
        result = PruneResult()
        days = inp.expire_after_s / DAY_S
        for c in candidates:
            name = f"{c.image} {c.serial}"
            live = False
            if c.past_deadline or (c.has_running and workflow.patched(ORPHAN_RESULTS_ONLY)):
                live = await workflow.execute_activity_method(
                    PruneActivities.pipeline_running,
                    c.workflow_id,
                    **options(CONTROL, summary=f"owner of {name}"),
                )
            if c.past_deadline:
                if live:
                    result.left_to_live_pipelines.append(name)
                else:
                    await workflow.execute_activity_method(
                        CatalogActivities.retire_version,
                        RetireInput(
                            image=c.image,
                            serial=c.serial,
                            reason=f"pruned: over {days:g} days in testing without passing "
                            "every check, and no pipeline runs for it",
                            workflow_id=workflow.info().workflow_id,
                        ),
                        **options(CONTROL, summary=f"expire {name}"),
                    )
                    result.expired.append(name)
            # A live pipeline's running results are its own (a test under way, or a check a
            # machinery fault interrupted that it will retry): only orphans' are stuck.
            if c.has_running and not live:
                result.abandoned_results += await workflow.execute_activity_method(
                    PruneActivities.abandon_running,
                    AbandonInput(image=c.image, serial=c.serial, older_than_s=inp.stuck_after_s),
                    **options(CONTROL, summary=f"clear stuck results of {name}"),
                )
        workflow.set_current_details(
            f"expired {len(result.expired)}, left {len(result.left_to_live_pipelines)} to live "
            f"pipelines, cleared {result.abandoned_results} stuck results"
        )
        return result
