"""simplestreams feeds: one base URL per channel (`<server>/channels/<channel>/`) and
per private credential (`<server>/feeds/<secret>/`).

A channel feed lists both metadata ftypes (LXD and Incus each pick theirs); a
credential's feed lists only its flavour's. LXD reads `streams/v1/index.json`, then
`streams/v1/images.json`, then fetches each item at `<base>/<path>`. A feed is
rendered once per catalog change (every change writes an Event, so the newest event
id is the feed's generation) and served from memory with an ETag until the next change.
"""

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from core.arch import to_debian
from core.catalog import Channel, Flavour, VersionState
from server_api.models import Event, Image, Version, VersionArch, utcnow


@dataclass(frozen=True)
class Feed:
    generation: int
    index: bytes
    images: bytes
    etag: str
    files: frozenset[str]  # sha256 of every file the feed lists: what the channel may serve


def _product(image: Image, arch: str) -> dict:
    return {
        "aliases": ",".join(image.aliases),
        "arch": to_debian(arch),
        "os": image.os,
        "release": image.release,
        "release_title": image.release_title or image.release,
        "variant": image.variant,
        "requirements": image.requirements,
        "versions": {},
    }


METADATA_FTYPES = {Flavour.lxd: "lxd.tar.xz", Flavour.incus: "incus.tar.xz"}


def render(session: Session, channel: Channel, flavour: Flavour | None, generation: int) -> Feed:
    """The feed of one channel; `flavour` None lists the metadata for both clients."""
    ftypes = [METADATA_FTYPES[flavour]] if flavour else list(METADATA_FTYPES.values())
    # Plain rows, not ORM objects: a 10,000-version feed renders several times faster.
    rows = session.execute(
        sa.select(
            col(Version.image),
            col(Version.serial),
            col(VersionArch.arch),
            col(VersionArch.fingerprint),
            col(VersionArch.metadata_sha256),
            col(VersionArch.metadata_size),
            col(VersionArch.rootfs_sha256),
            col(VersionArch.rootfs_size),
        )
        .join(VersionArch, col(VersionArch.version_id) == col(Version.id))
        .where(col(Version.state) == VersionState(channel.value))
    ).all()
    images_by_name = {i.name: i for i in session.exec(select(Image))}
    products: dict[str, dict] = {}
    files: set[str] = set()
    for varch in rows:
        image = images_by_name[varch.image]
        pid = f"{image.os}:{image.release}:{to_debian(varch.arch)}:{image.variant}"
        product = products.setdefault(pid, _product(image, varch.arch))
        meta = {
            "path": f"files/{varch.metadata_sha256}",
            "sha256": varch.metadata_sha256,
            "size": varch.metadata_size,
            "combined_squashfs_sha256": varch.fingerprint,
        }
        product["versions"][varch.serial] = {
            "items": {ftype: meta | {"ftype": ftype} for ftype in ftypes}
            | {
                "root.squashfs": {
                    "ftype": "squashfs",
                    "path": f"files/{varch.rootfs_sha256}",
                    "sha256": varch.rootfs_sha256,
                    "size": varch.rootfs_size,
                },
            }
        }
        files.update((varch.metadata_sha256, varch.rootfs_sha256))
    images = {
        "content_id": f"icefloe:{channel.value}" + (f":{flavour.value}" if flavour else ""),
        "datatype": "image-downloads",
        "format": "products:1.0",
        "products": dict(sorted(products.items())),
    }
    index = {
        "format": "index:1.0",
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "products": sorted(products),
            }
        },
    }
    # Compact: json's C encoder only runs without indent, and the feed is a third smaller.
    images_bytes = json.dumps(images, separators=(",", ":")).encode()
    index_bytes = json.dumps(index, separators=(",", ":")).encode()
    etag = hashlib.sha256(index_bytes + images_bytes).hexdigest()[:32]
    return Feed(generation, index_bytes, images_bytes, f'"{etag}"', frozenset(files))


class FeedCache:
    """Rendered feeds per (channel, flavour), re-rendered only when the catalog generation
    moves. Credentials are not part of the key: each request resolves its credential to
    a (channel, flavour) first, so revoking or moving one takes effect at once."""

    def __init__(
        self, on_render: Callable[[Channel, Flavour | None], None] = lambda *_: None
    ) -> None:
        self._feeds: dict[tuple[Channel, Flavour | None], Feed] = {}
        self._lock = threading.Lock()
        self._on_render = on_render  # metrics count renders

    def get(self, session: Session, channel: Channel, flavour: Flavour | None = None) -> Feed:
        generation = session.exec(select(func.max(Event.id))).one() or 0
        feed = self._feeds.get((channel, flavour))
        if feed is None or feed.generation != generation:
            with self._lock:
                feed = self._feeds.get((channel, flavour))
                if feed is None or feed.generation != generation:
                    feed = render(session, channel, flavour, generation)
                    self._feeds[channel, flavour] = feed
                    self._on_render(channel, flavour)
        return feed


def left_within(session: Session, channel: Channel, sha256: str, seconds: int) -> bool:
    """Whether a version that lists the file left `channel` in the last `seconds` (its
    events say when): a host that read the channel's index before still lists the file."""
    listed = VersionState(channel.value)
    return (
        session.exec(
            select(Event.id)
            .join(VersionArch, col(VersionArch.version_id) == col(Event.version_id))
            .where(
                col(Event.from_state) == listed,
                col(Event.to_state) != listed,
                col(Event.at) >= utcnow() - timedelta(seconds=seconds),
                or_(
                    col(VersionArch.metadata_sha256) == sha256,
                    col(VersionArch.rootfs_sha256) == sha256,
                ),
            )
            .limit(1)
        ).first()
        is not None
    )
