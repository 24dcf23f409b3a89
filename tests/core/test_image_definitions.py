"""Image definitions (images/*.yaml) and the builders' refusals: fast, no LXD, no network."""

from pathlib import Path

import pytest

from activities.builders.base import BuildJob, HostDirs
from activities.builders.debootstrap import build_debootstrap, foreign_arch_check
from activities.builders.distrobuilder import build_distrobuilder
from activities.builders.errors import BuildError
from activities.builders.image_files import stream_tool
from core.config import REPO_DIR
from core.images import ImageDefinitionError, load_image
from core.spec import DEFAULT_CHECKS, CommandCheck, ImageSpec

SERIAL = "20261125-0001"


def dirs(tmp: Path) -> HostDirs:
    return HostDirs(debs=tmp / "debs", cache=tmp / "cache")


@pytest.mark.parametrize("path", sorted((REPO_DIR / "images").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_definition_loads(path: Path) -> None:
    spec = load_image(path)
    assert spec.required_checks[: len(DEFAULT_CHECKS)] == list(DEFAULT_CHECKS)


def test_debian_cloud_definition_gives_its_instances_user_data() -> None:
    spec = load_image(REPO_DIR / "images" / "debian-bookworm-cloud.yaml")
    assert (spec.name, spec.builder) == ("debian:bookworm:cloud", "debootstrap")
    assert "cloud-init" in spec.packages
    assert spec.cloud_init_user_data and spec.cloud_init_user_data.startswith("## template: jinja")
    assert {"cloud-init", "journal", "reboot", "user-data-applied"} <= set(spec.required_checks)


def test_debian_definition() -> None:
    spec = load_image(REPO_DIR / "images" / "debian-bookworm.yaml")
    assert (spec.builder, spec.os, spec.release, spec.network) == (
        "debootstrap",
        "debian",
        "bookworm",
        "dhcp",
    )
    users = [c for c in spec.checks if isinstance(c, CommandCheck)]
    assert [c.name for c in users] == ["apt-sources", "hostname-template"]


def test_default_suite_and_privileged_names() -> None:
    spec = ImageSpec(os="x", release="1", arches=["x86_64"], privileged=True)
    assert spec.required_checks == [*DEFAULT_CHECKS, *(f"{c}@privileged" for c in DEFAULT_CHECKS)]


def write(tmp: Path, text: str) -> Path:
    path = tmp / "image.yaml"
    path.write_text("os: x\nrelease: '1'\narches: [x86_64]\n" + text)
    return path


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ("builder: kiwi\n", "builder", "Input should be 'busybox', 'debootstrap' or"),
        ("checks: []\n", "checks", "at least 1 item"),
        ("checks: [boots, reboots]\n", "checks.1", "does not match any of the expected tags"),
        ("checks: [boots, boots]\n", "checks", "more than once: boots"),
        ("checks: [{command: 'true'}]\n", "checks.0.command.name", "Field required"),
        (
            "checks: [{name: a, command: x, stdout_pattern: '('}]\n",
            "checks.0.command.stdout_pattern",
            "not a regular expression",
        ),
        (
            "checks: [{name: a, command: x, timeout_s: 0}]\n",
            "checks.0.command.timeout_s",
            "greater than 0",
        ),
        ("checks: [{kind: ipv4, timeot_s: 3}]\n", "checks.0.ipv4.timeot_s", "Extra inputs"),
        ("network: bridge\n", "network", "'dhcp' or 'none'"),
        ("packages: [curl]\n", "definition", "are for builder debootstrap, not busybox"),
        ("builder: distrobuilder\n", "definition", "needs a `distrobuilder` image definition"),
        ("cloud_init_user_data: '#cloud-config'\n", "definition", "which busybox images lack"),
        ("builder: debootstrap\ncloud_init_user_data: ''\n", "cloud_init_user_data", "at least 1"),
        ("builder: debootstrap\nmirror: ftp://x\n", "mirror", "should match pattern"),
        ("arches: [sparc]\n", "arches.0", "Input should be 'x86_64'"),
        ("instance_types: [vm]\n", "instance_types.0", "'container' or 'virtual-machine'"),
        ("instance_types: [virtual-machine]\n", "definition", "container, and at most once"),
        ("instance_types: [container, container]\n", "definition", "at most once each"),
        (
            "instance_types: [container, virtual-machine]\n",
            "definition",
            "virtual-machine images are built by debootstrap, not busybox",
        ),
        ("colour: blue\n", "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_definition_names_field_and_reason(
    tmp_path: Path, extra: str, field: str, reason: str
) -> None:
    with pytest.raises(ImageDefinitionError) as err:
        load_image(write(tmp_path, extra))
    msg = str(err.value)
    assert f"{field}: " in msg and reason in msg, msg
    assert "\n" not in msg


def test_foreign_arch_without_qemu_is_a_clear_error() -> None:
    assert foreign_arch_check("i686", machine="x86_64") is None
    assert foreign_arch_check("x86_64", machine="x86_64") is None
    if Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("this host has qemu-user-static for aarch64")
    with pytest.raises(BuildError, match=r"cannot build aarch64 on this x86_64 host: .*qemu"):
        foreign_arch_check("aarch64", machine="x86_64")


def test_debootstrap_refuses_unknown_os_before_any_work(tmp_path: Path) -> None:
    spec = ImageSpec(os="fedora", release="40", arches=["x86_64"], builder="debootstrap")
    with pytest.raises(BuildError, match="debootstrap builds debian, ubuntu, not 'fedora'"):
        build_debootstrap(BuildJob(spec, "x86_64", SERIAL, tmp_path / "out"), dirs(tmp_path))


def test_distrobuilder_missing_fails_at_once_naming_the_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tool can be found
    spec = ImageSpec(
        os="alpine",
        release="3.20",
        arches=["x86_64"],
        builder="distrobuilder",
        distrobuilder={"image": {"distribution": "alpine"}, "source": {"downloader": "x"}},
    )
    with pytest.raises(BuildError) as err:
        build_distrobuilder(BuildJob(spec, "x86_64", SERIAL, tmp_path / "out"), dirs(tmp_path))
    assert "needs distrobuilder or lxd-imagebuilder on this worker host" in str(err.value)
    assert not (tmp_path / "out").exists(), "failed before doing anything"


def test_a_tool_that_ran_and_failed_may_be_retried_a_missing_tool_may_not() -> None:
    """A debootstrap run can fail on a mirror mid-sync; a missing tool will stay missing."""
    with pytest.raises(BuildError) as failed:
        stream_tool(["sh", "-c", "echo mirror hiccup; exit 3"], "debootstrap", lambda _: None)
    assert failed.value.retryable and "exit 3" in str(failed.value)
    assert "mirror hiccup" in str(failed.value)
    with pytest.raises(BuildError) as missing:
        stream_tool(["no-such-builder-tool"], "build", lambda _: None)
    assert not missing.value.retryable and "not installed" in str(missing.value)


def test_every_builtin_check_has_an_implementation() -> None:
    from activities.lxd_test.checks import BUILTIN

    assert list(BUILTIN) == list(DEFAULT_CHECKS)


def test_every_builder_a_definition_may_name_is_registered() -> None:
    from typing import get_args

    from activities.builders.registry import BUILDERS

    assert set(BUILDERS) == set(get_args(ImageSpec.model_fields["builder"].annotation))
