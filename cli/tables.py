"""What the catalog knows, as terminal tables: `icefloe versions` and `icefloe show`.

Plain functions from the API's models to text, so they test without a terminal.
"""

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime

from core.catalog import (
    ArchPackages,
    AssessmentState,
    EventView,
    ImageChecksView,
    ImageCheckView,
    KnownFailureView,
    VersionView,
)

RESULT_ORDER = (
    AssessmentState.passed,
    AssessmentState.failed,
    AssessmentState.not_applicable,
    AssessmentState.running,
)
# Narrower than this, the evidence column would say nothing.
MIN_EVIDENCE = 24


def when(at: datetime) -> str:
    """A time as UTC, to the second (the API's naive times are UTC)."""
    at = at.astimezone(UTC) if at.tzinfo else at
    return f"{at:%Y-%m-%d %H:%M:%S}"


def said(state: AssessmentState) -> str:
    """A result as people read it: `not applicable`, never `not_applicable`."""
    return state.value.replace("_", " ")


def one_line(text: str, width: int) -> str:
    """The first non-empty line, cut to `width` with an ellipsis."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    sizes = widths(headers, rows)
    return [
        indent + "".join(c.ljust(w + 2) for c, w in zip(r[:-1], sizes, strict=False)) + r[-1]
        for r in [headers, *rows]
    ]


def versions_table(image: str, versions: list[VersionView]) -> list[str]:
    """Newest first: serial, state, since when, arches, and how its results stand."""
    if not versions:
        return [f"{image}: no versions"]
    rows = []
    for v in sorted(versions, key=lambda v: v.serial, reverse=True):
        states = [a.state for a in v.assessments]
        counts = [(states.count(s), s) for s in RESULT_ORDER if s in states]
        results = ", ".join(f"{n} {said(state)}" for n, state in counts) or "none yet"
        state = v.state + (" (files deleted)" if v.files_deleted_at else "")
        arches = ", ".join(a.arch for a in v.arches)
        rows.append([v.serial, state, when(v.state_changed_at), arches, results])
    return [
        f"{image}: {len(versions)} version{'s' if len(versions) != 1 else ''}",
        *table(["SERIAL", "STATE", "SINCE (UTC)", "ARCHES", "RESULTS"], rows),
    ]


def check_line(check: ImageCheckView) -> str:
    """The image's newest check that found nothing changed, so built nothing."""
    return f"checked at {when(check.checked_at)} UTC, unchanged since {check.unchanged_since}"


def packages_line(p: ArchPackages) -> str:
    """An arch's package count and what changed since the previous version."""
    if p.packages is None:
        return "  no package manifest"
    since = f"; since {p.previous}: {p.diff.summary()}" if p.diff and p.previous else ""
    return f"  {len(p.packages)} packages{since}"


def version_page(
    version: VersionView,
    events: list[EventView],
    workflow_link: str | None,
    columns: int = 0,
    packages: Sequence[ArchPackages] = (),
) -> list[str]:
    """One version: state since when, its workflow; per arch, its packages (and what
    changed), each check's result with duration, host and the first line of its evidence;
    then its events, oldest first."""
    columns = columns or shutil.get_terminal_size((120, 24)).columns
    v = version
    out = [
        f"{v.image} {v.serial}: {v.state} since {when(v.state_changed_at)} UTC "
        f"(created {when(v.created_at)} UTC)"
    ]
    if v.files_deleted_at:
        out.append(f"files deleted by garbage collection at {when(v.files_deleted_at)} UTC")
    if v.workflow_id:
        out.append(f"workflow {v.workflow_id}" + (f"  {workflow_link}" if workflow_link else ""))
    for arch in v.arches:
        out += ["", f"{arch.arch}  fingerprint {arch.fingerprint}"]
        out += [packages_line(p) for p in packages if p.arch == arch.arch]
        results = [a for a in v.assessments if a.arch == arch.arch]
        if not results:
            out.append("  no check results yet")
            continue
        rows = [
            [
                a.check,
                said(a.state),
                f"{a.duration_s:.2f}s",
                a.host + ("" if a.instance_type == "container" else f" ({a.instance_type})"),
                a.evidence,
            ]
            for a in results
        ]
        headers = ["CHECK", "STATE", "TIME", "HOST", "EVIDENCE"]
        used = 2 + sum(w + 2 for w in widths(headers[:4], [r[:4] for r in rows]))
        width = max(columns - used - 1, MIN_EVIDENCE)
        out += table(headers, [[*r[:4], one_line(r[4], width)] for r in rows], indent="  ")
    out += ["", "events"]
    if not events:
        return [*out, "  none"]
    rows = [
        [
            when(e.at),
            f"{e.from_state or '-'} -> {e.to_state}",
            e.actor,
            "forced" if e.forced else "-",
            e.workflow_id or "-",
            e.reason,
        ]
        for e in sorted(events, key=lambda e: (e.at, e.id))
    ]
    return out + table(["AT (UTC)", "MOVE", "ACTOR", "FORCED", "WORKFLOW", "REASON"], rows, "  ")


def known_failure_line(k: KnownFailureView) -> str:
    """`3  busybox:1.35:default  ipv6 on every arch until ... (why link)  by ops`."""
    expired = "  EXPIRED: required again" if k.expired else ""
    return f"{k.id:>4}  {k.image}  {k.says()}  by {k.actor}{expired}"


def rates_table(rates: ImageChecksView) -> list[str]:
    """Per check: pass rate, passed, failed, not applicable over the newest versions."""
    if not rates.checks:
        return [f"{rates.image}: no check results"]
    rows = [
        [
            c.check,
            f"{c.pass_rate:.0%}" if c.pass_rate is not None else "-",
            str(c.passed),
            str(c.failed),
            str(c.not_applicable),
            "; ".join(f"{k.arch or 'every arch'} until {when(k.until)}" for k in c.known_failures)
            or "-",
        ]
        for c in rates.checks
    ]
    n = len(rates.versions)
    return [
        f"{rates.image}: checks over the newest {n} version{'s' if n != 1 else ''}",
        *table(["CHECK", "PASS RATE", "PASSED", "FAILED", "N/A", "KNOWN FAILURE"], rows),
    ]
