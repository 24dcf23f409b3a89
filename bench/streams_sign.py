"""Signed streams: what signing adds per catalog generation and how large the `.sjson` are.
Prints figures, asserts nothing.

For catalogs of `--versions` testing versions (two arches each, 20 serials an image), with the
server's real key (gpg, ed25519, made in a temporary state dir):
- per feed: images.json and index.json and their signed forms' sizes, and the time to sign
  each (after a change the signed form is signed whole again, however little changed);
- per generation: the static trees' write (every channel and flavour: six trees, each
  written anew as after a change to all), signing on and off, the difference being what
  signing adds to a publish. The store holds none of the made-up files: none is linked.

Run from the repo: `.venv/bin/python bench/streams_sign.py [--versions 200 2000 10000]`.
"""

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from sqlmodel import Session

from bench.server_feeds import seed
from core.catalog import Channel, Flavour, VersionState
from core.config import ServerSettings
from server_api.db import make_engine
from server_api.feeds import FeedCache
from server_api.sjson import SIGNED, StreamSigner
from server_api.static import StaticTrees
from server_api.store import FileStore

SERIALS = 20


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def kib(size: int) -> str:
    return f"{size / 1024:9.1f} KiB"


def bench(root: Path, versions: int, runs: int) -> None:
    state = root / f"v{versions}"
    seed(state, max(1, versions // SERIALS), SERIALS, VersionState.testing)
    settings = ServerSettings(state_dir=state)
    engine = make_engine(settings.db_url)
    signer = StreamSigner.open(settings.gnupg_home, engine)
    unsigned = StreamSigner(settings.gnupg_home, None, "off for the comparison")
    store = FileStore(settings.files_dir)
    feeds = FeedCache()
    try:
        print(f"\n{versions} testing versions ({versions * 2} version arches)")
        for flavour in (None, Flavour.lxd, Flavour.incus):
            times: dict[str, list[float]] = {name: [] for name in SIGNED}
            with Session(engine) as session:
                feed = feeds.get(session, Channel.testing, flavour)
            for _ in range(runs):
                cold = StreamSigner(signer.home, signer.key, None)  # nothing signed yet
                for name in SIGNED:
                    start = time.perf_counter()
                    cold.signed(feed, name)
                    times[name].append(time.perf_counter() - start)
            label = flavour.value if flavour else "both"
            for name in SIGNED:
                plain = feed.images if name == "images.sjson" else feed.index
                print(
                    f"  testing/{label:5} {name:13} sign {ms(statistics.median(times[name]))}"
                    f"   .json {kib(len(plain))}   .sjson {kib(len(signer.signed(feed, name)))}"
                )
        walls: dict[str, list[float]] = {"unsigned": [], "signed": []}
        for run in range(runs):
            for label in walls:
                by = StreamSigner(signer.home, signer.key, None) if label == "signed" else unsigned
                trees = StaticTrees(
                    root / f"static-{versions}-{label}-{run}", store, by, 3600, True
                )
                with Session(engine) as session:
                    start = time.perf_counter()
                    trees.write(session, feeds)
                    walls[label].append(time.perf_counter() - start)
        for label, took in walls.items():
            print(f"  static trees (6) written, {label:8}: {ms(min(took))}")
        added = min(walls["signed"]) - min(walls["unsigned"])
        print(f"  signing adds per generation (six trees): {ms(added)}")
    finally:
        signer.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, nargs="+", default=[200, 2000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("server_api.static").setLevel(logging.ERROR)  # "the store lacks files"
    with tempfile.TemporaryDirectory(prefix="icefloe-sign-") as tmp:
        for versions in args.versions:
            bench(Path(tmp), versions, args.runs)


if __name__ == "__main__":
    main()
