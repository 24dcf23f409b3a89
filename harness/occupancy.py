"""What an arch worker really ran at once, seen from outside its slot pools: build
directories on disk and LXD instances of given serials, sampled from a thread."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from activities.lxd_test.instances import listed
from clients.lxd import connect_lxd
from core.config import Settings


class Occupancy:
    """The most builds and test instances of `serials` (None: of any serial) seen at once
    while sampling."""

    def __init__(self, settings: Settings, serials: set[str] | None, every_s: float = 0.05) -> None:
        self.builds = settings.build_dir or settings.state_dir / "builds"
        self.lxd = connect_lxd(settings)
        self.serials = serials
        self.every_s = every_s
        self.most = {"build": 0, "test": 0}

    def sample(self) -> None:
        # <build dir>/<image>/<serial>/<arch>; a cancelled build may leave its directory
        builds = sum(
            1 for p in self.builds.glob("*/*/*") if p.is_dir() and self._ours(p.parent.name)
        )
        tests = sum(1 for i in listed(self.lxd) if self._ours(i.config.get("user.icefloe.serial")))
        self.most["build"] = max(self.most["build"], builds)
        self.most["test"] = max(self.most["test"], tests)

    def _ours(self, serial: str | None) -> bool:
        return serial is not None and (self.serials is None or serial in self.serials)

    @contextmanager
    def sampling(self) -> Iterator["Occupancy"]:
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.every_s):
                self.sample()

        thread = threading.Thread(target=run, name="occupancy", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
