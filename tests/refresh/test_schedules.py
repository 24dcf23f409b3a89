"""`icefloe setup-temporal` keeps exactly one Temporal Schedule per refresh rule of the
catalogue: run twice it changes nothing, and after the catalogue's rules change it updates
the ones kept and deletes the ones no definition names any more (its own namespace)."""

from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from harness.refresh import definition, write
from harness.remote import namespace
from tests.refresh.test_refresh import icefloe

pytestmark = pytest.mark.temporal


# The rule a schedule refreshes, its intervals (s), and the times (UTC) its next starts are at.
Shown = tuple[str, list[float], set[str]]


async def schedules(ns: Client) -> dict[str, Shown]:
    """Per refresh schedule what it does (Temporal keeps a cron as a calendar: its next times
    say what it became)."""
    out: dict[str, Shown] = {}
    async for listed in await ns.list_schedules():
        if not listed.id.startswith("icefloe-refresh-"):
            continue
        desc = await ns.get_schedule_handle(listed.id).describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "Refresh"
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        spec = desc.schedule.spec
        rule = (await ns.data_converter.decode([action.args[0]]))[0]["rule"]
        every = [i.every.total_seconds() for i in spec.intervals]
        times = {f"{t:%H:%M}" for t in desc.info.next_action_times} if not every else set()
        out[listed.id] = (rule, every, times)
    return out


async def test_setup_temporal_twice_leaves_one_schedule_per_rule(
    temporal: Client, tmp_path: Path
) -> None:
    ns = await namespace(temporal, "icefloe-schedules")
    images = tmp_path / "images"
    write(images, "a", definition("sa"))  # the nightly default
    write(images, "b", definition("sb", refresh="0 3 * * *"))  # the same rule, said again
    write(images, "c", definition("sc", refresh="every 6h"))
    nightly: dict[str, Shown] = {"icefloe-refresh-0-3-x-x-x": ("0 3 * * *", [], {"03:00"})}
    six_hours: dict[str, Shown] = {"icefloe-refresh-every-6h": ("every 6h", [21600.0], set())}

    first = await icefloe(ns, images, "setup-temporal")
    assert first.returncode == 0, first.stderr
    assert "schedule icefloe-refresh-every-6h created" in first.stdout, first.stdout
    assert await schedules(ns) == nightly | six_hours
    again = await icefloe(ns, images, "setup-temporal")
    assert again.returncode == 0 and "icefloe-refresh-every-6h updated" in again.stdout
    assert await schedules(ns) == nightly | six_hours

    (images / "c.yaml").unlink()
    write(images, "d", definition("sd", refresh="@hourly"))
    changed = await icefloe(ns, images, "setup-temporal")
    assert changed.returncode == 0, changed.stderr
    assert "schedule icefloe-refresh-every-6h deleted" in changed.stdout, changed.stdout
    now = await schedules(ns)
    rule, _, times = now.pop("icefloe-refresh-0-x-x-x-x")
    assert now == nightly and rule == "0 * * * *"
    assert len(times) > 1 and all(t.endswith(":00") for t in times), times
