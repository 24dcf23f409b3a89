"""Checks deploy/setup-host makes with Python: it runs this file with the system python3
before any venv exists, so the standard library is all it may use.

    ip -4 route show | python3 deploy/hostcheck.py cidr 198.51.100.1/24  # why not, or nothing
    lxc query /1.0 | python3 deploy/hostcheck.py lxd-summary  # "5.0.2 x86_64,i686"
"""

import ipaddress
import json
import sys
from collections.abc import Iterable

# Documentation ranges this workplace keeps off every bridge.
RESERVED = ("192.0.2.0/24", "203.0.113.0/24")


def cidr_problem(cidr: str, routes: Iterable[str]) -> str | None:
    """Why `cidr` cannot be a new bridge's address here (routes: `ip -4 route show` lines), or
    None when it can."""
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError:
        return f"{cidr} is not an address/prefix like 198.51.100.1/24"
    net = iface.network
    if iface.version != 4:
        return f"{cidr} is not an IPv4 address/prefix like 198.51.100.1/24"
    if iface.ip in (net.network_address, net.broadcast_address) or net.prefixlen > 30:
        return f"{cidr} needs a host address in a /30 or larger network"
    for bad in RESERVED:
        if net.overlaps(ipaddress.ip_network(bad)):
            return f"{cidr} overlaps {bad}, which this workplace reserves"
    for line in routes:
        route = _destination(line)
        if route is not None and net.overlaps(route):
            return f'{cidr} overlaps the host route "{line.strip()}"'
    return None


def _destination(line: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network a route line is for: its first token that is one (after a type such as
    `blackhole`); None for the default route."""
    for token in line.split():
        if token == "default":
            return None
        try:
            return ipaddress.ip_network(token, strict=False)
        except ValueError:
            continue
    return None


def lxd_summary(server: dict) -> str:
    """LXD's version and arches from its /1.0 document, as `VERSION ARCH,ARCH`."""
    env = server.get("environment", {})
    return f"{env.get('server_version', '?')} {','.join(env.get('architectures', []))}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["cidr"] and len(argv) == 2:
        print(cidr_problem(argv[1], sys.stdin) or "", end="")
        return 0
    if argv == ["lxd-summary"]:
        print(lxd_summary(json.load(sys.stdin)))
        return 0
    print("usage: hostcheck.py cidr ADDRESS/PREFIX | lxd-summary", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
