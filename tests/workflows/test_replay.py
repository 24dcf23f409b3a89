"""Saved histories of real pipeline runs replay against today's workflow code.

A change that would make a running pipeline take another path on replay (a
non-determinism error) fails here, before it reaches a worker. The histories come from
the dev server (`pipeline-active-devserver.json`: the sample image through run-local;
`pipeline-slot-wait-devserver.json`: a busybox pipeline of tests/pipeline/test_slots.py
that waited for build and test slots, its worker's `slot_wait` signals in it;
`prune-*-devserver.json`: PruneTesting runs of tests/workflows/test_prune.py, expiring
orphans and leaving live pipelines' versions, clearing stuck results only of orphans,
and a scheduled run with nothing to do; `pipeline-unchanged-devserver.json`: a pipeline whose
inputs equal the active version's, of tests/pipeline/test_unchanged.py;
`pipeline-held-devserver.json`: one that waited in phase `held` until its image was released,
of tests/pipeline/test_phases.py; `refresh-*-devserver.json`:
a Refresh with an active image, an allowed failure, an unknown name and a bad file, and
`pipeline-refresh-child-*`: that allowed failure's pipeline, which signalled its refresh and
was cancelled; `deliver-retried-devserver.json`: a webhook delivery of
tests/server/test_hook_delivery.py's kind, refused twice while its receiver was down, then
delivered) and the time-skipping server (the pipeline's expiry and retry paths, and
`pipeline-known-failure.json`: a failed check a known failure let through). To add
one: `(await handle.fetch_history()).to_json()` into tests/workflows/replay/.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.deliver import DeliverNotice
from workflows.pipeline import ImagePipeline
from workflows.prune import PruneTesting
from workflows.refresh import Refresh

HISTORIES = sorted((Path(__file__).parent / "replay").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[ImagePipeline, PruneTesting, Refresh, DeliverNotice],
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(history)
