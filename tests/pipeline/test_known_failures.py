"""A known failure on the real parts (Temporal dev server, LXD, the image server): a busybox
version whose user check fails waits for a retry; an operator records the failure as known,
retries, and the version (the check failed again, its result shown as failed) is promoted,
the promotion's event naming the known failure. Once its date passes, the next version with
the same failure waits for a retry again and the gate refuses it. On the same run the checks
that do not apply to busybox (ipv6 on a bridge without IPv6) are recorded not applicable and
satisfy the gate; the image's pass rates count all of it."""

from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.lxd_test.instances import LABEL, listed
from clients.catalog import CatalogClient, CatalogRejected
from clients.lxd import connect_lxd
from core.catalog import KnownFailureCreate, TransitionRequest
from core.pipeline import OperatorRequest, Phase, PipelineInput
from harness.publish import busybox_spec, next_serial
from harness.servers import RunningServer, client, token
from harness.waiting import until, wait_until
from tests.support import assert_no_failed_attempts, nothing_left
from workflows.pipeline import ImagePipeline
from workflows.trigger import Pipeline, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


async def _waits_for_retry(handle: Pipeline) -> None:
    async def waiting() -> bool:
        phase = (await handle.query(ImagePipeline.progress)).phase
        assert phase not in (Phase.done, Phase.unchanged), f"{handle.id} ended {phase}"
        return phase == Phase.waiting_for_retry

    await until(waiting, f"{handle.id} waits for a retry", timeout_s=600)


async def test_a_known_failure_lets_a_real_version_through_then_expires(
    temporal: Client,
    workers: list[str],
    image_server: RunningServer,
    catalog: CatalogClient,
) -> None:
    image = busybox_spec(
        f"known{next_serial()[-6:]}",
        checks=["boots", "ipv6", {"name": "console", "command": "echo no console >&2; exit 1"}],
    )
    first, second = next_serial(), next_serial()
    with closing(client(image_server, token(image_server, "operator", "ops-dana"))) as ops:
        handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=first))
        await _waits_for_retry(handle)
        assert catalog.gate(image.name, first).unmet == {"x86_64": ["console"]}

        link = "https://bugs.example.org/console"
        known = ops.add_known_failure(
            KnownFailureCreate(
                image=image.name,
                check="console",
                arch="x86_64",
                reason="serial console missing on this host",
                link=link,
                until=datetime.now(UTC) + timedelta(days=1),
            )
        )
        # The first run's instance is deleted in the background after its verdicts; a retry
        # at once would launch one of the same name while it goes (noted, not fixed here).
        lxd = connect_lxd(image_server.client_settings())
        await nothing_left(
            lambda: [i.name for i in listed(lxd) if i.config.get(f"{LABEL}serial") == first],
            f"test instance of {first}",
        )
        retry = OperatorRequest(actor="ops-dana", reason="the console failure is known")
        await handle.execute_update(ImagePipeline.retry, retry)
        result = await handle.result()
        assert result.state == "active", result.message
        await assert_no_failed_attempts(handle)
        assert "known failures: console on x86_64 until " in result.message

        version = catalog.version(image.name, first)
        states = {a.check: (a.state, a.evidence, a.failures) for a in version.assessments}
        assert states["boots"][0] == "passed"
        assert states["ipv6"][0] == "not_applicable" and "offers no IPv6" in states["ipv6"][1]
        assert states["console"][0] == "failed"  # run again on the retry, failed, and shown
        assert "no console" in states["console"][1] and states["console"][2] == 2
        (promoted,) = [e for e in catalog.events(image.name, first) if e.to_state == "active"]
        assert not promoted.forced
        assert "relied on known failures, the gate did not require: console on x86_64" in (
            promoted.reason
        )
        assert f"(serial console missing on this host {link})" in promoted.reason

        # The operator moves the date to a moment from now; then nobody acts.
        soon = datetime.now(UTC) + timedelta(seconds=2)
        fields = known.model_dump(include=set(KnownFailureCreate.model_fields))
        ops.add_known_failure(KnownFailureCreate.model_validate(fields | {"until": soon}))
        wait_until(lambda: datetime.now(UTC) > soon, "the known failure's date passes")
        (expired,) = ops.known_failures(image.name)
        assert (expired.id, expired.expired) == (known.id, True)

        # Forced: its inputs equal the active version's, and it must be built and tested.
        later = await start_pipeline(temporal, PipelineInput(spec=image, serial=second, force=True))
        await _waits_for_retry(later)
        assert catalog.gate(image.name, second).unmet == {"x86_64": ["console"]}
        with pytest.raises(CatalogRejected, match="still needed: x86_64: console"):
            ops.transition(
                image.name, second, TransitionRequest(to="active", reason="try the gate")
            )
        assert catalog.version(image.name, second).state == "testing"

        rates = {c.check: c for c in ops.check_rates(image.name).checks}
        assert (rates["console"].failed, rates["console"].pass_rate) == (3, 0.0)
        assert (rates["ipv6"].not_applicable, rates["ipv6"].pass_rate) == (2, None)
        assert (rates["boots"].passed, rates["boots"].pass_rate) == (2, 1.0)
        await later.cancel()
        with pytest.raises(WorkflowFailureError):
            await later.result()
