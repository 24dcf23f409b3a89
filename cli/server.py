"""On the server host: `icefloe server` runs the image server, `icefloe export` writes a
channel's feed from its catalog and store, `icefloe keys rotate` replaces the key that signs
attestations. Server modules load only when one of them runs."""

import argparse
import sys
from pathlib import Path

from cli.args import Commands, actions, command
from core.config import Settings


def cmd_server(_: argparse.Namespace) -> int:
    import uvicorn

    from server_api.main import create_app
    from server_api.tls import ensure_self_signed

    settings = Settings().server
    if ensure_self_signed(settings.cert_path, settings.key_path, settings.host):
        print(f"made a self-signed certificate: {settings.cert_path}")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.cert_path,
        ssl_keyfile=settings.key_path,
        log_level="warning",
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A channel's feed as a static tree in DIR, from the catalog and store on the server host
    (as `icefloe token` reads them): for an offline site or to seed a mirror."""
    from sqlmodel import Session

    from core.catalog import Channel, Flavour
    from server_api.db import make_engine
    from server_api.feeds import generation, render
    from server_api.sjson import StreamSigner
    from server_api.static import export
    from server_api.store import FileStore

    settings = Settings().server
    flavour = Flavour(args.flavour) if args.flavour else None
    engine = make_engine(settings.db_url)
    with Session(engine) as session:
        feed = render(session, Channel(args.channel), flavour, generation(session))
    signer = StreamSigner.open(settings.gnupg_home, engine, make=False)
    dest = Path(args.dir)
    try:
        missing = export(FileStore(settings.files_dir), feed, signer, dest)
    except OSError as exc:
        print(f"icefloe: cannot write {dest}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        signer.close()
    signed = "" if signer.refused else ", their .sjson, icefloe.asc"
    print(f"{dest}: streams/v1/index.json, images.json{signed} and {len(feed.files)} files")
    if signer.refused:
        print(f"icefloe: the feeds are not signed: {signer.refused}", file=sys.stderr)
    if missing:
        print(f"icefloe: the store lacks {len(missing)} listed files", file=sys.stderr)
    return 1 if missing or signer.refused else 0


def cmd_keys(args: argparse.Namespace) -> int:
    args.run(args)
    return 0


def rotate_key(_: argparse.Namespace) -> None:
    """A new provenance key in the key file; the old one retired (still listed, so what it
    signed verifies), its signature kept and the new key's added to every stored envelope.
    Also the way back for a server whose key file was lost."""
    from sqlmodel import Session

    from server_api.db import make_engine
    from server_api.provenance import rotate

    settings = Settings().server
    with Session(make_engine(settings.db_url)) as session:
        done = rotate(session, settings.provenance_key_path)
    print(f"provenance key {done.new} in {settings.provenance_key_path}")
    if done.old:
        print(f"retired {done.old}; {done.envelopes} envelopes now also signed by {done.new}")
    print("hosts pinning the old key: pin the new one (GET /api/v1/keys)")


def register(commands: Commands) -> None:
    command(commands, "server", cmd_server, help="run the image server (HTTPS)")
    ex = command(
        commands,
        "export",
        cmd_export,
        help="write a channel's feed and files as a static tree (an offline site, a mirror seed)",
        description="On the server host: DIR/streams/v1/index.json, images.json, their signed "
        "forms (.sjson) with the key's public half (icefloe.asc) and DIR/files/ "
        "(hard links to the store where it can). Run again to update; files a previous export "
        "listed stay, so hosts with a cached index still find them.",
    )
    ex.add_argument("--channel", choices=["active", "testing"], required=True)
    ex.add_argument("--flavour", choices=["lxd", "incus"], help="default: both, as public feeds")
    ex.add_argument("dir", metavar="DIR")
    keys = actions(
        commands,
        "keys",
        cmd_keys,
        help="the server's signing keys (on the server host)",
        description="On the server host, beside the catalog: the key that signs each version's "
        "attestations. Its public half is served at /api/v1/keys.",
    )
    keys("rotate", rotate_key, "make a new provenance key, retire the old one, re-sign")
