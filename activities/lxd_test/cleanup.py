"""Deleting a tested instance off the pipeline's path.

LXD takes about a second to stop a container whatever the image (its stop operation runs
the instance's stop hook after the container is gone; bench/hotpath.py shows it). Once a
suite's verdicts are recorded nothing waits on the instance, so the test activity returns
and its instance and cached image are deleted in a thread of the worker while the pipeline
goes on to promote. A worker that stops waits for them (workers/arch.py). A worker that dies
first leaves them to the janitor, which deletes the instances of workflows that no longer
run, and their cached images, when a worker starts and then periodically.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class Cleanups:
    """The deletions this worker has in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[threading.Thread, frozenset[str]] = {}

    def start(
        self, what: str, work: Callable[[], object], names: Iterable[str] = ()
    ) -> threading.Thread:
        """Run `work`, which deletes the instances `names`, in a thread of its own; a failure
        is logged, the janitor's to mend."""

        def run() -> None:
            started = time.monotonic()
            try:
                work()
            except Exception:
                log.exception("%s failed; the janitor will delete what is left", what)
            else:
                log.info("%s: done in %.2fs", what, time.monotonic() - started)
            finally:
                with self._lock:
                    self._running.pop(thread, None)

        thread = threading.Thread(target=run, name=f"cleanup {what}")
        with self._lock:
            self._running[thread] = frozenset(names)
        thread.start()
        return thread

    def wait(self, timeout_s: float = 60) -> bool:
        """Until every deletion started so far has ended; False if one is still running."""
        with self._lock:
            running = list(self._running)
        return _joined(running, timeout_s)

    def wait_for(self, names: Iterable[str], timeout_s: float = 60) -> bool:
        """Until the deletions of any of `names` have ended; False if one is still running."""
        wanted = set(names)
        with self._lock:
            running = [t for t, deleting in self._running.items() if deleting & wanted]
        return _joined(running, timeout_s)


def _joined(running: list[threading.Thread], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    for thread in running:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in running)
