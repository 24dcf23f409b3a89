"""The feeds' signed forms, as simplestreams has them: `streams/v1/index.sjson` and
`images.sjson`, each an OpenPGP clear-signed message of its `.json` (the signed index's
paths name the `.sjson` products, as simplestreams' own signing tools write them), so a
mirror checks what it copies with `gpgv` and the public key (`streams/v1/icefloe.asc`).

The key is made once, at the server's first start, in a GnuPG home under the state dir
(`<state dir>/keys/gnupg`, 0700), and its fingerprint and public half are recorded in the
catalog (`SigningKey`, purpose `streams`). A row means a key was made: a server that then
finds the key gone from its home refuses to sign (the `.sjson` answer 503, the `.json` are
served as before) and never makes another on its own. Each feed is signed once, on first
use (the static trees' writer or a request), and kept while it is current.
"""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server_api import gpg
from server_api.feeds import Feed
from server_api.models import SigningKey

log = logging.getLogger(__name__)
PURPOSE = "streams"
UID = "Icefloe image server (simplestreams) <streams@icefloe.invalid>"
SIGNED = ("images.sjson", "index.sjson")  # images first: an index lists nothing not written
KEY_NAME = "icefloe.asc"
# Signed forms kept: a few per (channel, flavour) outlive a change while requests finish.
KEEP = 64


class SigningRefused(Exception):
    """This server does not sign (or gpg just failed); the message says why (no paths, no
    key)."""


def signed_index(index: bytes) -> bytes:
    """index.json as its signed form lists it: each products file by its `.sjson` path, one
    member a line (gpg cuts a clear-signed line longer than 19,993 bytes)."""
    data = orjson.loads(index)
    for entry in data["index"].values():
        entry["path"] = entry["path"].removesuffix(".json") + ".sjson"
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


@dataclass(frozen=True)
class StreamsKey:
    fingerprint: str
    public_key: str  # ASCII-armored


class StreamSigner:
    """The streams key of this server and the signed forms of its feeds."""

    def __init__(self, home: Path, key: StreamsKey | None, refused: str | None) -> None:
        self.home = home
        self.key = key  # the recorded key, even when its secret is gone (what it signed verifies)
        self.refused = refused
        self._signed: dict[tuple[str, str, bool], bytes] = {}
        self._lock = threading.Lock()
        self.signatures = 0  # gpg runs since the signer was made

    @classmethod
    def open(cls, home: Path, engine: Engine, make: bool = True) -> "StreamSigner":
        """The recorded key, ready if its home holds its secret; with no key recorded, a new
        one made and recorded if `make` (the server's start), else none (`icefloe export`)."""
        with Session(engine) as session:
            row = _recorded(session)
        if row is None and not make:
            return cls(
                home, None, "no streams signing key yet: the server makes one at its first start"
            )
        if row is None:
            try:
                return cls(home, _make(home, engine), None)
            except (gpg.GpgError, OSError) as exc:
                log.error("could not make the streams signing key in %s: %s", home, exc)
                return cls(home, None, "this server could not make its streams signing key")
        key = StreamsKey(row.keyid, row.public_key)
        why = "the directory is gone"
        try:
            if home.is_dir():
                why = "it holds no secret of it"
                gpg.prepare(home, create=False)
                if row.keyid in gpg.secret_fingerprints(home):
                    return cls(home, key, None)
        except (gpg.GpgError, OSError) as exc:
            why = f"it cannot be read: {exc}"
        log.error(
            "the streams signing key %s (recorded %s) is missing from %s (%s): the .sjson "
            "feeds answer 503 until it is restored; no new key is made",
            row.keyid,
            row.created_at.date(),
            home,
            why,
        )
        return cls(
            home,
            key,
            f"this server's streams signing key {row.keyid} is missing from "
            "its host, so it signs nothing rather than make another; the .json feeds are "
            "unsigned; the operator restores the key (README: signed streams)",
        )

    def signed(self, feed: Feed, name: str, deltas: bool = True) -> bytes:
        """The signed form `name` (SIGNED) of `feed` (`deltas` False: of its images without
        delta items), signed on first use and kept."""
        if self.refused is not None or self.key is None:
            raise SigningRefused(self.refused)
        key = (feed.etag, name, deltas)
        if (done := self._signed.get(key)) is not None:
            return done
        with self._lock:
            if (done := self._signed.get(key)) is not None:
                return done
            if name == "index.sjson":
                text = signed_index(feed.index)
            else:
                text = feed.images if deltas else feed.without_deltas[0]
            try:
                done = gpg.clearsign(self.home, self.key.fingerprint, text)
            except (gpg.GpgError, ValueError, OSError) as exc:
                log.error("signing %s of the %s feed failed: %s", name, feed.etag, exc)
                raise SigningRefused(
                    "this server could not sign the feed (its log says why); the .json "
                    "feeds are served unsigned"
                ) from None
            self.signatures += 1
            self._signed[key] = done
            while len(self._signed) > KEEP:
                del self._signed[next(iter(self._signed))]
        return done

    def close(self) -> None:
        """Stop the gpg-agent that signing started."""
        if self.refused is None:
            gpg.stop_agent(self.home)


def _recorded(session: Session) -> SigningKey | None:
    return session.exec(
        select(SigningKey)
        .where(col(SigningKey.purpose) == PURPOSE, col(SigningKey.retired_at).is_(None))
        .order_by(col(SigningKey.id).desc())
    ).first()


def _make(home: Path, engine: Engine) -> StreamsKey:
    """The first start's key: made in `home` (or the one a catalog lost there, adopted) and
    recorded; a server starting beside records the same."""
    gpg.prepare(home, create=True)
    try:
        fingerprint, made = gpg.ensure_key(home, UID)
        key = StreamsKey(fingerprint, gpg.public_key(home, fingerprint))
    finally:
        gpg.stop_agent(home)  # making the key started it; signing starts it again when used
    try:
        with Session(engine) as session:
            session.add(SigningKey(purpose=PURPOSE, keyid=fingerprint, public_key=key.public_key))
            session.commit()
    except IntegrityError:
        pass  # the other server recorded it
    log.warning(
        "%s the streams signing key %s in %s: pin its public key (streams/v1/%s) on mirrors",
        "made" if made else "recorded",
        fingerprint,
        home,
        KEY_NAME,
    )
    return key
