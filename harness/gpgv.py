"""A mirror's check of a signed feed: Debian's `gpgv` against the published public key,
as simplestreams' own readers run it (`gpgv --keyring=<keyring> -`), and simplestreams' own
`sstream-mirror` (PyPI's python-simplestreams) copying a signed feed."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path


class BadSignature(AssertionError):
    """gpgv refused the message; its words say why."""


def keyring(armored: str | bytes, dest: Path) -> Path:
    """The ASCII-armored key (icefloe.asc) as the binary keyring gpgv reads, at `dest`."""
    data = armored.encode() if isinstance(armored, str) else armored
    with tempfile.TemporaryDirectory() as home:  # gpg --dearmor keeps no state, wants a home
        done = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--dearmor"],
            input=data,
            capture_output=True,
            timeout=30,
            check=True,
        )
    dest.write_bytes(done.stdout)
    return dest


def verify(ring: Path, signed: bytes) -> bytes:
    """The signed text of a clear-signed message whose signature `ring` verifies (without
    the line break gpgv ends it with); BadSignature otherwise."""
    done = subprocess.run(
        ["gpgv", "--keyring", str(ring), "--output", "-", "-"],
        input=signed,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BadSignature(done.stderr.decode(errors="replace"))
    return done.stdout.removesuffix(b"\n")


def sstream_mirror(
    index: str, ring: Path, dest: Path, ca: Path | None = None
) -> subprocess.CompletedProcess:
    """simplestreams' `sstream-mirror --keyring` of the feed whose index.sjson is at `index`
    (a URL, with the server's certificate `ca`, or a path) into `dest`."""
    env = os.environ | ({"REQUESTS_CA_BUNDLE": str(ca)} if ca else {})
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("sstream-mirror")),
            f"--keyring={ring}",
            index,
            str(dest),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
