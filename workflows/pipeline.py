"""One durable workflow per image version:
build (per arch) -> publish to `testing` -> test (per arch) -> promote to `active`.

Builds and tests run on each arch's own task queue, so a host of that arch does them.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.build.activity import BuildActivities
    from activities.catalog import CatalogActivities
    from activities.lxd_test.activity import TestActivities
    from core import search_attributes as sa
    from core.arch import CONTROL_TASK_QUEUE, task_queue
    from core.models import ArchFiles, VersionState
    from core.pipeline import (
        ArchTestResult,
        BuildInput,
        PipelineInput,
        PipelineResult,
        PromoteInput,
        PublishInput,
        TestInput,
    )

RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))


@workflow.defn(name="ImagePipeline")
class ImagePipeline:
    def __init__(self) -> None:
        self._phase = "starting"
        self._tests: dict[str, ArchTestResult] = {}

    @workflow.query
    def progress(self) -> dict:
        """Phase and per-arch, per-check results so far."""
        return {
            "phase": self._phase,
            "tests": {arch: r.model_dump(mode="json") for arch, r in self._tests.items()},
        }

    def _enter(self, phase: str, details: str) -> None:
        self._phase = phase
        workflow.upsert_search_attributes([sa.PHASE.value_set(phase)])
        workflow.set_current_details(details)
        workflow.logger.info(details)

    @workflow.run
    async def run(self, inp: PipelineInput) -> PipelineResult:
        image, serial = inp.image, inp.serial
        wf_id = workflow.info().workflow_id
        workflow.upsert_search_attributes(
            [
                sa.IMAGE.value_set(image.name),
                sa.SERIAL.value_set(serial),
                sa.ARCHES.value_set(list(image.arches)),
            ]
        )

        self._enter("build", f"building {image.name} {serial} on {', '.join(image.arches)}")
        built: list[ArchFiles] = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    BuildActivities.build_image,
                    BuildInput(image=image, serial=serial, arch=arch),
                    task_queue=task_queue(arch),
                    start_to_close_timeout=timedelta(hours=2),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RETRY,
                    summary=f"build {arch}",
                )
                for arch in image.arches
            )
        )

        self._enter("publish", f"publishing {serial} to the testing channel")
        version = await workflow.execute_activity_method(
            CatalogActivities.publish_version,
            PublishInput(image=image, serial=serial, arches=built, workflow_id=wf_id),
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RETRY,
            summary="publish to testing",
        )
        workflow.upsert_search_attributes([sa.CHANNEL.value_set(version.state.value)])
        fingerprints = {a.arch: a.fingerprint for a in version.arches}

        self._enter("test", f"testing {serial} on {', '.join(image.arches)}")
        results = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    TestActivities.test_image,
                    TestInput(
                        image=image,
                        serial=serial,
                        arch=arch,
                        fingerprint=fingerprints[arch],
                        workflow_id=wf_id,
                    ),
                    task_queue=task_queue(arch),
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=RETRY,
                    summary=f"test {arch}",
                )
                for arch in image.arches
            )
        )
        self._tests = {r.arch: r for r in results}

        failed = [r.arch for r in results if not r.passed]
        if failed:
            self._enter("failed", f"checks failed on {', '.join(failed)}; stays in testing")
            return PipelineResult(
                image=image.name,
                serial=serial,
                state=VersionState.testing,
                tests=results,
                message=f"checks failed on {', '.join(failed)}",
            )

        self._enter("promote", f"every check passed; promoting {serial} to active")
        version = await workflow.execute_activity_method(
            CatalogActivities.promote_version,
            PromoteInput(image=image, serial=serial, workflow_id=wf_id),
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RETRY,
            summary="promote to active",
        )
        workflow.upsert_search_attributes([sa.CHANNEL.value_set(version.state.value)])
        self._enter("done", f"{image.name} {serial} is {version.state}")
        return PipelineResult(
            image=image.name,
            serial=serial,
            state=version.state,
            tests=results,
            message="every check passed on every arch",
        )
