"""The check suite and the janitor against real LXD and the real image server (no Temporal):
a busybox image is built, published to testing, launched by fingerprint and checked."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest

from activities.lxd_test.checks import suite
from activities.lxd_test.instances import (
    LaunchSpec,
    ensure_project,
    forget_image,
    launch,
)
from activities.lxd_test.janitor import labelled, sweep
from activities.lxd_test.suite import run_suite
from clients.catalog import CatalogClient
from clients.lxd import ArchNotSupported, checked_arch
from core.config import Settings
from core.pipeline import CheckOutcome
from core.spec import ImageSpec, Privilege
from harness.lxd import launch_in_testing
from harness.publish import busybox_spec, publish
from tests.support import SCOPE

pytestmark = pytest.mark.lxd


def spec_for(
    catalog: CatalogClient,
    settings: Settings,
    image: ImageSpec,
    serial: str,
    fp: str,
    kind: Privilege = Privilege.unprivileged,
    workflow: str = "test-workflow",
) -> LaunchSpec:
    return launch_in_testing(
        catalog, settings, image, serial, fp, kind=kind, workflow=workflow, temporal=SCOPE
    )


@pytest.fixture
def cleanup(lxd: pylxd.Client) -> Iterator[list[str]]:
    """Fingerprints whose cached image the test must leave deleted."""
    fingerprints: list[str] = []
    yield fingerprints
    for fp in fingerprints:
        forget_image(lxd, fp)


def run(lxd, spec: LaunchSpec, image: ImageSpec) -> dict[str, CheckOutcome]:
    seen: list[CheckOutcome] = []
    run_suite(lxd, spec, suite(image.checks), seen.append, lambda _: None)
    assert [o.state for o in seen[::2]] == ["running"] * len(image.checks), "running first"
    return {o.check: o for o in seen[1::2]}


def test_default_suite_and_user_checks_pass_unprivileged_and_privileged(
    lxd, catalog: CatalogClient, settings: Settings, tmp_path: Path, cleanup: list[str]
) -> None:
    image = busybox_spec(
        "checks",
        privileged=True,
        checks=[
            "stop",  # declared first, runs last
            *("boots", "init", "ipv4", "ipv6", "dns", "gateway", "cloud-init", "journal"),
            "reboot",
            {"name": "uname", "command": "uname -m", "stdout_pattern": "^x86_64$"},
            {"name": "exit-3", "command": "exit 3", "expect_exit": 3},
        ],
    )
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    cleanup.append(fp)

    for kind in image.privileges:
        spec = spec_for(catalog, settings, image, serial, fp, kind)
        results = run(lxd, spec, image)
        suffix = "" if kind == Privilege.unprivileged else "@privileged"
        assert list(results)[-1] == f"stop{suffix}"
        # Busybox on a network without IPv6: three checks do not apply, and say so.
        na = {f"{c}{suffix}" for c in ("ipv6", "cloud-init", "journal")}
        failed = {k: o.evidence for k, o in results.items() if o.state != "passed" and k not in na}
        assert not failed, failed
        assert {results[k].state for k in na} == {"not_applicable"}
        assert set(results) == {
            k for k in image.required_checks if k.endswith(suffix) and (suffix or "@" not in k)
        }
        assert "pid 1 is init" in results[f"init{suffix}"].evidence
        assert "eth0: 198.51.100." in results[f"ipv4{suffix}"].evidence
        assert "offers no IPv6" in results[f"ipv6{suffix}"].evidence
        dns = results[f"dns{suffix}"].evidence.splitlines()
        assert dns[0] == "nameserver 198.51.100.1"
        assert dns[1].startswith(f"{spec.name}.lxd resolves to 198.51.100.")
        assert dns[1].endswith("(this instance)")
        assert "1 packets received" in results[f"gateway{suffix}"].evidence
        assert results[f"cloud-init{suffix}"].evidence == "the image has no cloud-init"
        assert results[f"journal{suffix}"].evidence == "pid 1 is init, not systemd"
        reboot = results[f"reboot{suffix}"].evidence.splitlines()
        assert reboot[0].startswith("restarted in ")
        assert [line.split(":")[0] for line in reboot[1:]] == [
            *("boots", "init", "ipv4", "ipv6", "dns", "gateway", "cloud-init", "journal")
        ], "it came back with every probe passing (or not applying) again"
        assert "\nipv6: not applicable: network " in results[f"reboot{suffix}"].evidence
        assert "Stopped" in results[f"stop{suffix}"].evidence
        assert all(o.duration_s > 0 for o in results.values())
        assert spec.name not in [i.name for i in lxd.instances.all()]
    assert forget_image(lxd, fp)
    assert fp not in [i.fingerprint for i in lxd.images.all()]


def test_failing_user_checks_say_why(
    lxd, catalog: CatalogClient, settings: Settings, tmp_path: Path, cleanup: list[str]
) -> None:
    image = busybox_spec(
        "failing",
        checks=[
            {"name": "wrong-exit", "command": "echo out; echo err >&2; exit 2"},
            {"name": "no-match", "command": "echo hello", "stdout_pattern": "^bye"},
            {"name": "too-slow", "command": "sleep 30", "timeout_s": 1},
            # The shell exits 127, which LXD reports as a failed exec ("Command not found").
            {"name": "missing", "command": "no-such-command"},
        ],
    )
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    cleanup.append(fp)
    results = run(lxd, spec_for(catalog, settings, image, serial, fp), image)
    assert {k: o.state for k, o in results.items()} == dict.fromkeys(results, "failed")
    assert results["wrong-exit"].evidence.startswith("exit 2, expected 0\nout")
    assert "err" in results["wrong-exit"].evidence
    assert "stdout does not match /^bye/" in results["no-match"].evidence
    assert results["too-slow"].evidence.startswith("timed out after 1s")
    assert results["too-slow"].duration_s < 10
    assert results["missing"].evidence.startswith("exit 127, expected 0")


def test_broken_resolver_and_an_image_broken_by_a_restart_fail_with_evidence(
    lxd, catalog: CatalogClient, settings: Settings, tmp_path: Path, cleanup: list[str]
) -> None:
    """A resolver that does not answer fails dns though a nameserver is configured; an
    image whose network does not come back after a restart fails reboot, naming the probe.
    An instance given cloud-init user data without cloud-init in it fails cloud-init."""
    image = busybox_spec(
        "broken",
        checks=[
            "boots",
            {"kind": "ipv4", "timeout_s": 10},
            {
                "name": "break-it",
                "command": "echo nameserver 127.0.0.1 >/etc/resolv.conf; rm /etc/udhcpc.script",
            },
            {"kind": "dns", "timeout_s": 1},
            "cloud-init",
            "reboot",
        ],
    )
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    cleanup.append(fp)
    spec = spec_for(catalog, settings, image, serial, fp)
    spec = dataclasses.replace(spec, cloud_init_user_data="#cloud-config\n{}")
    results = run(lxd, spec, image)
    assert results["break-it"].state == results["ipv4"].state == "passed"
    dns = results["dns"]
    assert dns.state == "failed"
    assert dns.evidence.startswith(
        f"nameserver 127.0.0.1\n{spec.name}.lxd does not resolve (exit 1):"
    )
    cloud = results["cloud-init"]
    assert (cloud.state, cloud.evidence) == (
        "failed",
        "the instance was given cloud-init user data, but has no cloud-init",
    )
    reboot = results["reboot"]
    assert reboot.state == "failed"
    lines = reboot.evidence.splitlines()
    assert lines[0] == "after the restart, ipv4 failed:"
    assert lines[1] == "no global inet address on eth0 within 10s (eth0 state up)"
    assert lines[-2].startswith("restarted in ") and lines[-1].startswith("boots: exit 0")


def test_image_without_network_fails_the_network_checks_with_evidence(
    lxd, catalog: CatalogClient, settings: Settings, tmp_path: Path, cleanup: list[str]
) -> None:
    image = busybox_spec(
        "nonet",
        network="none",
        checks=["boots", {"kind": "ipv4", "timeout_s": 3}, {"kind": "dns", "timeout_s": 1}],
    )
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    cleanup.append(fp)
    results = run(lxd, spec_for(catalog, settings, image, serial, fp), image)
    assert results["boots"].state == "passed"
    assert results["ipv4"].state == "failed"
    evidence = results["ipv4"].evidence
    assert "no global inet address on eth0 within 3s" in evidence
    assert "ip addr show eth0:\n" in evidence and "ip -4 route:\n(empty)" in evidence
    assert 3 <= results["ipv4"].duration_s < 15, "polled until the deadline, not longer"
    assert results["dns"].state == "failed"
    assert "no nameserver in /etc/resolv.conf" in results["dns"].evidence


def test_janitor_deletes_only_instances_of_finished_or_too_old_workflows(
    lxd, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> None:
    image = ImageSpec(os="busybox", release="janitor", arches=["x86_64"], checks=["boots"])
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    spec = spec_for(catalog, settings, image, serial, fp, workflow="wf-crashed")
    launch(lxd, spec, 120, lambda _: None)  # as if the worker died right after

    found = [i for i in labelled(lxd, SCOPE) if i.name == spec.name]
    assert [(i.workflow, i.base_image) for i in found] == [("wf-crashed", fp)]
    assert 0 <= found[0].age_s < 120
    assert sweep(lxd, found, running={"wf-crashed"}, max_age_s=3600) == []
    assert sweep(lxd, found, running={"wf-crashed"}, max_age_s=0) == [spec.name]

    launch(lxd, spec, 120, lambda _: None)
    assert [i.name for i in labelled(lxd, SCOPE)] == [spec.name]
    assert labelled(lxd, "default@elsewhere:7233") == [], "another Temporal's janitor leaves it"
    assert sweep(lxd, labelled(lxd, SCOPE), running=set(), max_age_s=3600) == [spec.name]
    assert spec.name not in [i.name for i in lxd.instances.all()]
    assert fp not in [i.fingerprint for i in lxd.images.all()], "its cached image goes too"


def test_worker_serves_only_arches_its_lxd_runs(lxd) -> None:
    assert checked_arch("amd64", lxd) == "x86_64"
    assert checked_arch("i686", lxd) == "i686"
    with pytest.raises(ArchNotSupported, match="not aarch64: start the worker for that arch"):
        checked_arch("aarch64", lxd)


def test_project_is_created_once(lxd, settings: Settings) -> None:
    assert lxd.projects.exists(settings.lxd_project)
    assert ensure_project(lxd, settings.lxd_project) is False
    project = lxd.projects.get(settings.lxd_project)
    assert project.config["features.profiles"] == "false"
    assert project.config["features.images"] == "true"
