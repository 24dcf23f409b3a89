"""The Debian cloud variant (debootstrap with cloud-init) through the whole pipeline on real
Temporal, LXD and image server: with the definition's user data it reaches active with the
cloud-init, journal and reboot checks passed and the file the user data writes read back;
with user data whose command fails, cloud-init's verdict is `error`, the version never goes
active, and the catalog holds the evidence. The two run at once, one per arch (each arch
has its own debootstrap cache)."""

import asyncio

import pytest
from temporalio.client import Client

from clients.catalog import CatalogClient
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from tests.support import assert_no_failed_attempts, borrow_debootstrap_cache
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]

BROKEN_USER_DATA = """\
#cloud-config
runcmd:
  - [sh, -c, "echo the user data broke >&2; exit 3"]
"""


@pytest.fixture(scope="module")
def debootstrap_cache(settings: Settings) -> None:
    borrow_debootstrap_cache(settings.state_dir)


async def test_debian_cloud_variant_reaches_active_and_broken_user_data_never_does(
    temporal: Client,
    workers: list[str],
    catalog: CatalogClient,
    settings: Settings,
    debootstrap_cache: None,
) -> None:
    cloud = load_image(REPO_DIR / "images" / "debian-bookworm-cloud.yaml")
    good = cloud.model_copy(update={"arches": ["x86_64"]})
    broken = cloud.model_copy(
        update={
            "variant": "cloud-broken",
            "arches": ["i686"],
            "cloud_init_user_data": BROKEN_USER_DATA,
        }
    )
    serial = new_serial()
    handles = [
        await start_pipeline(temporal, PipelineInput(spec=good, serial=serial)),
        # Expire at once instead of waiting days for a retry.
        await start_pipeline(temporal, PipelineInput(spec=broken, serial=serial, expire_after_s=1)),
    ]
    passed, failed = await asyncio.gather(*(h.result() for h in handles))

    assert passed.state == "active", passed.message
    await assert_no_failed_attempts(handles[0])
    version = catalog.version(good.name, serial)
    assert version.state == "active"
    checks = {a.check: (a.state, a.evidence) for a in version.assessments}
    assert {c: s for c, (s, _) in checks.items()} == {
        c: "not_applicable" if c == "ipv6" else "passed" for c in good.required_checks
    }
    assert checks["cloud-init"][1].startswith("cloud-init: done after ")
    assert "status: done" in checks["cloud-init"][1]
    assert "DataSourceNoCloud" in checks["cloud-init"][1]
    assert checks["journal"][1].startswith("no failed units, no core dumps")
    reboot = checks["reboot"][1].splitlines()
    assert reboot[0].startswith("restarted in ")
    assert [line.split(":")[0] for line in reboot[1:]] == [
        *("boots", "init", "ipv4", "ipv6", "dns", "gateway", "cloud-init", "journal")
    ]
    assert checks["init"][1].startswith("systemd: running after"), "no unit failed"
    # The user data wrote it, naming the instance the seed's meta-data gave cloud-init.
    assert "written by cloud-init for icefloe-x8664-" in checks["user-data-applied"][1]

    assert failed.state == "inactive", failed.message
    assert failed.message.startswith("expired: checks failing on i686")
    version = catalog.version(broken.name, serial)
    assert version.state == "inactive"
    checks = {a.check: (a.state, a.evidence) for a in version.assessments}
    state, evidence = checks["cloud-init"]
    assert state == "failed"
    assert evidence.startswith("cloud-init: error (exit 1) after ")
    assert "Runparts: 1 failures (runcmd)" in evidence
    assert "the user data broke" in evidence, "cloud-init's own output is in the evidence"
    assert checks["user-data-applied"][0] == "failed", "this user data writes no file"
    # cloud-final.service fails with it: the journal check names the unit.
    assert checks["journal"][0] == "failed" and "cloud-final.service" in checks["journal"][1]
    assert {c for c, (s, _) in checks.items() if s == "failed"} <= {
        "init",
        "cloud-init",
        "journal",
        "reboot",
        "user-data-applied",
    }
    missing = catalog.missing_checks(broken.name, serial)["i686"]
    assert "cloud-init" in missing and "boots" not in missing
