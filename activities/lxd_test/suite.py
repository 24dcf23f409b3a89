"""Run a check suite in a fresh instance: launch, each check in order, delete.

Each check ends in a verdict about the image (recorded passed or failed, or not
applicable when it raises NotApplicable) or in a MachineryFault (see faults.py), never in a
verdict made up from a machinery error.
"""

import contextlib
import time
from collections.abc import Callable
from typing import NamedTuple

import pylxd
from pylxd.exceptions import NotFound

from activities.lxd_test.execs import POLL_INTERVAL, describe
from activities.lxd_test.faults import LXD_ERRORS, MachineryFault, component
from activities.lxd_test.instances import (
    Beat,
    LaunchSpec,
    Target,
    TestSetupError,
    launch,
    remove,
    target,
)
from core.catalog import AssessmentState
from core.pipeline import CheckOutcome
from core.spec import check_key

CheckFn = Callable[[Target], tuple[bool, str]]
# An instance that stopped under a check is being deleted (a fault) or died by itself (a
# verdict): an instance deleted under us is gone within this long.
VANISH_GRACE_S = 5.0


class NotApplicable(Exception):
    """Raised by a check that does not apply to this image or host; says why. Recorded as
    not applicable, never as passed."""


class Check(NamedTuple):
    name: str
    run: CheckFn
    rerun_here: bool = True  # a probe: after a fault it may run again on the same instance
    stops: bool = False  # it stops the instance, so a stopped instance is its verdict


def run_suite(
    client: pylxd.Client,
    spec: LaunchSpec,
    checks: list[Check],
    report: Callable[[CheckOutcome], None],
    beat: Beat,
    launch_timeout_s: float = 600,
    delete_later: Callable[[str], None] | None = None,
) -> None:
    """Launch, run each check in order reporting running then its verdict, delete.

    The instance is deleted whatever happens, cancellation included; once every verdict is
    reported, its name goes to `delete_later` instead, if given (see cleanup.py). A fault
    raises MachineryFault; the check it interrupted is reported still running, the fault as
    its evidence (a launch fault reports nothing: no check ran).
    """
    judged = False
    try:
        try:
            inst = launch(client, spec, launch_timeout_s, beat)
            where = target(client, inst, beat)
        except TestSetupError as exc:
            raise MachineryFault("launch", str(exc)) from exc
        except LXD_ERRORS as exc:
            raise MachineryFault("launch", describe(exc)) from exc
        for check in checks:
            key = check_key(check.name, spec.privilege)
            report(CheckOutcome(check=key, state=AssessmentState.running))
            started = time.monotonic()
            try:
                ok, evidence = _verdict(client, spec.name, check, where, beat)
                state = AssessmentState.passed if ok else AssessmentState.failed
            except NotApplicable as why:
                state, evidence = AssessmentState.not_applicable, str(why)
            except MachineryFault as fault:
                interrupted = f"test machinery fault, the check will be retried: {fault}"
                with contextlib.suppress(MachineryFault):  # the image server may be the fault
                    report(
                        CheckOutcome(check=key, state=AssessmentState.running, evidence=interrupted)
                    )
                raise
            report(
                CheckOutcome(
                    check=key,
                    state=state,
                    evidence=evidence,
                    duration_s=time.monotonic() - started,
                )
            )
        judged = True
    finally:
        if judged and delete_later is not None:
            delete_later(spec.name)
        else:
            remove(client, spec.name)


def _verdict(
    client: pylxd.Client, name: str, check: Check, where: Target, beat: Beat
) -> tuple[bool, str]:
    """Run a check to its verdict. A failure is the image's only if the instance is still
    there; an error on a running instance is a fault, tried once more here if sound."""
    tried_again = False
    while True:
        try:
            ok, evidence = check.run(where)
        except LXD_ERRORS as exc:
            fault: Exception | None = exc
            ok, evidence = False, describe(exc)
        else:
            if ok:
                return ok, evidence
            fault = None
        status = _status(client, name, grace=not check.stops)
        if status is None:
            raise MachineryFault("instance", f"instance {name} vanished during {check.name}")
        if status == "Frozen":  # the host froze it (`lxc pause`): the image cannot
            raise MachineryFault("instance", f"instance {name} was frozen during {check.name}")
        if status != "Running" and not check.stops:
            return False, f"the instance stopped by itself during the check ({status})\n{evidence}"
        if fault is None:
            return False, evidence
        if tried_again or not check.rerun_here:
            raise MachineryFault(component(fault), evidence) from fault
        tried_again = True
        beat(f"{check.name}: {evidence}; trying again on the same instance")


def _status(client: pylxd.Client, name: str, grace: bool) -> str | None:
    """The instance's status, None once it is gone. A stopped one may be on its way out:
    with `grace`, wait a little for that before calling it stopped."""
    deadline = time.monotonic() + (VANISH_GRACE_S if grace else 0)
    while True:
        try:
            status = client.instances.get(name).status
        except NotFound:
            return None
        except LXD_ERRORS as exc:
            raise MachineryFault("LXD API", f"reading instance {name}: {describe(exc)}") from exc
        if status == "Running" or time.monotonic() > deadline:
            return status
        time.sleep(POLL_INTERVAL)
