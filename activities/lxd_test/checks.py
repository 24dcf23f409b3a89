"""The check suite: what each declared check does inside a started instance.

Each check returns (passed, evidence); evidence is what a person needs to see why. One that
does not apply to the image or host raises NotApplicable with the reason instead.
Anything that waits polls with the check's deadline; nothing sleeps a fixed time.
"""

import json
import re
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from pylxd.exceptions import LXDAPIException

from activities.lxd_test.execs import POLL_INTERVAL, ExecResult, describe, run, wait_until
from activities.lxd_test.faults import LXD_ERRORS, MachineryFault
from activities.lxd_test.instances import Target
from activities.lxd_test.suite import Check, NotApplicable
from core.spec import DEFAULT_CHECKS, BuiltinCheck, BuiltinKind, CommandCheck

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


def pid1(t: Target) -> str:
    """The name of the instance's init (`systemd`, busybox's `init`, ...)."""
    return run(t.inst, ["cat", "/proc/1/comm"], 10).stdout.strip()


def bus_not_up(r: ExecResult) -> bool:
    """systemctl could not reach systemd yet (right after a start): no state, only the
    connect error, worded "Failed to connect to bus" before systemd 254 and "Failed to
    connect to system scope bus via local transport" since."""
    return not r.stdout.strip() and "Failed to connect to" in r.stderr


def _settle(t: Target, timeout_s: float) -> ExecResult:
    """Wait for systemd to finish booting (`is-system-running --wait`) within the timeout.
    Right after start, systemd's bus may not be up yet: then it asks again."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = run(t.inst, ["systemctl", "is-system-running", "--wait"], deadline - time.monotonic())
        if not bus_not_up(r) or time.monotonic() >= deadline:
            return r
        time.sleep(POLL_INTERVAL)


def _failed_units(t: Target) -> str:
    return run(t.inst, ["systemctl", "--failed", "--no-legend", "--plain", "--no-pager"], 10).output


def init(t: Target, timeout_s: float) -> tuple[bool, str]:
    """systemd reaches `running` (degraded: the failed units are the evidence); else pid 1 lives."""
    name = pid1(t)
    if name != "systemd":
        status = run(t.inst, ["cat", "/proc/1/status"], 10).stdout
        state = next((s for s in status.splitlines() if s.startswith("State:")), "State: ?")
        alive = name != "" and " Z " not in state
        return alive, f"pid 1 is {name or '?'} ({state.strip()})"
    started = time.monotonic()
    r = _settle(t, timeout_s)
    state = (r.stdout.strip().splitlines() or ["?"])[-1]
    took = f"{time.monotonic() - started:.1f}s"
    if r.code == 0 and state == "running":
        return True, f"systemd: running after {took}"
    failed = _failed_units(t)
    if r.timed_out:
        jobs = run(t.inst, ["systemctl", "list-jobs", "--no-pager"], 10).output
        return False, excerpt(
            f"systemd still not running after {timeout_s:.0f}s\npending jobs:\n{jobs}\n"
            f"failed units:\n{failed or '(none)'}"
        )
    return False, excerpt(f"systemd: {state} after {took}\nfailed units:\n{failed}")


def _interface(t: Target) -> dict:
    """LXD's view of the instance's interface: state and addresses."""
    return (t.inst.state().network or {}).get(t.interface) or {}


def _addresses(t: Target, family: str, net: dict | None = None) -> list[str]:
    """The interface's global addresses of a family (`inet`, `inet6`), with netmask."""
    return [
        f"{a['address']}/{a['netmask']}"
        for a in (net if net is not None else _interface(t)).get("addresses", [])
        if a.get("family") == family and a.get("scope") == "global"
    ]


def _global_address(t: Target, family: str, timeout_s: float) -> tuple[bool, str]:
    """Poll LXD's view of the interface for a global address; on failure show the inside view."""

    def probe() -> tuple[bool, str]:
        net = _interface(t)
        found = _addresses(t, family, net)
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
    """Only where the network offers IPv6; otherwise not applicable, saying why."""
    if t.bridge_ipv6 is None:
        raise NotApplicable(f"network {t.network or '?'} offers no IPv6")
    return _global_address(t, "inet6", timeout_s)


# getent goes through the C library's resolver (nsswitch, resolv.conf); busybox images have
# nslookup, which asks resolv.conf's nameserver.
_LOOKUP = 'if command -v getent >/dev/null; then getent hosts "$1"; else nslookup "$1"; fi'


def dns(t: Target, timeout_s: float) -> tuple[bool, str]:
    """A resolver is configured (DHCP writes it, so poll) and resolves the instance's own
    name to its address: the bridge's DNS knows it, so no traffic leaves the host."""
    name = f"{t.inst.name}.{t.dns_domain}" if t.dns_domain else t.inst.name

    def probe() -> tuple[bool, str]:
        r = run(t.inst, ["cat", "/etc/resolv.conf"], 10)
        servers = [s for s in r.stdout.splitlines() if s.split()[:1] == ["nameserver"]]
        if not servers:
            return False, f"no nameserver in /etc/resolv.conf:\n{r.output or '(empty)'}"
        found = run(t.inst, ["/bin/sh", "-c", _LOOKUP, "lookup", name], 10)
        own = {a.split("/")[0] for a in _addresses(t, "inet")}
        answers = own & set(found.stdout.split())
        head = "\n".join(servers)
        if found.code == 0 and answers:
            return True, f"{head}\n{name} resolves to {', '.join(sorted(answers))} (this instance)"
        why = f"exit {found.code}" if found.code else f"not to this instance's {sorted(own)}"
        return False, f"{head}\n{name} does not resolve ({why}):\n{found.output or '(no output)'}"

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
    failed = stop_cleanly(t, timeout_s)
    return failed is None, failed or f"status Stopped after {time.monotonic() - started:.1f}s"


def cloud_init(t: Target, timeout_s: float) -> tuple[bool, str]:
    """cloud-init finished (`status --wait`) with status done and no errors; "not applicable"
    in an image without cloud-init, unless the instance was given user data for it."""
    if run(t.inst, ["/bin/sh", "-c", "command -v cloud-init"], 10).code != 0:
        if "cloud-init.user-data" in t.inst.config:
            return False, "the instance was given cloud-init user data, but has no cloud-init"
        raise NotApplicable("the image has no cloud-init")
    started = time.monotonic()
    waited = run(t.inst, ["cloud-init", "status", "--wait", "--long"], timeout_s)
    took = f"{time.monotonic() - started:.1f}s"
    if waited.timed_out:
        return False, excerpt(f"cloud-init not done after {timeout_s:.0f}s\n{waited.output}")
    status = next(
        (
            line.split(":", 1)[1].strip()
            for line in waited.stdout.splitlines()
            if line.startswith("status:")
        ),
        "?",
    )
    errors = _cloud_init_errors(t) if status == "done" else []
    if waited.code == 0 and status == "done" and not errors:
        return True, excerpt(f"cloud-init: done after {took}\n{waited.output}")
    head = excerpt(
        f"cloud-init: {status} (exit {waited.code}) after {took}\n"
        + "".join(f"error: {e}\n" for e in errors)
        + waited.output,
        EXCERPT // 2,
    )
    log = run(t.inst, ["tail", "-n", "30", "/var/log/cloud-init-output.log"], 10).output
    tail = excerpt(log or "(empty)", EXCERPT - len(head) - 40)
    return False, f"{head}\nend of /var/log/cloud-init-output.log:\n{tail}"


def _cloud_init_errors(t: Target) -> list[str]:
    """The errors cloud-init's result file lists (it writes it once every stage ran)."""
    r = run(t.inst, ["cat", "/run/cloud-init/result.json"], 10)
    try:
        result = json.loads(r.stdout)["v1"]
    except (ValueError, KeyError, TypeError):
        return [f"/run/cloud-init/result.json unreadable: {r.output[:200] or '(empty)'}"]
    return [str(e) for e in result.get("errors") or []]


# Lines systemd writes when a process dumps core (a service's main process, or
# systemd-coredump's own report where it is installed).
_CORE_DUMP = re.compile(r"code=dumped|dumped core", re.IGNORECASE)


def journal(t: Target, timeout_s: float) -> tuple[bool, str]:
    """Once systemd has booted, no unit has failed and the journal records no core dump;
    "not applicable" under another init."""
    name = pid1(t)
    if name != "systemd":
        raise NotApplicable(f"pid 1 is {name or '?'}, not systemd")
    _settle(t, timeout_s)
    failed = _failed_units(t)
    lines = run(t.inst, ["journalctl", "--quiet", "--no-pager", "-o", "short-monotonic"], 60)
    if lines.code != 0:
        return False, excerpt(f"journalctl failed (exit {lines.code}):\n{lines.output}")
    dumps = [line for line in lines.stdout.splitlines() if _CORE_DUMP.search(line)]
    read = f"{len(lines.stdout.splitlines())} journal lines read"
    if not failed and not dumps:
        return True, f"no failed units, no core dumps ({read})"
    return False, excerpt(
        f"failed units:\n{failed or '(none)'}\ncore dumps ({read}):\n"
        + ("\n".join(dumps[-20:]) or "(none)")
    )


# An image that ignores init's halt is only known at the timeout; LXD refusing a clean stop
# within a second or two ("shutting down the container failed", seen in the chaos soak on a
# running busybox instance) never got as far as asking the image: that is LXD's failure.
REFUSED_WITHIN_S = 5.0


def stop_cleanly(t: Target, timeout_s: float) -> str | None:
    """Shut the instance down the way `lxc stop` does (init's halt, no force); why not, if not.
    LXD refusing at once is asked once more, then is a fault of the machinery."""
    started = time.monotonic()
    for asked in (1, 2):
        try:
            t.inst.stop(timeout=max(1, round(timeout_s)), force=False, wait=True)
            break
        except LXDAPIException as exc:
            took = time.monotonic() - started
            if took >= min(REFUSED_WITHIN_S, timeout_s):
                return f"clean stop failed after {took:.1f}s: {exc}"
            if asked == 2:
                raise MachineryFault(
                    "LXD API",
                    f"clean stop of {t.inst.name} refused at once, twice: {describe(exc)}",
                ) from exc
            time.sleep(POLL_INTERVAL * 5)
    t.inst.sync()
    if t.inst.status != "Stopped":
        return f"status {t.inst.status} after {time.monotonic() - started:.1f}s"
    return None


def reboot(
    t: Target, timeout_s: float, after: tuple[tuple[BuiltinKind, float], ...] = ()
) -> tuple[bool, str]:
    """Restart the instance as `lxc restart` does (a clean shutdown, then a start) and run the
    suite's probes (`after`: kind, timeout or 0 for its default) again: it must come back as
    it booted."""
    started = time.monotonic()
    before = t.inst.state().pid
    failed = stop_cleanly(t, timeout_s)
    if failed:
        return False, f"restart: {failed}"
    try:
        t.inst.start(wait=True)
    except LXDAPIException as exc:  # it stopped cleanly: starting it again is LXD's job
        raise MachineryFault("LXD API", f"starting {t.inst.name} again: {describe(exc)}") from exc
    lines = [
        f"restarted in {time.monotonic() - started:.1f}s (pid 1 was {before}, now "
        f"{t.inst.state().pid} on the host)"
    ]
    for name, check_timeout_s in (("boots", 0.0), *after):
        check = BUILTIN[name]
        try:
            ok, evidence = check.run(t, check_timeout_s or check.timeout_s)
        except NotApplicable as why:  # it did not apply before the restart either
            lines.append(f"{name}: not applicable: {why}")
            continue
        if not ok:
            failure = f"after the restart, {name} failed:\n{excerpt(evidence, 1000)}"
            return False, excerpt("\n".join([failure, *lines]))
        lines.append(f"{name}: {evidence.splitlines()[0] if evidence else 'passed'}")
    return True, excerpt("\n".join(lines))


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
    "cloud-init": Builtin(cloud_init, 300),
    "journal": Builtin(journal, 120),
    "reboot": Builtin(reboot, 60),  # the clean shutdown; each probe after it has its own
    "stop": Builtin(stop, 60),
}
# What `reboot` runs again once the instance is back (`boots` first, always), in the
# declared order: the declared ones of these.
AFTER_REBOOT: tuple[BuiltinKind, ...] = tuple(
    k for k in DEFAULT_CHECKS if k not in ("boots", "reboot", "stop")
)


def _builtin(check: BuiltinCheck, declared: list[BuiltinCheck | CommandCheck]) -> Check:
    builtin = BUILTIN[check.kind]
    run_it = builtin.run
    if check.kind == "reboot":
        after = tuple(
            (c.kind, c.timeout_s)
            for c in declared
            if isinstance(c, BuiltinCheck) and c.kind in AFTER_REBOOT
        )
        run_it = partial(reboot, after=after)
    stops = check.kind == "stop"
    return Check(
        check.name,
        lambda t: run_it(t, check.timeout_s or builtin.timeout_s),
        rerun_here=not stops,
        stops=stops,
    )


def suite(checks: list[BuiltinCheck | CommandCheck]) -> list[Check]:
    """The runnable checks in declared order, except that `stop` always runs last. A user
    command may not be safe to run twice on one instance: after a fault it gets a new one."""
    ordered = sorted(checks, key=lambda c: c.kind == "stop")
    return [
        Check(c.name, partial(command, c), rerun_here=False)
        if isinstance(c, CommandCheck)
        else _builtin(c, checks)
        for c in ordered
    ]
