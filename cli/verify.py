"""`icefloe verify` and `icefloe pin`: on an LXD or Incus host, check an image against its
server's signed statements with the keys pinned beforehand, never with the server's word of
the moment."""

import argparse
import json
import os
import re
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.args import Commands, command
from clients import attestations
from clients.catalog import server_ca
from clients.imagestore import LOCAL, HostImage, ImageLookupFailed, ImageStore
from core.config import Settings
from core.verify import PinnedKey, PinRefused, keys_to_pin, verdict

FULL_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# Exit codes: verified; refused (each problem printed); cannot tell (the CLI's 2: no image,
# no pin, no server); only forced past the gate, with every signature and subject good.
VERIFIED, REFUSED, FORCED = 0, 1, 3


def _load(path: Path) -> dict[str, Any]:
    """The pin file: {"servers": {<server URL>: {"pinned_at", "keys": [...]}}}."""
    if not path.exists():
        return {"servers": {}}
    try:
        pins = json.loads(path.read_text())
        for entry in pins["servers"].values():
            for k in entry["keys"]:
                PinnedKey.model_validate(k)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PinRefused(f"{path} is not a file of pinned keys ({exc}): re-pin") from None
    return dict(pins)


def pinned_keys(settings: Settings, server: str) -> list[PinnedKey] | None:
    """The keys pinned for this server; None when none are."""
    entry = _load(settings.pinned_keys_path)["servers"].get(server)
    return [PinnedKey.model_validate(k) for k in entry["keys"]] if entry else None


def _trust(settings: Settings, server: str, certificate: str | None) -> ssl.SSLContext | bool:
    """The certificate the host's client pins for the server, else the settings' CA when it
    is the settings' server, else the system CAs."""
    mine = server == attestations.server_base(settings.server.url)
    return attestations.trust(certificate, server_ca(settings) if mine else None)


def _server_of(args: argparse.Namespace, settings: Settings, feed: str | None) -> str:
    if args.server:
        return attestations.server_base(args.server)
    return attestations.server_base(feed or settings.server.url)


def cmd_pin(args: argparse.Namespace) -> int:
    settings = Settings()
    feed, certificate = None, None
    if args.remote:
        feed, certificate = ImageStore("incus" if args.incus else "lxc").remote(args.remote)
    server = _server_of(args, settings, feed)
    keys = keys_to_pin(attestations.keys(server, _trust(settings, server, certificate)))
    path = settings.pinned_keys_path
    pins = _load(path)
    before = {k["keyid"] for k in (pins["servers"].get(server) or {}).get("keys", [])}
    pins["servers"][server] = {
        "pinned_at": datetime.now(UTC).isoformat(),
        "keys": [k.model_dump(mode="json") for k in keys],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pins, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"pinned for {server} in {path}; compare these keyids with the server's operator:")
    for k in keys:
        state = f"retired {k.retired_at:%Y-%m-%d}" if k.retired_at else "signing"
        new = "" if not before or k.keyid in before else "  (new since the last pin)"
        print(f"  {k.keyid}  {state}{new}")
    for gone in sorted(before - {k.keyid for k in keys}):
        print(f"  {gone}  no longer listed: unpinned")
    return 0


def _find(args: argparse.Namespace) -> HostImage:
    """The image the reference names; a full fingerprint the host lacks is still checked
    (an auditor's question), on the server --server or the settings name."""
    store = ImageStore("incus" if args.incus else "lxc")
    try:
        return store.find(args.image)
    except ImageLookupFailed:
        if ":" in args.image or not FULL_FINGERPRINT.match(args.image):
            raise
        return HostImage(fingerprint=args.image, remote=LOCAL)


def cmd_verify(args: argparse.Namespace) -> int:
    settings = Settings()
    image = _find(args)
    server = _server_of(args, settings, image.feed)
    keys = pinned_keys(settings, server)
    if keys is None:
        print(
            f"icefloe: no keys pinned for {server} (in {settings.pinned_keys_path}): run "
            f"`icefloe pin --server {server}` and compare the keyids it prints with the "
            "server's operator",
            file=sys.stderr,
        )
        return 2
    token = settings.reader_token.get_secret_value() if settings.reader_token else None
    trust = _trust(settings, server, image.certificate)
    answer = attestations.attestations(server, image.fingerprint, trust, token)
    v = verdict(answer, keys, image.fingerprint, server)
    forced_ok = args.allow_forced and v.only_forced()
    code = VERIFIED if v.verified or forced_ok else FORCED if v.only_forced() else REFUSED
    if args.json:
        body = {
            "verified": v.verified,
            "exit_code": code,
            "host_image": image.model_dump(exclude={"certificate"}),
        }
        print(json.dumps(body | v.model_dump(mode="json"), indent=2))
    else:
        names = ", ".join(image.aliases)
        print(f"{image.remote}:{names or image.fingerprint[:12]}")
        print("\n".join(v.lines()))
        if forced_ok:
            print("ACCEPTED: forced past the gate, which --allow-forced allows")
    return code


def register(commands: Commands) -> None:
    v = command(
        commands,
        "verify",
        cmd_verify,
        help="check an image on this host against its server's signed statements",
        description="Find the image as `lxc` would, fetch its server's signed statements "
        "and check them with the keys `icefloe pin` saved: exit 0 verified, 1 refused "
        "(unsigned, altered, another image's, an unpinned key, revoked, untested, failed), "
        "3 forced past the gate (0 with --allow-forced), 2 cannot tell.",
    )
    v.add_argument("image", help="[<remote>:]<alias-or-fingerprint>, as `lxc launch` takes it")
    v.add_argument("--json", action="store_true", help="the verdict as JSON")
    v.add_argument(
        "--allow-forced", action="store_true", help="a version forced past the gate passes too"
    )
    p = command(
        commands,
        "pin",
        cmd_pin,
        help="pin an image server's provenance keys for `icefloe verify`",
        description="Save the keys the server lists (GET /api/v1/keys) and print their "
        "keyids, to compare with the server's operator out of band.",
    )
    p.add_argument("--remote", help="the server of this `lxc` (or `incus`) remote")
    for each in (v, p):
        each.add_argument("--incus", action="store_true", help="ask `incus`, not `lxc`")
        each.add_argument(
            "--server",
            help="the image server's URL (a feed URL will do); default: where the image came "
            "from, else ICEFLOE_SERVER_URL",
        )
