"""The check suite: what each declared check does inside a started instance.

Each check returns (passed, evidence); evidence is what a person needs to see why.
Anything that waits polls with the check's deadline; nothing sleeps a fixed time.
"""

import re
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from pylxd.exceptions import LXDAPIException

from activities.lxd_test.execs import POLL_INTERVAL, describe, run, wait_until
from activities.lxd_test.faults import LXD_ERRORS
from activities.lxd_test.instances import Target
from activities.lxd_test.suite import Check
from core.spec import BuiltinCheck, BuiltinKind, CommandCheck

EXCERPT = 1500


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """The end of a long output, where the error usually is."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def boots(t: Target, timeout_s: float) -> tuple[bool, str]:
    """The instance runs and answers exec. Exec may fail right after start, so errors are
    polled through; one still there at the deadline is raised for the suite to judge."""
    error: list[Exception] = []

    def probe() -> tuple[bool, str]:
        error.clear()
        try:
            r = run(t.inst, ["/bin/sh", "-c", "echo alive; cat /proc/1/comm"], 10)
        except LXD_ERRORS as exc:
            error.append(exc)
            return False, f"exec failed: {describe(exc)}"
        return r.code == 0, f"exit {r.code}: {r.output}"

    ok, evidence = wait_until(probe, timeout_s)
    if error:
        raise error[0]
    return ok, evidence


def init(t: Target, timeout_s: float) -> tuple[bool, str]:
    """systemd reaches `running` (degraded: the failed units are the evidence); else pid 1 lives."""
    pid1 = run(t.inst, ["cat", "/proc/1/comm"], 10).stdout.strip()
    if pid1 != "systemd":
        status = run(t.inst, ["cat", "/proc/1/status"], 10).stdout
        state = next((s for s in status.splitlines() if s.startswith("State:")), "State: ?")
        alive = pid1 != "" and " Z " not in state
        return alive, f"pid 1 is {pid1 or '?'} ({state.strip()})"
    started = time.monotonic()
    deadline = started + timeout_s
    while True:  # right after start, systemd's bus may not be up yet: ask again
        r = run(t.inst, ["systemctl", "is-system-running", "--wait"], deadline - time.monotonic())
        if "Failed to connect to bus" not in r.output or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    state = (r.stdout.strip().splitlines() or ["?"])[-1]
    took = f"{time.monotonic() - started:.1f}s"
    if r.code == 0 and state == "running":
        return True, f"systemd: running after {took}"
    failed = run(t.inst, ["systemctl", "--failed", "--no-legend", "--plain", "--no-pager"], 10)
    if r.timed_out:
        jobs = run(t.inst, ["systemctl", "list-jobs", "--no-pager"], 10).output
        return False, excerpt(
            f"systemd still not running after {timeout_s:.0f}s\npending jobs:\n{jobs}\n"
            f"failed units:\n{failed.output or '(none)'}"
        )
    return False, excerpt(f"systemd: {state} after {took}\nfailed units:\n{failed.output}")


def _global_address(t: Target, family: str, timeout_s: float) -> tuple[bool, str]:
    """Poll LXD's view of the interface for a global address; on failure show the inside view."""

    def probe() -> tuple[bool, str]:
        net = (t.inst.state().network or {}).get(t.interface) or {}
        found = [
            f"{a['address']}/{a['netmask']}"
            for a in net.get("addresses", [])
            if a.get("family") == family and a.get("scope") == "global"
        ]
        if found:
            return True, f"{t.interface}: {', '.join(found)}"
        return False, f"{t.interface} state {net.get('state', 'missing')}"

    started = time.monotonic()
    ok, evidence = wait_until(probe, timeout_s)
    if ok:
        return True, f"{evidence} after {time.monotonic() - started:.1f}s"
    flag = "-4" if family == "inet" else "-6"
    inside = run(t.inst, ["ip", "addr", "show", t.interface], 10).output
    routes = run(t.inst, ["ip", flag, "route", "show"], 10).output
    return False, excerpt(
        f"no global {family} address on {t.interface} within {timeout_s:.0f}s ({evidence})\n"
        f"ip addr show {t.interface}:\n{inside or '(empty)'}\n"
        f"ip {flag} route:\n{routes or '(empty)'}"
    )


def ipv4(t: Target, timeout_s: float) -> tuple[bool, str]:
    return _global_address(t, "inet", timeout_s)


def ipv6(t: Target, timeout_s: float) -> tuple[bool, str]:
    """Only where the network offers IPv6; otherwise passes, saying why it did not apply."""
    if t.bridge_ipv6 is None:
        return True, f"not applicable: network {t.network or '?'} offers no IPv6"
    return _global_address(t, "inet6", timeout_s)


def dns(t: Target, timeout_s: float) -> tuple[bool, str]:
    """A resolver is configured (DHCP writes it, so poll)."""

    def probe() -> tuple[bool, str]:
        r = run(t.inst, ["cat", "/etc/resolv.conf"], 10)
        servers = [s for s in r.stdout.splitlines() if s.split()[:1] == ["nameserver"]]
        if servers:
            return True, "\n".join(servers)
        return False, f"no nameserver in /etc/resolv.conf:\n{r.output or '(empty)'}"

    ok, evidence = wait_until(probe, timeout_s)
    return ok, excerpt(evidence)


def gateway(t: Target, timeout_s: float) -> tuple[bool, str]:
    """The host's address on the instance's network answers ping from inside."""
    if t.bridge_ipv4 is None:
        return False, f"{t.interface} is not on an LXD network with an IPv4 address"

    def probe() -> tuple[bool, str]:
        r = run(t.inst, ["ping", "-c", "1", "-W", "2", t.bridge_ipv4 or ""], 10)
        return r.code == 0, f"ping {t.bridge_ipv4}: exit {r.code}\n{r.output}"

    ok, evidence = wait_until(probe, timeout_s)
    return ok, excerpt(evidence)


def stop(t: Target, timeout_s: float) -> tuple[bool, str]:
    """The instance shuts down cleanly (no force) within the timeout."""
    started = time.monotonic()
    try:
        t.inst.stop(timeout=max(1, round(timeout_s)), force=False, wait=True)
    except LXDAPIException as exc:
        return False, f"clean stop failed after {time.monotonic() - started:.1f}s: {exc}"
    t.inst.sync()
    took = f"{time.monotonic() - started:.1f}s"
    return t.inst.status == "Stopped", f"status {t.inst.status} after {took}"


def command(spec: CommandCheck, t: Target) -> tuple[bool, str]:
    """A user check: exit code as expected and, if given, stdout matches the pattern."""
    r = run(t.inst, ["/bin/sh", "-c", spec.command], spec.timeout_s)
    problems = []
    if r.timed_out:
        problems.append(f"timed out after {spec.timeout_s:.0f}s")
    elif r.code != spec.expect_exit:
        problems.append(f"exit {r.code}, expected {spec.expect_exit}")
    if spec.stdout_pattern is not None and not re.search(spec.stdout_pattern, r.stdout):
        problems.append(f"stdout does not match /{spec.stdout_pattern}/")
    verdict = "; ".join(problems) or f"exit {r.code}" + (
        f", stdout matches /{spec.stdout_pattern}/" if spec.stdout_pattern else ""
    )
    return not problems, excerpt(f"{verdict}\n{r.output}")


class Builtin(NamedTuple):
    run: Callable[[Target, float], tuple[bool, str]]
    timeout_s: float  # the default; polled checks poll until then, never sleep blindly


BUILTIN: dict[BuiltinKind, Builtin] = {
    "boots": Builtin(boots, 30),
    "init": Builtin(init, 120),
    "ipv4": Builtin(ipv4, 60),
    "ipv6": Builtin(ipv6, 60),
    "dns": Builtin(dns, 30),
    "gateway": Builtin(gateway, 30),
    "stop": Builtin(stop, 60),
}


def _builtin(check: BuiltinCheck) -> Check:
    builtin = BUILTIN[check.kind]

    def run_it(t: Target) -> tuple[bool, str]:
        return builtin.run(t, check.timeout_s or builtin.timeout_s)

    stops = check.kind == "stop"
    return Check(check.name, run_it, rerun_here=not stops, stops=stops)


def suite(checks: list[BuiltinCheck | CommandCheck]) -> list[Check]:
    """The runnable checks in declared order, except that `stop` always runs last. A user
    command may not be safe to run twice on one instance: after a fault it gets a new one."""
    ordered = sorted(checks, key=lambda c: c.kind == "stop")
    return [
        Check(c.name, partial(command, c), rerun_here=False)
        if isinstance(c, CommandCheck)
        else _builtin(c)
        for c in ordered
    ]
