"""Static trees of the feeds: what nginx, a CDN or an rsync mirror serves without Python.

Under the static dir (ICEFLOE_SERVER_STATIC_DIR, default `<state dir>/static`):

    <tree>/current -> <generation>      trees: `testing`, `active` (the public channel feeds,
                                        both flavours), `testing-lxd`, `active-incus`, ...
                                        (what private feeds of that channel and flavour see)
    <tree>/<generation>/streams/v1/index.json, images.json, their signed forms index.sjson,
                                        images.sjson and the key that signs them, icefloe.asc
                                        (server_api.sjson; none while the server refuses to sign)
    <tree>/<generation>/files -> ../../files/<channel>
    <tree>/<generation>.manifest.json   its ETag (and signing key) and the sha256 of every
                                        file it lists
    files/<channel>/<sha256>            hard links to the store's files (copies across
                                        filesystems), world-readable for the web server
    generation                          the catalog generation every tree shows

So `<tree>/current/` is a whole simplestreams tree. A tree whose feed changed gets a new
generation written beside the others, then `current` is swapped by renaming a new symlink
over it: a reader sees the old tree or the new one, never a mix. A superseded generation,
and the files it lists, stay `channel_file_grace_s` (LXD caches an index that long), so a
host with a cached index never gets a 404. One writer at a time (a lock file); a killed
writer leaves at most `.tmp-*` entries, which the next one removes, and a stale
`generation`, which makes the next one write again.
"""

import errno
import fcntl
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from core.catalog import Channel, Flavour
from server_api.feeds import Feed, FeedCache, generation, revoked_files
from server_api.sjson import KEY_NAME, SIGNED, SigningRefused, StreamSigner
from server_api.store import FileStore

log = logging.getLogger(__name__)
STREAMS = Path("streams/v1")
CURRENT = "current"


def tree_name(channel: Channel, flavour: Flavour | None) -> str:
    return channel.value if flavour is None else f"{channel.value}-{flavour.value}"


def atomic_write(path: Path, data: bytes, prefix: str = ".tmp") -> None:
    """`path` replaced whole by `data`, readable by all (a web server reads it), by way of
    `<prefix>-<name>-<pid>-<thread>` beside it."""
    tmp = path.with_name(f"{prefix}-{path.name}-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def link_files(store: FileStore, files: frozenset[str], dest: Path) -> list[str]:
    """Hard-link each listed file of the store into `dest` (a copy if `dest` is on another
    filesystem), readable by all: a web server reads them. The sha256s the store lacks."""
    dest.mkdir(parents=True, exist_ok=True)
    have = set(os.listdir(dest))
    missing = []
    for sha in sorted(files - have):
        source, target = store.path(sha), dest / sha
        try:
            if source.stat().st_mode & 0o044 != 0o044:
                source.chmod(0o644)
            os.link(source, target)
        except FileNotFoundError:
            missing.append(sha)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = dest / f".tmp-{sha}-{os.getpid()}"
            shutil.copyfile(source, tmp)
            tmp.chmod(0o644)
            os.replace(tmp, target)
    return missing


def write_streams(dest: Path, feed: Feed, signer: StreamSigner) -> bool:
    """`streams/v1/index.json` and `images.json` of `feed` under `dest`, their signed forms
    unless `signer` refuses, and its public key; each file is replaced whole (the key first,
    then images before index: the index a reader sees lists nothing it lacks). Whether the
    signed forms were written: a feed is never held back for want of a signature."""
    streams = dest / STREAMS
    streams.mkdir(parents=True, exist_ok=True)
    if signer.key is not None:
        atomic_write(streams / KEY_NAME, signer.key.public_key.encode())
    try:
        signed = {} if signer.refused else {name: signer.signed(feed, name) for name in SIGNED}
    except SigningRefused:  # gpg failed; logged
        signed = {}
    atomic_write(streams / "images.json", feed.images)
    for name, body in signed.items():
        atomic_write(streams / name, body)
    atomic_write(streams / "index.json", feed.index)
    return bool(signed)


def export(store: FileStore, feed: Feed, signer: StreamSigner, dest: Path) -> list[str]:
    """One channel's tree at `dest` (an offline site, a mirror seed): the files first,
    then the streams. Files a previous export listed stay. The sha256s the store lacks."""
    missing = link_files(store, feed.files, dest / "files")
    write_streams(dest, feed, signer)
    return missing


class StaticTrees:
    """The trees under `root`, brought to the catalog's generation by `write`."""

    def __init__(
        self, root: Path, store: FileStore, signer: StreamSigner, grace_s: int, public: bool
    ) -> None:
        self.root = root
        self.store = store
        self.signer = signer
        self.grace_s = grace_s
        self.public = public  # public channel trees too, or only the private feeds' ones
        self._manifests: dict[Path, tuple[str, frozenset[str]]] = {}
        # Each tree is compared once per process even if it shows the generation: one
        # written unsigned (the key was missing then) is written again, signed.
        self._checked = False
        root.mkdir(parents=True, exist_ok=True)

    def trees(self) -> list[tuple[Channel, Flavour | None]]:
        flavours: list[Flavour | None] = [None] if self.public else []
        return [(c, f) for c in Channel for f in [*flavours, *Flavour]]

    def shown(self) -> int:
        """The catalog generation every tree shows (-1: none written yet)."""
        try:
            return int((self.root / "generation").read_text())
        except (FileNotFoundError, ValueError):
            return -1

    def files_dir(self, channel: Channel) -> Path:
        return self.root / "files" / channel.value

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield

    def write(self, session: Session, feeds: FeedCache) -> int:
        """Bring every tree to the catalog's generation (unless it shows it already), then
        drop superseded generations older than the grace. Returns the generation shown."""
        if (now := generation(session)) == self.shown() and self._checked:
            return now
        with self._locked():
            if (now := generation(session)) == self.shown() and self._checked:
                return now
            self._remove_leftovers()
            taken_back: dict[Channel, set[str]] = {}
            revoked = revoked_files(session)
            for channel in Channel:
                feeds_of = {
                    f: feeds.get(session, channel, f) for c, f in self.trees() if c == channel
                }
                listed = frozenset().union(*(feed.files for feed in feeds_of.values()))
                missing = link_files(self.store, listed, self.files_dir(channel))
                if missing:
                    log.warning("the store lacks %d files the %s feed lists", len(missing), channel)
                for flavour, feed in feeds_of.items():
                    self._publish(tree_name(channel, flavour), channel, now, feed)
                taken_back[channel] = revoked - listed
            self._prune(taken_back)
            atomic_write(self.root / "generation", str(now).encode())
            self._checked = True
        return now

    def _publish(self, name: str, channel: Channel, now: int, feed: Feed) -> None:
        tree = self.root / name
        tree.mkdir(exist_ok=True)
        current = self._current(tree)
        # A tree written unsigned (the key was missing, gpg failed) is written again, signed,
        # when it can be.
        if current is not None and self._manifest(tree, current)[0] == self._shows(feed, True):
            return  # unchanged: the current tree already shows this feed
        final, path = tree / str(now), tree / f"{now}.manifest.json"
        if not final.exists():
            tmp = tree / f".tmp-{now}-{os.getpid()}"
            signed = write_streams(tmp, feed, self.signer)
            (tmp / "files").symlink_to(Path("..", "..", "files", channel.value))
            manifest = {"etag": self._shows(feed, signed), "files": sorted(feed.files)}
            atomic_write(path, orjson.dumps(manifest))
            os.rename(tmp, final)
        elif self._manifest(tree, now)[0] != self._shows(feed, True):
            # This generation, written unsigned: its signed forms join it (the .json are the
            # same bytes).
            signed = write_streams(final, feed, self.signer)
            manifest = {"etag": self._shows(feed, signed), "files": sorted(feed.files)}
            atomic_write(path, orjson.dumps(manifest))
            self._manifests.pop(path, None)
        link = tree / f".tmp-{CURRENT}-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(str(now))
        os.replace(link, tree / CURRENT)

    def _shows(self, feed: Feed, signed: bool) -> str:
        """What a tree's manifest says it shows: the feed's ETag, and the key that signed it."""
        key = self.signer.key
        if not signed or self.signer.refused or key is None:
            return feed.etag
        return f"{feed.etag} {key.fingerprint}"

    @staticmethod
    def _current(tree: Path) -> int | None:
        try:
            return int(os.readlink(tree / CURRENT))
        except (FileNotFoundError, ValueError):
            return None

    def _manifest(self, tree: Path, gen: int) -> tuple[str, frozenset[str]]:
        path = tree / f"{gen}.manifest.json"
        if path not in self._manifests:
            loaded = orjson.loads(path.read_bytes())
            self._manifests[path] = (loaded["etag"], frozenset(loaded["files"]))
        return self._manifests[path]

    @staticmethod
    def _generations(tree: Path) -> list[int]:
        return sorted(int(p.name) for p in tree.iterdir() if p.name.isdigit() and p.is_dir())

    def _remove_leftovers(self) -> None:
        """What a killed writer left half-made; and public trees while public feeds are off."""
        for pattern in (".tmp-*", "*/.tmp-*", "files/*/.tmp-*"):
            for path in self.root.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if not self.public:
            for channel in Channel:
                shutil.rmtree(self.root / channel.value, ignore_errors=True)

    def _prune(self, taken_back: dict[Channel, set[str]]) -> None:
        """Superseded generations go `grace_s` after their successor was written; a file
        goes when no generation left of its channel's trees lists it, or at once when a
        revoked version lists it (`taken_back`: what no current tree lists)."""
        for channel in Channel:
            kept: set[str] = set()
            for c, flavour in self.trees():
                tree = self.root / tree_name(c, flavour)
                if c != channel or not tree.is_dir():
                    continue
                gens = self._generations(tree)
                current = self._current(tree)
                for gen, successor in itertools.pairwise(gens):
                    manifest = tree / f"{successor}.manifest.json"
                    if gen != current and time.time() - manifest.stat().st_mtime >= self.grace_s:
                        shutil.rmtree(tree / str(gen))
                        (tree / f"{gen}.manifest.json").unlink()
                        self._manifests.pop(tree / f"{gen}.manifest.json", None)
                for manifest in tree.glob("*.manifest.json"):  # a killed writer's or pruner's
                    if not (tree / manifest.name.split(".")[0]).is_dir():
                        manifest.unlink()
                        self._manifests.pop(manifest, None)
                for gen in self._generations(tree):
                    kept |= self._manifest(tree, gen)[1]
            files = self.files_dir(channel)
            if files.is_dir():
                for sha in set(os.listdir(files)) - (kept - taken_back[channel]):
                    (files / sha).unlink()


class StaticWriter:
    """Keeps the static trees at the catalog's generation from a thread of the server:
    woken by each commit this process makes, and every `poll_s` for other processes'."""

    def __init__(self, trees: StaticTrees, engine: Engine, feeds: FeedCache, poll_s: float) -> None:
        self.trees = trees
        self.engine = engine
        self.feeds = feeds
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="static-trees", daemon=True)

    def _poke(self, session: OrmSession) -> None:
        if session.bind is self.engine:
            self._wake.set()

    def start(self) -> None:
        event.listen(OrmSession, "after_commit", self._poke)
        self._thread.start()

    def stop(self) -> None:
        event.remove(OrmSession, "after_commit", self._poke)
        self._stop.set()
        self._wake.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with Session(self.engine) as session:
                    self.trees.write(session, self.feeds)
            except Exception:  # the next change or poll tries again
                log.exception("writing the static trees failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()
