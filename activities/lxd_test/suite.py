"""Run a check suite in a fresh instance: launch, each check in order, delete."""

import time
from collections.abc import Callable

import pylxd
from pylxd.exceptions import LXDAPIException

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


def run_suite(
    client: pylxd.Client,
    spec: LaunchSpec,
    checks: list[tuple[str, CheckFn]],
    report: Callable[[CheckOutcome], None],
    beat: Beat,
    launch_timeout_s: float = 600,
) -> None:
    """Launch, run each (name, check) in order reporting running then the result, delete.

    The instance is deleted whatever happens, cancellation included. A launch failure
    fails every check with the reason as evidence.
    """
    try:
        try:
            inst = launch(client, spec, launch_timeout_s, beat)
        except TestSetupError as exc:
            for name, _ in checks:
                key = check_key(name, spec.privilege)
                report(CheckOutcome(check=key, state=AssessmentState.failed, evidence=str(exc)))
            return
        where = target(client, inst, beat)
        for name, check in checks:
            key = check_key(name, spec.privilege)
            report(CheckOutcome(check=key, state=AssessmentState.running))
            started = time.monotonic()
            try:
                ok, evidence = check(where)
            except (LXDAPIException, OSError) as exc:
                ok, evidence = False, f"LXD error: {exc}"
            report(
                CheckOutcome(
                    check=key,
                    state=AssessmentState.passed if ok else AssessmentState.failed,
                    evidence=evidence,
                    duration_s=time.monotonic() - started,
                )
            )
    finally:
        remove(client, spec.name)
