"""Rootfs deltas: when a version is published, an xdelta3 (vcdiff) delta of each arch's
squashfs from an earlier version of the same image and arch. Feeds list it as the
`squashfs.vcdiff` item with `delta_base` (the base's serial), which LXD and Incus read:
a host that has the base cached downloads the delta and patches it, not the whole
squashfs. A delta only saves bytes, so one that cannot be made (no base, xdelta3 failed
or too slow, no smaller than the squashfs) is logged and left out; the publish stands.
"""

import logging
import subprocess

from sqlalchemy import case
from sqlmodel import Session, col, select

from core.catalog import VersionState
from server_api.models import Blob, Version, VersionArch
from server_api.store import FileStore

DELTA_TIMEOUT_S = 600
# xdelta3 finds matches only within its source window (64 MiB by default): a window as
# large as the base finds them across a whole Debian rootfs.
MAX_WINDOW = 1 << 30
log = logging.getLogger(__name__)


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


def make_delta(store: FileStore, base_sha256: str, new_sha256: str) -> tuple[str, int] | None:
    """xdelta3's delta from one stored file to another, stored: (sha256, size), or None."""
    base = store.path(base_sha256)
    made = store.incoming_path()
    try:
        window = min(MAX_WINDOW, max(1 << 23, base.stat().st_size))
        # -S none: no secondary compression, which every xdelta3 build decodes.
        argv = ["xdelta3", "-e", "-f", "-S", "none", "-B", str(window), "-s", str(base)]
        subprocess.run(
            [*argv, str(store.path(new_sha256)), str(made)],
            check=True,
            capture_output=True,
            timeout=DELTA_TIMEOUT_S,
        )
        if made.stat().st_size >= store.path(new_sha256).stat().st_size:
            log.info("delta %s -> %s is no smaller: left out", base_sha256, new_sha256)
            made.unlink()
            return None
        return store.add(made)
    except (OSError, subprocess.SubprocessError) as e:
        made.unlink(missing_ok=True)
        detail = getattr(e, "stderr", b"") or b""
        log.warning("no delta %s -> %s: %s %s", base_sha256, new_sha256, e, detail[-200:])
        return None


def add_deltas(session: Session, store: FileStore, version: Version) -> None:
    """A delta for each arch of a just-published `version` that has a base. Runs before the
    version enters a channel (whose transition re-renders the feeds that list it)."""
    arches = session.exec(select(VersionArch).where(VersionArch.version_id == version.pk)).all()
    for varch in arches:
        found = delta_base(session, version, varch.arch)
        if found is None:
            continue
        serial, base_sha256 = found
        made = make_delta(store, base_sha256, varch.rootfs_sha256)
        if made is None:
            continue
        sha256, size = made
        if session.get(Blob, sha256) is None:
            session.add(Blob(sha256=sha256, size=size))
        varch.delta_base, varch.delta_sha256, varch.delta_size = serial, sha256, size
        session.add(varch)
        session.commit()
