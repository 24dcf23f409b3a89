"""Local file store addressed by sha256.

Uploads stream into a temporary file under `.incoming/` (the same filesystem), are
checked against the declared sha256 and size, and only then renamed into place: a
reader never sees a partial file and a failed upload leaves nothing behind. What a
killed process left there is removed by gc and when a server starts (`clean_incoming`):
a live writer touches its file at least once per body idle timeout.
"""

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio

FLUSH_BYTES = 4 << 20
log = logging.getLogger(__name__)


class UploadRejected(ValueError):
    """The bytes did not match what the client declared."""


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def put(self, sha256: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        target = self.path(sha256)
        digest = hashlib.sha256()
        received = 0
        pending = bytearray()
        fd, tmp = tempfile.mkstemp(dir=self.incoming, prefix=".upload-")
        os.fchmod(fd, 0o644)  # a web server in front sends files too (deploy/nginx)

        def flush(out: BinaryIO) -> None:
            digest.update(pending)
            out.write(pending)
            pending.clear()

        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise UploadRejected(f"more than the declared {size} bytes arrived")
                    pending += chunk
                    if len(pending) >= FLUSH_BYTES:
                        # Hash and write off the event loop: feeds keep answering meanwhile.
                        await anyio.to_thread.run_sync(flush, out)
                    else:
                        os.utime(out.fileno())  # alive, for `clean_incoming`
                flush(out)
            if received != size:
                raise UploadRejected(f"declared {size} bytes, received {received}")
            if digest.hexdigest() != sha256:
                raise UploadRejected(f"content has sha256 {digest.hexdigest()}, not {sha256}")
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def incoming_path(self) -> Path:
        """A new empty file under `.incoming/`, for the server's own files (`add`)."""
        fd, tmp = tempfile.mkstemp(dir=self.incoming, prefix=".made-")
        os.close(fd)
        return Path(tmp)

    def add(self, made: Path) -> tuple[str, int]:
        """Move a file made under `.incoming/` into the store: its sha256 and size."""
        with made.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        made.chmod(0o644)
        os.replace(made, target)
        return sha256, target.stat().st_size

    def write(self, data: bytes) -> str:
        """Store bytes the server made itself (a bill of materials): their sha256."""
        made = self.incoming_path()
        made.write_bytes(data)
        return self.add(made)[0]

    def clean_incoming(self, idle_s: float) -> None:
        """Remove the files under `.incoming/` that no live writer holds: those untouched for
        longer than twice `idle_s`, the body idle timeout. An upload touches its file with
        every chunk and one idle that long is cut off, its file removed; the second `idle_s`
        covers a chunk's write in a worker thread and the clocks of servers sharing the store.
        The deltas' files are touched every `deltas.CHECK_S` while xdelta3 writes them."""
        cutoff = time.time() - 2 * idle_s
        stale = []
        for path in self.incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):  # its writer finished meanwhile
                if path.stat().st_mtime < cutoff:
                    stale.append(path)
                    path.unlink()
        if stale:
            log.info("removed %d partial files left by a stopped server", len(stale))

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def combined_sha256(self, *sha256s: str) -> str:
        """LXD's fingerprint of a split image: sha256 of metadata bytes then rootfs bytes."""
        digest = hashlib.sha256()
        for sha in sha256s:
            with self.path(sha).open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()
