"""The `lxc` client as the tests drive it: a config directory of its own, remotes with pinned
certificates (subclassed for `incus`)."""

import json
import os
import shutil
import subprocess
from pathlib import Path


class Lxc:
    """The `lxc` CLI with its own config directory (remotes and pinned certificates)."""

    program = "lxc"
    cache = Path("/var/cache/lxd")  # the daemon's copy of each remote's feed, by sha256(URL)

    def __init__(self, conf: Path) -> None:
        self.env = os.environ | {"LXD_CONF": str(conf), "LXC_CONF": str(conf)}
        self.conf = conf
        # Images a test had copied or launched, which the `lxc` fixture deletes afterwards
        # (only these: the daemon is shared with other tests and concurrent runs).
        self.took: set[str] = set()

    def __call__(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run(
            [self.program, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        assert r.returncode == 0, f"{self.program} {' '.join(args)}: {r.stderr.strip()}"
        return r.stdout

    def quietly(self, *args: str) -> None:
        """A clean-up step: something already gone is no failure."""
        subprocess.run([self.program, *args], env=self.env, capture_output=True, timeout=120)

    def add_remote(self, name: str, url: str, cert: Path) -> None:
        (self.conf / "servercerts").mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, self.conf / "servercerts" / f"{name}.crt")
        self("remote", "add", name, url, "--protocol", "simplestreams")

    def images(self, remote: str) -> dict[str, list[str]]:
        """fingerprint -> aliases of every image the remote lists."""
        listed = json.loads(self("image", "list", f"{remote}:", "--format", "json"))
        return {i["fingerprint"]: [a["name"] for a in i["aliases"] or []] for i in listed}
