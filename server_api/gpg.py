"""Every call of Debian's `gpg` and `gpgconf` the server makes, on one GnuPG home of its own.

The secret key stays in the home (`private-keys-v1.d`, used only by the gpg-agent that gpg
starts for it); nothing here reads it or passes it on. Each call runs alone on its home, in
this process and across processes (a lock file beside the home), so no two gpg runs update
its files or race to start its agent at once. The agent's sockets live in the home unless
that path is too long for a socket name (108 bytes; test and state dirs can be deep): then
the home holds libassuan's redirect files and the sockets a private directory in /tmp.
"""

import fcntl
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

# The longest line gpg clear-signs whole: it cuts a longer one short, with only a warning
# ("input line longer than 19995 characters", counting its line end and more).
MAX_LINE = 19993
SOCKETS = ("S.gpg-agent", "S.gpg-agent.extra", "S.gpg-agent.browser", "S.gpg-agent.ssh")
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes with its NUL; leave room
TIMEOUT_S = 60

_lock = threading.Lock()


class GpgError(Exception):
    """gpg failed; the message is its own (it names no secret)."""


@contextmanager
def _alone(home: Path) -> Iterator[None]:
    with _lock, home.with_name(home.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    with _alone(home):
        return _run(home, *args, data=data)


def _run(home: Path, *args: str, data: bytes = b"") -> bytes:
    """One gpg run; the caller holds the home (`_alone`)."""
    if not home.is_dir():  # gpg would make an empty one
        raise GpgError(f"{home} is gone")
    if (home / SOCKETS[0]).is_file():
        _socket_dir(home)  # the redirect's target: gone with the agent that last used it
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--trust-model",
            "always",
            *args,
        ],
        input=data,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise GpgError(f"gpg failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _socket_dir(home: Path) -> Path:
    """A short directory of this user's own for the agent's sockets of `home`."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir(), f"icefloe-gpg-{os.getuid()}-{digest}")
    with suppress(FileExistsError):
        path.mkdir(mode=0o700)
    stat = path.lstat()
    if not path.is_dir() or path.is_symlink() or stat.st_uid != os.getuid() or stat.st_mode & 0o077:
        raise GpgError(f"{path} is not a private directory of this user's: remove it")
    return path


def prepare(home: Path, create: bool) -> None:
    """The home ready for gpg (0700; `create`: made if missing) with its agent's sockets
    where their names fit."""
    if create:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    if len(str(home.resolve() / SOCKETS[2])) <= MAX_SOCKET_PATH:
        return
    sockets = _socket_dir(home)  # made before each gpg run
    for name in SOCKETS:
        (home / name).write_text(f"%Assuan%\nsocket={sockets / name}\n")


def ensure_key(home: Path, uid: str) -> tuple[str, bool]:
    """The fingerprint of the home's one secret key, made first (ed25519, no passphrase, no
    expiry) if it holds none: (fingerprint, made). One process makes it, however many start."""
    with _alone(home):
        held = _secret_fingerprints(home)
        made = not held
        if made:
            _run(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
            held = _secret_fingerprints(home)
    if len(held) != 1:
        raise GpgError(f"{home} holds {len(held)} secret keys: keep the one the server signs with")
    return held[0], made


def secret_fingerprints(home: Path) -> list[str]:
    """The fingerprints of the primary keys whose secret the home holds (asking no agent:
    the secret is the agent's file named by the key's keygrip)."""
    with _alone(home):
        return _secret_fingerprints(home)


def _secret_fingerprints(home: Path) -> list[str]:
    listed = _run(home, "--with-colons", "--with-keygrip", "--list-keys").decode()
    fingerprints, fingerprint, primary = [], "", False
    for line in listed.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            primary = fields[0] == "pub"
        elif fields[0] == "fpr" and primary:
            fingerprint = fields[9]
        elif fields[0] == "grp" and primary:
            if (home / "private-keys-v1.d" / f"{fields[9]}.key").is_file():
                fingerprints.append(fingerprint)
            primary = False
    return fingerprints


def public_key(home: Path, fingerprint: str) -> str:
    """The key's public half, ASCII-armored."""
    return _gpg(home, "--armor", "--export", fingerprint).decode()


def clearsign(home: Path, fingerprint: str, text: bytes) -> bytes:
    """`text` as an OpenPGP clear-signed message. A line longer than gpg signs whole is
    refused (gpg would sign it cut short)."""
    if any(len(line) > MAX_LINE for line in text.splitlines()):
        raise ValueError(f"a line longer than {MAX_LINE} bytes cannot be clear-signed")
    return _gpg(home, "--local-user", fingerprint, "--clearsign", "--output", "-", data=text)


def stop_agent(home: Path) -> None:
    """Stop the home's gpg-agent (gpg started it on first use; none: nothing happens), and
    remove its socket directory in /tmp if it has one."""
    if not home.is_dir():
        return
    with _alone(home):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        redirect = home / SOCKETS[0]
        if redirect.is_file():
            with suppress(OSError):  # another process's agent may have started there since
                _socket_dir(home).rmdir()
