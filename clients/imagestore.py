"""A host's images and remotes as its `lxc` (or `incus`) client sees them, for `icefloe
verify`: through the client itself, so that `[<remote>:]<alias-or-fingerprint>` means what it
means to `lxc launch` (the user's remotes, their pinned certificates, the host's arch)."""

import json
import os
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

# Incus keeps `lxc`'s commands, JSON and remote syntax; only its names differ.
CONF_VARIABLE = {"lxc": "LXD_CONF", "incus": "INCUS_CONF"}
CONF_DEFAULT = {"lxc": "~/.config/lxc", "incus": "~/.config/incus"}
LOCAL = "local"


class ImageLookupFailed(LookupError):
    """The image or remote is not what the client knows; the message says what it found."""


class HostImage(BaseModel):
    """The image `icefloe verify` asks about, and where the host got (or would get) it."""

    fingerprint: str
    remote: str  # `local` for the host's own store
    aliases: list[str] = []
    architecture: str | None = None
    feed: str | None = None  # the simplestreams URL it came from (or the remote serves)
    certificate: str | None = None  # PEM the client pins for that server, if any


class ImageStore:
    """The `lxc` (or `incus`) client with the user's own configuration."""

    def __init__(self, program: str = "lxc") -> None:
        self.program = program

    def _run(self, *args: str) -> str:
        try:
            r = subprocess.run(
                [self.program, *args], capture_output=True, text=True, timeout=120, check=False
            )
        except FileNotFoundError:
            raise ImageLookupFailed(f"no `{self.program}` client on this host") from None
        if r.returncode != 0:
            said = r.stderr.strip().removeprefix("Error: ")
            raise ImageLookupFailed(f"{self.program} {' '.join(args)}: {said}")
        return r.stdout

    def conf_dir(self) -> Path:
        return Path(os.environ.get(CONF_VARIABLE[self.program]) or CONF_DEFAULT[self.program])

    def remotes(self) -> dict[str, dict[str, str]]:
        return dict(json.loads(self._run("remote", "list", "--format", "json")))

    def find(self, ref: str) -> HostImage:
        """The image `ref` names: `[<remote>:]<alias-or-fingerprint>`, `local:` or no
        remote being the host's own store, as `lxc` splits it (at the first colon)."""
        remote, colon, name = ref.partition(":")
        if not colon:
            remote, name = LOCAL, ref
        if not name:
            raise ImageLookupFailed(f"{ref!r} names no image: [<remote>:]<alias-or-fingerprint>")
        if remote == LOCAL:
            return self._local(name)
        return self._remote(remote, name)

    def _local(self, name: str) -> HostImage:
        images = json.loads(self._run("image", "list", "--format", "json"))
        by_alias = [i for i in images if name in {a["name"] for a in i.get("aliases") or []}]
        matches = by_alias or [i for i in images if i["fingerprint"].startswith(name.lower())]
        if not matches:
            raise ImageLookupFailed(
                f"the host's image store has no image with alias or fingerprint {name!r}"
                f" ({self.program} image list)"
            )
        if len(matches) > 1:
            raise ImageLookupFailed(
                f"{name!r} is the start of {len(matches)} fingerprints: give more of it"
            )
        i = matches[0]
        source = i.get("update_source") or {}
        return HostImage(
            fingerprint=i["fingerprint"],
            remote=LOCAL,
            aliases=[a["name"] for a in i.get("aliases") or []],
            architecture=i.get("architecture"),
            feed=source.get("server") or None,
            certificate=source.get("certificate") or None,
        )

    def remote(self, remote: str) -> tuple[str, str | None]:
        """The remote's URL, and the certificate the client pins for it if it does."""
        remotes = self.remotes()
        if remote not in remotes:
            raise ImageLookupFailed(
                f"no remote {remote!r} ({self.program} remote list has {', '.join(remotes)})"
            )
        cert = self.conf_dir().expanduser() / "servercerts" / f"{remote}.crt"
        return remotes[remote]["Addr"], cert.read_text() if cert.is_file() else None

    def _remote(self, remote: str, name: str) -> HostImage:
        feed, certificate = self.remote(remote)
        # The client resolves the alias through the remote's feed for this host's arch, as
        # `lxc launch` would; its text answer is the one form every version prints.
        info = self._run("image", "info", f"{remote}:{name}")
        fields = dict(re.findall(r"^(\w[\w ]*): *(.*)$", info, re.MULTILINE))
        return HostImage(
            fingerprint=fields["Fingerprint"],
            remote=remote,
            architecture=fields.get("Architecture"),
            feed=feed,
            certificate=certificate,
        )
