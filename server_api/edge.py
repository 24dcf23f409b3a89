"""What nginx reads to send a private feed from the static trees without asking the server.

A Python check on every private feed request caps them well below what nginx serves (a
no-op request through the server is 0.28x of a static file), so the project's nginx
checks the credential itself (deploy/nginx/icefloe.js) from two kinds of small files
under the static dir:

    credentials/<sha256 of the secret>  {"tree": "testing-lxd", "expires": 1767225600|null}
                                        one per usable credential; never the secret
    changed                             the newest catalog change (event id) a request
                                        through the server may have seen answered

A credential's file is written (beside, then renamed) or removed after the commit that
changes it and before the request or command answers, under a lock and from the row as
committed then: whoever writes last writes the newest state, so revoking, expiring or
moving a credential applies to the very next request. Anything nginx cannot vouch for
(no file, expired, the trees older than `changed`) goes to the server as before.
"""

import fcntl
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import UOWTransaction
from sqlmodel import Session, select

from core.catalog import Channel, Flavour
from server_api.feeds import generation
from server_api.models import Event, FeedCredential
from server_api.static import atomic_write, tree_name

CHANGED_KEY = "icefloe_event"  # session.info: a catalog change was flushed, not committed yet


class EdgeFiles:
    """The credential files and the `changed` mark under the static dir `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.credentials = root / "credentials"
        self._engine: Engine | None = None  # the one whose commits `watch` follows

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.credentials.is_dir():
            self.credentials.mkdir(parents=True, exist_ok=True)
            self.credentials.chmod(0o711)  # nginx's user opens a file it names; nobody lists
        with (self.credentials / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield

    def _write(self, path: Path, data: bytes) -> None:
        # Not `.tmp-*`: the static trees' writer removes those as a killed writer's.
        atomic_write(path, data, prefix=".new")

    def _put(self, row: FeedCredential) -> bool:
        """Write or remove `row`'s file; whether it is usable."""
        path = self.credentials / row.secret_sha256
        expires = None
        if row.expires_at is not None:
            at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            expires = math.floor(at.timestamp())  # rounded down: nginx never outlasts the server
        if row.revoked_at is not None or (expires is not None and expires <= time.time()):
            path.unlink(missing_ok=True)
            return False
        tree = tree_name(Channel(row.channel), Flavour(row.flavour))  # str as loaded
        self._write(path, orjson.dumps({"tree": tree, "expires": expires}))
        return True

    def sync(self, session: Session, row: FeedCredential) -> None:
        """The file of `row` as the catalog has it now (call after the commit)."""
        with self._locked():
            session.refresh(row)
            self._put(row)

    def resync(self, session: Session) -> None:
        """Every usable credential's file from the catalog; any other file goes (a killed
        writer's too). Raises `changed` to the catalog's generation."""
        with self._locked():
            rows = session.exec(select(FeedCredential)).all()
            keep = {row.secret_sha256 for row in rows if self._put(row)}
            for path in self.credentials.iterdir():
                if path.name != ".lock" and path.name not in keep:
                    path.unlink(missing_ok=True)
        self.changed(generation(session))

    def shown_changed(self) -> int:
        try:
            return int((self.root / "changed").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def changed(self, newest: int) -> None:
        """Raise the `changed` mark to `newest` (never lowers it)."""
        with self._locked():
            if newest > self.shown_changed():
                self._write(self.root / "changed", str(newest).encode())

    def watch(self, engine: Engine) -> None:
        """Raise `changed` after each commit of `engine` that wrote a catalog event, before
        the request that made it answers."""
        self._engine = engine
        event.listen(OrmSession, "after_flush", self._flushed)
        event.listen(OrmSession, "after_commit", self._committed)
        event.listen(OrmSession, "after_rollback", self._rolled_back)

    def unwatch(self) -> None:
        event.remove(OrmSession, "after_flush", self._flushed)
        event.remove(OrmSession, "after_commit", self._committed)
        event.remove(OrmSession, "after_rollback", self._rolled_back)

    def _flushed(self, session: OrmSession, _: UOWTransaction) -> None:
        if session.bind is not self._engine:
            return
        ids = [obj.id for obj in session.new if isinstance(obj, Event) and obj.id is not None]
        if ids:
            session.info[CHANGED_KEY] = max([*ids, session.info.get(CHANGED_KEY, 0)])

    # Each server's listeners see every session of the process (tests run several servers
    # in one): a commit or rollback is only this one's to handle if it was on its engine.
    def _committed(self, session: OrmSession) -> None:
        if session.bind is not self._engine:
            return
        if (newest := session.info.pop(CHANGED_KEY, None)) is not None:
            self.changed(newest)

    def _rolled_back(self, session: OrmSession) -> None:
        if session.bind is self._engine:
            session.info.pop(CHANGED_KEY, None)
