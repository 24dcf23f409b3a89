"""A mirror's check of a signed feed: Debian's `gpgv` against the published public key,
as simplestreams' own readers run it (`gpgv --keyring=<keyring> -`)."""

import subprocess
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
