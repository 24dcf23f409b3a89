"""deploy/hostcheck.py, the Python setup-host runs before any venv exists: which bridge
addresses it refuses and why, and that the system python3 runs it with the standard library."""

import subprocess

import pytest

from core.config import REPO_DIR
from deploy.hostcheck import cidr_problem, lxd_summary

ROUTES = [
    "default via 10.0.2.2 dev eth0",
    "10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15",
    "blackhole 172.20.0.0/16",
]


@pytest.mark.parametrize("cidr", ["198.51.100.1/24", "10.213.7.1/24", "172.21.0.1/30"])
def test_a_free_private_range_is_taken(cidr: str) -> None:
    assert cidr_problem(cidr, ROUTES) is None


@pytest.mark.parametrize(
    ("cidr", "why"),
    [
        ("bridge", "bridge is not an address/prefix like 198.51.100.1/24"),
        ("fd00::1/64", "fd00::1/64 is not an IPv4 address/prefix"),
        ("10.9.0.0/24", "10.9.0.0/24 needs a host address in a /30 or larger network"),
        ("10.9.0.1/31", "10.9.0.1/31 needs a host address in a /30 or larger network"),
        ("192.0.2.1/24", "192.0.2.1/24 overlaps 192.0.2.0/24, which this workplace reserves"),
        ("203.0.112.1/23", "overlaps 203.0.113.0/24, which this workplace reserves"),
        ("10.0.2.1/24", 'overlaps the host route "10.0.2.0/24 dev eth0'),
        ("172.20.5.1/24", 'overlaps the host route "blackhole 172.20.0.0/16"'),
    ],
)
def test_an_unusable_range_is_refused_with_its_reason(cidr: str, why: str) -> None:
    assert why in (cidr_problem(cidr, ROUTES) or "")


def test_lxd_summary() -> None:
    server = {"environment": {"server_version": "5.0.2", "architectures": ["x86_64", "i686"]}}
    assert lxd_summary(server) == "5.0.2 x86_64,i686"
    assert lxd_summary({}) == "? "


def hostcheck(*args: str, stdin: str) -> subprocess.CompletedProcess:
    """As setup-host runs it: the system python3, here without site-packages (-S -I)."""
    argv = ["/usr/bin/python3", "-S", "-I", str(REPO_DIR / "deploy/hostcheck.py"), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


def test_the_system_python_runs_it_with_the_standard_library() -> None:
    refused = hostcheck("cidr", "10.0.2.9/24", stdin="\n".join(ROUTES))
    assert refused.returncode == 0 and "overlaps the host route" in refused.stdout
    assert hostcheck("cidr", "10.213.7.1/24", stdin="").stdout == ""
    summary = hostcheck("lxd-summary", stdin='{"environment": {"server_version": "6.0"}}')
    assert summary.stdout == "6.0 \n"
    assert hostcheck("frobnicate", stdin="").returncode == 2
