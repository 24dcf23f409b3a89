"""simplestreams feeds: one base URL per channel (`<server>/channels/<channel>/`) and
per private credential (`<server>/feeds/<secret>/`).

A channel feed lists both metadata ftypes (LXD and Incus each pick theirs); a
credential's feed lists only its flavour's. LXD reads `streams/v1/index.json`, then
`streams/v1/images.json`, then fetches each item at `<base>/<path>`. A feed is
rendered once per catalog change (every change writes an Event, so the newest event
id is the feed's generation) and served from memory with an ETag until the next change.
Rendering after a change encodes only the images whose newest event moved (orjson) and
joins the other images' JSON as it was: a change to one image re-renders no other.
"""

import hashlib
import threading
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

import orjson
import sqlalchemy as sa
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from core.arch import to_debian
from core.catalog import Channel, Flavour, VersionState
from core.sbom import SbomFormat
from server_api.models import Event, Image, Version, VersionArch, listed_files, utcnow


@dataclass(frozen=True)
class Feed:
    generation: int
    index: bytes
    images: bytes
    etag: str
    files: frozenset[str]  # sha256 of every file the feed lists: what the channel may serve
    # sha256 -> ftype ("squashfs", "squashfs.vcdiff", ...) for metrics: the parts' own maps
    # chained, as merging 20,000 versions' would double the time to render after a change.
    kinds: Mapping[str, str]

    @cached_property
    def without_deltas(self) -> tuple[bytes, str]:
        """images.json without its delta items, and its ETag (the pipeline's fresh URLs):
        made once per feed, not on every request (0.3 s for a 20 MiB images.json)."""
        catalog = orjson.loads(self.images)
        products = catalog.pop("products")
        for product in products.values():
            for version in product["versions"].values():
                items = version["items"]
                for key in [k for k, item in items.items() if item["ftype"] == "squashfs.vcdiff"]:
                    del items[key]
        body = encode_images(
            orjson.dumps(catalog), [encode_product(pid, p) for pid, p in products.items()]
        )
        return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@dataclass(frozen=True)
class Part:
    """One image's products in one feed, rendered when the image's newest event was `mark`:
    every change to an image or its versions writes an event, so a part whose image has
    the same newest event is still right and is joined into the feed as it is."""

    mark: int
    products: tuple[str, ...]  # product ids
    body: bytes  # the products as members of a JSON object: `"id":{...},\n"id":{...}`
    digest: bytes
    files: frozenset[str]
    kinds: dict[str, str]


METADATA_FTYPES = {Flavour.lxd: "lxd.tar.xz", Flavour.incus: "incus.tar.xz"}
# Past this many changed images one query for the whole channel beats a long IN list.
MAX_SELECTED_IMAGES = 500


def marks(session: Session) -> dict[str, int]:
    """Each image that has versions, with its newest event id (0: none, in a catalog not
    written through the API)."""
    rows = session.execute(
        sa.select(col(Version.image), func.coalesce(func.max(Event.id), 0))
        .outerjoin(Event, col(Event.version_id) == col(Version.id))
        .group_by(col(Version.image))
    )
    return {image: mark for image, mark in rows}


def _product(image: Image, arch: str) -> dict:
    """A product's fields; an image its definition gives no alias answers as
    `os/release/variant`, as on other image servers; requirements go under both names,
    `lxd_requirements` being the one older LXD releases and feed tools read."""
    return {
        "aliases": ",".join(image.aliases or [f"{image.os}/{image.release}/{image.variant}"]),
        "arch": to_debian(arch),
        "os": image.os,
        "release": image.release,
        "release_title": image.release_title or image.release,
        "variant": image.variant,
        "requirements": image.requirements,
        "lxd_requirements": image.requirements,
        "versions": {},
    }


def encode_product(pid: str, product: dict) -> bytes:
    """A product as a member of `products`, each version on a line of its own: a line of a
    clear-signed feed (server_api.sjson) must be no longer than gpg signs whole (19,993 bytes),
    and one version's items are a few hundred bytes whatever the catalog's size."""
    head = orjson.dumps({k: v for k, v in product.items() if k != "versions"})
    versions = b",\n".join(
        orjson.dumps(serial) + b":" + orjson.dumps(version)
        for serial, version in product["versions"].items()
    )
    return orjson.dumps(pid) + b":" + head[:-1] + b',"versions":{\n' + versions + b"}}"


def encode_images(head: bytes, products: list[bytes]) -> bytes:
    """images.json: its `head` fields (a JSON object) and its products, one line apart."""
    return b"".join([head[:-1], b',"products":{\n', b",\n".join(products), b"}}"])


def render_parts(
    session: Session, channel: Channel, flavour: Flavour | None, marks: dict[str, int]
) -> dict[str, Part]:
    """The parts of the images in `marks` (image -> newest event id) in one channel's feed;
    `flavour` None lists the metadata for both clients."""
    ftypes = [METADATA_FTYPES[flavour]] if flavour else list(METADATA_FTYPES.values())
    selected = len(marks) <= MAX_SELECTED_IMAGES
    # Plain rows, not ORM objects: a 10,000-version feed renders several times faster.
    query = (
        sa.select(
            col(Version.image),
            col(Version.serial),
            col(VersionArch.arch),
            col(VersionArch.fingerprint),
            col(VersionArch.metadata_sha256),
            col(VersionArch.metadata_size),
            col(VersionArch.rootfs_sha256),
            col(VersionArch.rootfs_size),
            col(VersionArch.delta_base),
            col(VersionArch.delta_sha256),
            col(VersionArch.delta_size),
            col(VersionArch.manifest_sha256),
            col(VersionArch.manifest_size),
            col(VersionArch.sbom_spdx_sha256),
            col(VersionArch.sbom_spdx_size),
            col(VersionArch.sbom_cdx_sha256),
            col(VersionArch.sbom_cdx_size),
        )
        .join(VersionArch, col(VersionArch.version_id) == col(Version.id))
        .where(col(Version.state) == VersionState(channel.value))
        .order_by(col(Version.image), col(VersionArch.arch), col(Version.serial))
    )
    images = select(Image)
    if selected:
        query = query.where(col(Version.image).in_(marks))
        images = images.where(col(Image.name).in_(marks))
    rows_of: dict[str, list] = {name: [] for name in marks}
    for row in session.execute(query):
        if row.image in rows_of:
            rows_of[row.image].append(row)
    described = {i.name: i for i in session.exec(images) if i.name in rows_of}
    parts = {}
    for name, rows in rows_of.items():
        products: dict[str, dict] = {}
        kinds: dict[str, str] = {}
        for varch in rows:
            image = described[name]
            pid = f"{image.os}:{image.release}:{to_debian(varch.arch)}:{image.variant}"
            product = products.setdefault(pid, _product(image, varch.arch))
            meta = {
                "path": f"files/{varch.metadata_sha256}",
                "sha256": varch.metadata_sha256,
                "size": varch.metadata_size,
                "combined_squashfs_sha256": varch.fingerprint,
            }
            items = {ftype: meta | {"ftype": ftype} for ftype in ftypes} | {
                "root.squashfs": {
                    "ftype": "squashfs",
                    "path": f"files/{varch.rootfs_sha256}",
                    "sha256": varch.rootfs_sha256,
                    "size": varch.rootfs_size,
                },
            }
            kinds[varch.metadata_sha256] = "metadata"
            kinds[varch.rootfs_sha256] = "squashfs"
            # The packages in the rootfs, as Ubuntu's feeds list them: LXD and Incus pass
            # over items of an ftype they do not use.
            if varch.manifest_sha256:
                items["manifest"] = {
                    "ftype": "manifest",
                    "path": f"files/{varch.manifest_sha256}",
                    "sha256": varch.manifest_sha256,
                    "size": varch.manifest_size,
                }
                kinds[varch.manifest_sha256] = "manifest"
            # Its bills of materials (server_api.sbom), of ftypes LXD and Incus pass over too.
            for ftype, sha256, size in (
                (SbomFormat.spdx.ftype, varch.sbom_spdx_sha256, varch.sbom_spdx_size),
                (SbomFormat.cyclonedx.ftype, varch.sbom_cdx_sha256, varch.sbom_cdx_size),
            ):
                if sha256:
                    items[ftype] = {
                        "ftype": ftype,
                        "path": f"files/{sha256}",
                        "sha256": sha256,
                        "size": size,
                    }
                    kinds[sha256] = ftype
            # Rows come by serial, so an earlier base is already listed; a base not in this
            # feed (another channel, collected) is no use to a host of it: no item then.
            if varch.delta_sha256 and varch.delta_base in product["versions"]:
                items[f"delta-{varch.delta_base}"] = {
                    "ftype": "squashfs.vcdiff",
                    "path": f"files/{varch.delta_sha256}",
                    "sha256": varch.delta_sha256,
                    "size": varch.delta_size,
                    "delta_base": varch.delta_base,
                }
                kinds[varch.delta_sha256] = "squashfs.vcdiff"
            product["versions"][varch.serial] = {"items": items}
        pids = tuple(sorted(products))
        body = b",\n".join(encode_product(pid, products[pid]) for pid in pids)
        digest = hashlib.sha256(body).digest()
        parts[name] = Part(marks[name], pids, body, digest, frozenset(kinds), kinds)
    return parts


def join(
    channel: Channel, flavour: Flavour | None, generation: int, parts: dict[str, Part]
) -> Feed:
    """The feed made of its images' parts, in image order: their JSON is copied as it is,
    never decoded or encoded again."""
    ordered = [parts[name] for name in sorted(parts) if parts[name].products]
    head = {
        "content_id": f"icefloe:{channel.value}" + (f":{flavour.value}" if flavour else ""),
        "datatype": "image-downloads",
        "format": "products:1.0",
    }
    encoded_head = orjson.dumps(head)
    images = encode_images(encoded_head, [part.body for part in ordered])
    index = orjson.dumps(
        {
            "format": "index:1.0",
            "index": {
                "images": {
                    "datatype": "image-downloads",
                    "path": "streams/v1/images.json",
                    "format": "products:1.0",
                    "products": sorted(pid for part in ordered for pid in part.products),
                }
            },
        }
    )
    # The parts' digests stand for their bytes: hashing the whole feed again costs more.
    digest = hashlib.sha256(encoded_head + index)
    for part in ordered:
        digest.update(part.digest)
    files = frozenset().union(*(part.files for part in ordered))
    kinds = ChainMap(*(part.kinds for part in ordered))
    return Feed(generation, index, images, f'"{digest.hexdigest()[:32]}"', files, kinds)


def render(session: Session, channel: Channel, flavour: Flavour | None, generation: int) -> Feed:
    """The feed of one channel from scratch; `flavour` None lists the metadata for both
    clients."""
    parts = render_parts(session, channel, flavour, marks(session))
    return join(channel, flavour, generation, parts)


def revoked_files(session: Session) -> set[str]:
    """The sha256 of every file a revoked version lists: no channel serves them."""
    rows = session.execute(
        sa.select(*listed_files())
        .join(Version, col(Version.id) == col(VersionArch.version_id))
        .where(col(Version.state) == VersionState.revoked)
    )
    return {sha for row in rows for sha in row if sha}


def generation(session: Session) -> int:
    """The catalog's generation: its newest event id (every change writes an event)."""
    return session.exec(select(func.max(Event.id))).one() or 0


class FeedCache:
    """Rendered feeds per (channel, flavour), re-rendered only when the catalog generation
    moves, and then only the images whose newest event moved. Credentials are not part
    of the key: each request resolves its credential to a (channel, flavour) first, so
    revoking or moving one takes effect at once."""

    def __init__(
        self, on_render: Callable[[Channel, Flavour | None], None] = lambda *_: None
    ) -> None:
        self._feeds: dict[tuple[Channel, Flavour | None], Feed] = {}
        self._parts: dict[tuple[Channel, Flavour | None], dict[str, Part]] = {}
        self._marks: tuple[int, dict[str, int]] = (-1, {})
        self._lock = threading.Lock()
        self._on_render = on_render  # metrics count renders
        self.images_rendered = 0  # image parts rendered since the cache was made

    def get(self, session: Session, channel: Channel, flavour: Flavour | None = None) -> Feed:
        now = generation(session)
        feed = self._feeds.get((channel, flavour))
        if feed is None or feed.generation != now:
            with self._lock:
                feed = self._feeds.get((channel, flavour))
                if feed is None or feed.generation != now:
                    feed = self._render(session, channel, flavour, now)
                    self._feeds[channel, flavour] = feed
                    self._on_render(channel, flavour)
        return feed

    def _render(
        self, session: Session, channel: Channel, flavour: Flavour | None, now: int
    ) -> Feed:
        if self._marks[0] != now:  # one query per generation, whichever feed asks first
            self._marks = (now, marks(session))
        current = self._marks[1]
        parts = self._parts.setdefault((channel, flavour), {})
        for gone in parts.keys() - current.keys():
            del parts[gone]
        changed = {i: m for i, m in current.items() if i not in parts or parts[i].mark != m}
        parts.update(render_parts(session, channel, flavour, changed))
        self.images_rendered += len(changed)
        return join(channel, flavour, now, parts)


def left_within(session: Session, channel: Channel, sha256: str, seconds: int) -> bool:
    """Whether a version that lists the file left `channel` in the last `seconds` (its
    events say when): a host that read the channel's index before still lists the file.
    A revoked version has no such grace: it was taken back, not merely superseded."""
    listed = VersionState(channel.value)
    return (
        session.exec(
            select(Event.id)
            .join(VersionArch, col(VersionArch.version_id) == col(Event.version_id))
            .join(Version, col(Version.id) == col(Event.version_id))
            .where(
                col(Version.state) != VersionState.revoked,
                col(Event.from_state) == listed,
                col(Event.to_state) != listed,
                col(Event.at) >= utcnow() - timedelta(seconds=seconds),
                or_(*(column == sha256 for column in listed_files())),
            )
            .limit(1)
        ).first()
        is not None
    )
