"""Rootfs deltas: for each published version, an xdelta3 (vcdiff) delta of each arch's
squashfs from an earlier version of the same image and arch. Feeds list it as the
`squashfs.vcdiff` item with `delta_base` (the base's serial), which LXD and Incus read:
a host that has the base cached downloads the delta and patches it, not the whole
squashfs.

A delta only saves bytes, so nothing waits for it: a publish answers as soon as its
version is committed, its arches `pending`, and a host that refreshes before the delta
lands downloads the whole squashfs. Each server process runs one `DeltaMaker` thread, so
a burst of publishes runs one xdelta3 (with a window up to 1 GiB) at a time per process.
It claims a pending arch in the catalog with a conditional update (servers sharing a
catalog and store never make the same delta twice), renews the claim while xdelta3 runs,
and records the outcome once: `made`, with an Event, which moves the catalog generation
as any change does (the feeds' render cache, the static trees and nginx's `changed` mark
follow); or `none` with why (no base, xdelta3 failed or too slow, no smaller than the
squashfs), never tried again. A claim nobody renewed for `delta_lease_s` (its server was
killed) is taken over, and a starting server picks up whatever is still pending.
"""

import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple, cast

from sqlalchemy import ColumnElement, CursorResult, and_, case, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from core.catalog import DeltaState, VersionState
from server_api.locks import locked
from server_api.models import Blob, Event, Version, VersionArch, utcnow
from server_api.store import FileStore

DELTA_TIMEOUT_S = 600
# xdelta3 finds matches only within its source window (64 MiB by default): a window as
# large as the base finds them across a whole Debian rootfs.
MAX_WINDOW = 1 << 30
CHECK_S = 0.5  # how often a running xdelta3's claim is looked after
ACTOR = "icefloe-server"  # the actor of the events that record a delta
log = logging.getLogger(__name__)


class Lost(Exception):
    """The claim on an arch is gone (the server stops, or another took over the lease)."""


class Outcome(NamedTuple):
    state: DeltaState
    detail: str = ""
    base: str | None = None
    sha256: str | None = None
    size: int | None = None


def delta_base(session: Session, version: Version, arch: str) -> tuple[str, str] | None:
    """The base for a delta to `version`'s `arch`: (serial, rootfs sha256) of the newest
    earlier active version with its files, else of the newest earlier one. Active first,
    as that is what most hosts have cached."""
    return session.execute(
        select(Version.serial, VersionArch.rootfs_sha256)
        .join(VersionArch, col(VersionArch.version_id) == col(Version.id))
        .where(
            Version.image == version.image,
            col(Version.serial) < version.serial,
            VersionArch.arch == arch,
            col(Version.files_deleted_at).is_(None),
        )
        .order_by(
            case((col(Version.state) == VersionState.active, 0), else_=1),
            col(Version.serial).desc(),
        )
        .limit(1)
    ).first()


def make_delta(
    store: FileStore, base_sha256: str, new_sha256: str, alive: Callable[[], bool]
) -> tuple[str, int] | str:
    """xdelta3's delta from one stored file to another, stored: (sha256, size), or why
    not. `alive` is asked every CHECK_S while xdelta3 runs: False kills it (raises Lost)."""
    base, new = store.path(base_sha256), store.path(new_sha256)
    made = store.incoming_path()
    try:
        window = min(MAX_WINDOW, max(1 << 23, base.stat().st_size))
        # -S none: no secondary compression, which every xdelta3 build decodes.
        argv = ["xdelta3", "-e", "-f", "-S", "none", "-B", str(window), "-s", str(base)]
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(
                [*argv, str(new), str(made)], stdout=subprocess.DEVNULL, stderr=err
            ) as proc,
        ):
            deadline = time.monotonic() + DELTA_TIMEOUT_S
            try:
                while not _exited(proc, CHECK_S):
                    os.utime(made)  # alive, for the store's `clean_incoming`
                    if time.monotonic() > deadline:
                        return f"xdelta3 took over {DELTA_TIMEOUT_S} s"
                    if not alive():
                        raise Lost
            finally:
                if proc.poll() is None:
                    proc.kill()  # and Popen's exit waits for it
            if proc.returncode != 0:
                err.seek(0)
                said = err.read()[-200:].decode(errors="replace").strip()
                return f"xdelta3 failed (exit {proc.returncode}): {said}"
        if made.stat().st_size >= new.stat().st_size:
            return "no smaller than the squashfs"
        return store.add(made)
    except OSError as e:  # a file collected meanwhile, no xdelta3
        return f"xdelta3 could not run: {e}"
    finally:
        made.unlink(missing_ok=True)


def _exited(proc: subprocess.Popen, within_s: float) -> bool:
    try:
        proc.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        return False
    return True


class DeltaMaker:
    """The deltas of one server process, made by one thread: woken by this process's
    publishes, and every `poll_s` for other servers' and for claims whose lease lapsed."""

    def __init__(self, engine: Engine, store: FileStore, lease_s: float, poll_s: float) -> None:
        self.engine = engine
        self.store = store
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # in claims, for operators
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """A new thread each time: uvicorn may run the app's lifespan again after a stop."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="deltas", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop after killing a running xdelta3: its arch is released for another server."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.make_next():
                    pass
            except Exception:  # the catalog is unreachable: the next wake or poll tries again
                log.exception("making deltas failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _claimable(self) -> ColumnElement[bool]:
        stale = utcnow() - timedelta(seconds=self.lease_s)
        return and_(
            col(VersionArch.delta_state) == DeltaState.pending,
            or_(col(VersionArch.delta_claim).is_(None), col(VersionArch.delta_claimed_at) < stale),
        )

    def _claim(self, session: Session) -> tuple[int, str] | None:
        """Claim the oldest pending arch nobody holds: (its id, the claim), or None."""
        candidates = session.exec(
            select(VersionArch.id).where(self._claimable()).order_by(col(VersionArch.id)).limit(20)
        ).all()
        for pk in candidates:
            claim = f"{self.owner}:{uuid.uuid4().hex[:12]}"
            took = session.execute(
                update(VersionArch)
                .where(col(VersionArch.id) == pk, self._claimable())
                .values(delta_claim=claim, delta_claimed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if cast(CursorResult, took).rowcount == 1 and pk is not None:
                return pk, claim
        return None

    def _held(self, pk: int, claim: str, **values: object) -> bool:
        """Update the arch while `claim` still holds it; whether it did."""
        with Session(self.engine) as session:
            done = session.execute(
                update(VersionArch)
                .where(col(VersionArch.id) == pk, col(VersionArch.delta_claim) == claim)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return cast(CursorResult, done).rowcount == 1

    def _keeper(self, pk: int, claim: str) -> Callable[[], bool]:
        """`alive` for make_delta: renews the claim every third of the lease."""
        renewed = time.monotonic()

        def alive() -> bool:
            nonlocal renewed
            if self._stop.is_set():
                return False
            if time.monotonic() - renewed < self.lease_s / 3:
                return True
            renewed = time.monotonic()
            return self._held(pk, claim, delta_claimed_at=utcnow())

        return alive

    def make_next(self) -> bool:
        """Claim one pending arch and settle its delta; False when none is left to claim."""
        with Session(self.engine) as session:
            claimed = self._claim(session)
            if claimed is None:
                return False
            pk, claim = claimed
            try:
                outcome = self._make(session, pk, claim)
            except Lost:
                if self._stop.is_set():  # for another server, or this one when it starts
                    self._held(pk, claim, delta_claim=None, delta_claimed_at=None)
                return True
            except SQLAlchemyError:  # the catalog, not the delta: the lease lapses, and a retry
                raise
            except Exception as e:  # never again: one arch must not stop the others
                log.exception("no delta for version arch %d", pk)
                session.rollback()
                outcome = Outcome(DeltaState.none, f"error: {e}"[:500])
            self._record(session, pk, claim, outcome)
        return True

    def _make(self, session: Session, pk: int, claim: str) -> Outcome:
        varch = session.get(VersionArch, pk)
        version = session.get(Version, varch.version_id) if varch else None
        if varch is None or version is None:
            raise RuntimeError(f"version arch {pk} is gone")
        if version.files_deleted_at is not None:
            return Outcome(DeltaState.none, "its files were collected")
        found = delta_base(session, version, varch.arch)
        rootfs = varch.rootfs_sha256
        session.commit()  # no transaction stays open while xdelta3 runs
        if found is None:
            return Outcome(DeltaState.none, "no earlier version of this arch with its files")
        serial, base_sha256 = found
        made = make_delta(self.store, base_sha256, rootfs, self._keeper(pk, claim))
        if isinstance(made, str):
            log.warning(
                "no delta for %s %s %s from %s: %s",
                version.image,
                version.serial,
                varch.arch,
                serial,
                made,
            )
            return Outcome(DeltaState.none, f"from {serial}: {made}")
        return Outcome(DeltaState.made, "", serial, *made)

    def _record(self, session: Session, pk: int, claim: str, outcome: Outcome) -> None:
        """The outcome, if the claim still holds; a delta made with an event, under the
        version's row, so the event names the state the version has."""
        varch = session.get(VersionArch, pk)
        if varch is None:
            return
        (version,) = locked(session, select(Version).where(Version.id == varch.version_id))
        done = session.execute(
            update(VersionArch)
            .where(col(VersionArch.id) == pk, col(VersionArch.delta_claim) == claim)
            .values(
                delta_state=outcome.state,
                delta_detail=outcome.detail,
                delta_base=outcome.base,
                delta_sha256=outcome.sha256,
                delta_size=outcome.size,
                delta_claim=None,
                delta_claimed_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult, done).rowcount != 1:  # another server took it over meanwhile
            session.rollback()
            return
        if outcome.sha256 is not None and outcome.size is not None:
            if session.get(Blob, outcome.sha256) is None:
                session.add(Blob(sha256=outcome.sha256, size=outcome.size))
            session.add(
                Event(
                    version_id=version.pk,
                    actor=ACTOR,
                    from_state=version.state,
                    to_state=version.state,
                    reason=f"delta for {varch.arch} from {outcome.base} made "
                    f"({outcome.size} bytes)",
                )
            )
        session.commit()
