"""Concurrent execs on one LXD host, every byte of output accounted for: pylxd's websocket
exec (`Instance.execute`, the old path) against LXD's recorded output (`execs.run`).

Builds a busybox image, starts a few instances in a project of its own, then runs
threads x execs per instance on both paths, each exec printing a known, varying amount
to stdout and stderr. Prints per path: execs/s, failed execs (exceptions), execs whose
output differs, bytes expected and bytes lost, ws4py warnings. Deletes what it created.
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/exec_stress.py
        [--instances 4] [--threads 8] [--execs 100] [--seconds 120] [--paths websocket,recorded]
Bounded: each path stops after --seconds even if execs are left.
"""

import argparse
import contextlib
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pylxd
from pylxd.exceptions import NotFound

from activities.builders.base import BuildJob, HostDirs
from activities.builders.busybox import build_busybox
from activities.lxd_test.execs import run
from activities.lxd_test.instances import ensure_project, remove
from core.catalog import FileType
from core.config import Settings
from core.spec import ImageSpec

PROJECT = "icefloe-bench"
MAX_LINES = 4000  # `seq 1 4000` prints 18,893 bytes


@dataclass
class Tally:
    execs: int = 0
    failed: int = 0
    wrong: int = 0
    expected_bytes: int = 0
    lost_bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WarningCounter(logging.Handler):
    """Counts what ws4py logs (e.g. "I/O operation on closed epoll object")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[record.getMessage()[:80]] += 1


def expected(lines: int, tag: str) -> tuple[str, str]:
    return "".join(f"{i}\n" for i in range(1, lines + 1)), f"{tag}\n"


def websocket(inst: pylxd.models.Instance, cmd: list[str]) -> tuple[int, str, str]:
    r = inst.execute(["timeout", "30", *cmd])
    return r.exit_code, r.stdout, r.stderr


def recorded(inst: pylxd.models.Instance, cmd: list[str]) -> tuple[int, str, str]:
    r = run(inst, cmd, 30)
    return r.code, r.stdout, r.stderr


PATHS: dict[str, Callable[[pylxd.models.Instance, list[str]], tuple[int, str, str]]] = {
    "websocket": websocket,
    "recorded": recorded,
}


def worker(path: str, name: str, execs: int, deadline: float, tally: Tally, seed: int) -> None:
    """One thread, its own client (as each test activity has), execs on one instance."""
    inst = pylxd.Client(project=PROJECT).instances.get(name)
    rng = random.Random(seed)
    for n in range(execs):
        if time.monotonic() > deadline:
            return
        lines, tag = rng.randint(0, MAX_LINES), f"err-{seed}-{n}"
        out, err = expected(lines, tag)
        want = len(out) + len(err)
        try:
            code, stdout, stderr = PATHS[path](
                inst, ["/bin/sh", "-c", f"seq 1 {lines}; echo {tag} >&2"]
            )
        except Exception as exc:  # every failure is counted, by kind
            with tally.lock:
                tally.execs += 1
                tally.failed += 1
                tally.expected_bytes += want
                tally.lost_bytes += want
                tally.errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
            continue
        with tally.lock:
            tally.execs += 1
            tally.expected_bytes += want
            if code != 0 or stdout != out or stderr != err:
                tally.wrong += 1
                tally.lost_bytes += max(0, want - len(stdout) - len(stderr))
                tally.errors[f"exit {code}, {len(stdout)}/{len(out)} stdout bytes"] += 1


def build_image(client: pylxd.Client, tmp: Path) -> str:
    spec = ImageSpec.model_validate({"os": "busybox", "release": "bench", "arches": ["x86_64"]})
    debs = Settings().deb_dir or Settings().state_dir / "debs"
    built = build_busybox(BuildJob(spec, "x86_64", "20261126-1", tmp / "out"), HostDirs(debs, tmp))
    files = {f.ftype: p for f, p in built}
    image = client.images.create(
        files[FileType.squashfs].read_bytes(),
        metadata=files[FileType.metadata].read_bytes(),
        wait=True,
    )
    return image.fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8, help="per instance")
    parser.add_argument("--execs", type=int, default=100, help="per thread")
    parser.add_argument("--seconds", type=float, default=120, help="per path")
    parser.add_argument("--paths", default="websocket,recorded")
    args = parser.parse_args()
    ws4py = WarningCounter()
    logging.getLogger("ws4py").addHandler(ws4py)

    ensure_project(pylxd.Client(), PROJECT)
    client = pylxd.Client(project=PROJECT)
    names = [f"icefloe-bench-{i}" for i in range(args.instances)]
    with tempfile.TemporaryDirectory() as tmp:
        fingerprint = build_image(client, Path(tmp))
    try:
        for name in names:
            remove(client, name)
            source = {"type": "image", "fingerprint": fingerprint}
            client.instances.create({"name": name, "source": source}, wait=True).start(wait=True)
        print(
            f"{args.instances} instances x {args.threads} threads x {args.execs} execs, "
            f"up to {args.seconds:.0f}s per path"
        )
        for path in args.paths.split(","):
            tally, before = Tally(), sum(ws4py.seen.values())
            started = time.monotonic()
            deadline = started + args.seconds
            with ThreadPoolExecutor(len(names) * args.threads) as pool:
                jobs = [
                    pool.submit(worker, path, name, args.execs, deadline, tally, i * 1000 + t)
                    for i, name in enumerate(names)
                    for t in range(args.threads)
                ]
                for job in jobs:
                    job.result()
            took = time.monotonic() - started
            print(
                f"{path:>9}: {tally.execs} execs in {took:.1f}s ({tally.execs / took:.1f}/s), "
                f"failed {tally.failed}, wrong output {tally.wrong}, "
                f"bytes expected {tally.expected_bytes}, lost {tally.lost_bytes}, "
                f"ws4py warnings {sum(ws4py.seen.values()) - before}"
            )
            for error, count in tally.errors.most_common(5):
                print(f"           {count} x {error}")
    finally:
        for name in names:
            remove(client, name)
        with contextlib.suppress(NotFound):
            client.images.get(fingerprint).delete(wait=True)


if __name__ == "__main__":
    main()
