"""Badges for READMEs and dashboards: hundreds of clients ask for the same few. Each is
rendered at most once per `ttl_s` and kept in memory with its ETag, so a request costs no
database read and no thread hop until then (bench/badges.py)."""

import hashlib
import time
from dataclasses import dataclass

TTL_S = 10.0  # a badge is at most this much older than the catalogue
MAX_KEPT = 4096  # badges asked for by name, unknown ones too: bounded whatever is asked


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str
    status_code: int
    at: float  # time.monotonic() when it was rendered


class BadgeCache:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._kept: dict[tuple[str, str | None], Rendered] = {}

    def fresh(self, key: tuple[str, str | None]) -> Rendered | None:
        kept = self._kept.get(key)
        return kept if kept and time.monotonic() - kept.at < self.ttl_s else None

    def keep(self, key: tuple[str, str | None], body: bytes, status_code: int) -> Rendered:
        if len(self._kept) >= MAX_KEPT:
            self._kept.clear()
        etag = f'"{hashlib.sha256(body).hexdigest()[:24]}"'
        kept = Rendered(body, etag, status_code, time.monotonic())
        self._kept[key] = kept
        return kept
