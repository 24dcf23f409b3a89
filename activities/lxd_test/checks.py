"""Checks run inside a started instance. Each returns (passed, evidence)."""

from collections.abc import Callable

from pylxd.exceptions import LXDAPIException
from pylxd.models import Instance

from activities.lxd_test.runner import run, wait_until

Check = Callable[[Instance], tuple[bool, str]]


def boots(inst: Instance) -> tuple[bool, str]:
    """The instance runs and answers exec."""

    def probe() -> tuple[bool, str]:
        try:
            code, out = run(inst, ["/bin/sh", "-c", "echo alive; cat /proc/1/comm"], 10)
        except (LXDAPIException, OSError) as exc:
            return False, f"exec failed: {exc}"
        return code == 0, f"exit {code}: {out}"

    return wait_until(probe, 30)


CHECKS: dict[str, Check] = {"boots": boots}
