"""deploy/setup-host installs per role what that host runs and nothing else: a production host
(install-host --role server|control|arch) gets no browser, npm, Incus, Postgres or [dev] venv;
--role dev (deploy/test, deploy/run-local) gets them. Read from the dry runs, as `nobody`."""

import platform
import re

import pytest

from tests.deploy.scripts import readable_deploy, run_script

# setpriv to `nobody` needs root.
pytestmark = pytest.mark.root

# What only the project's own tests use (and npm where there is none, Incus on a line of its own).
DEV_PACKAGES = {
    "chromium",
    "libnginx-mod-stream",
    "postgresql",
    "systemd",
    "openssl",
    "dpkg-dev",
    "apt-utils",
}
DEV_WORDS = ("chromium", "npm", "incus", "postgres", "[dev]", "libnginx-mod-stream", "prometheus")
RUNS = {
    "control": {"python3", "ca-certificates"},
    "server": {"python3", "ca-certificates", "nginx", "libnginx-mod-http-js", "xdelta3"}
    | {"gnupg", "gpgv"},
    "arch": {"python3", "ca-certificates", "lxd", "dnsmasq-base", "iptables", "iproute2"}
    | {"squashfs-tools", "xz-utils", "debootstrap"}
    | {"e2fsprogs", "dosfstools", "mtools", "fdisk", "qemu-utils"}
    | ({"qemu-system-x86", "ovmf", "openssh-client"} if platform.machine() == "x86_64" else set()),
}


def packages(said: str) -> set[str]:
    """The packages a dry run would install (those it lists, installed here or not)."""
    found = re.findall(r"would install the packages missing of: (.*) \(missing here", said)
    assert len(found) == 1, said
    return set(found[0].split()) - {"python3-venv"}  # only where python3 lacks venv


def dry_run(script: str, *args: str) -> str:
    with readable_deploy() as copy:
        done = run_script(copy / "deploy" / script, *args, "--dry-run", nobody=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("role", RUNS)
def test_a_production_host_gets_what_its_role_runs_and_nothing_of_the_tests(role: str) -> None:
    said = dry_run("install-host", "--role", role)
    assert packages(said) == RUNS[role]
    assert [w for w in DEV_WORDS if w in said.lower()] == []
    assert ("LXD" in said) == (role == "arch")


def test_the_dev_role_gets_every_role_and_the_tests_tools() -> None:
    """The checks above see these names when they are there."""
    said = dry_run("setup-host", "--role", "dev")
    assert packages(said) - {"npm"} == set().union(*RUNS.values()) | DEV_PACKAGES
    assert "would install incus-base incus-client" in said
    assert "would install prometheus (for promtool) with its daemon neither started nor" in said
    assert [w for w in DEV_WORDS if w not in said] == []
    assert "would start the LXD daemon" in said and "would start the Incus daemon" in said


def test_roles_add_up() -> None:
    said = dry_run("setup-host", "--role", "server", "--role", "control")
    assert packages(said) == RUNS["server"] | RUNS["control"]
    assert "roles: control server" in said


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "--role server|control|arch|dev is required"),
        (("--role", "web"), "unknown role 'web': use server, control, arch or dev"),
        (("--role",), "--role needs server, control, arch or dev"),
        (("--role", "arch", "--fast"), "unknown argument --fast"),
    ],
)
def test_setup_host_says_what_is_wrong_with_its_arguments(args: tuple[str, ...], says: str) -> None:
    with readable_deploy() as copy:
        done = run_script(copy / "deploy/setup-host", *args, nobody=True)
    assert done.returncode in (1, 2) and says in done.stderr, done.stderr


def test_setup_host_refuses_without_root_unless_dry() -> None:
    with readable_deploy() as copy:
        done = run_script(copy / "deploy/setup-host", "--role", "control", nobody=True)
    assert done.returncode == 1 and "run me as root" in done.stderr
