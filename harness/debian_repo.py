"""A Debian-format repository made with Debian's own tools from real .debs, served over
loopback HTTP like a mirror: `dpkg-scanpackages` writes each arch's Packages (and .gz, .xz),
`apt-ftparchive release` the Release, `gpg --clearsign` (a throwaway key) the InRelease.
`rebuild` repacks one .deb at a higher version (`dpkg-deb -R`, then `-b`), as a mirror's
package update would; the server counts the requests for each path."""

import functools
import gzip
import lzma
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMPONENT = "main"
# apt-ftparchive writes Valid-Until only if asked: this one is long past, like sid's often is.
EXPIRED = "Valid-Until: Thu, 01 Jan 2026 00:00:00 UTC"


def _run(*cmd: str, **kw: object) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout  # type: ignore[call-overload]


def repack(deb: Path, out_dir: Path, version: str) -> Path:
    """`deb` rebuilt with its control file's Version replaced: the same package, newer."""
    tree = out_dir / f".{deb.stem}"
    _run("dpkg-deb", "-R", str(deb), str(tree))
    control = tree / "DEBIAN" / "control"
    lines = control.read_text().splitlines()
    control.write_text(
        "\n".join(f"Version: {version}" if x.startswith("Version:") else x for x in lines) + "\n"
    )
    package = _run("dpkg-deb", "--field", str(deb), "Package").strip()
    arch = _run("dpkg-deb", "--field", str(deb), "Architecture").strip()
    out = out_dir / f"{package}_{version.replace(':', '%3a')}_{arch}.deb"
    _run("dpkg-deb", "--root-owner-group", "-Zxz", "-b", str(tree), str(out))
    _run("rm", "-rf", str(tree))
    return out


@dataclass
class DebianRepo:
    """`root`/dists/`suite` and `root`/pool; `url` once served (the mirror's base URL)."""

    root: Path
    suite: str
    arches: list[str]
    requests: Counter[str] = field(default_factory=Counter)
    url: str = ""

    def __post_init__(self) -> None:
        self._gnupg = self.root.parent / f".gnupg-{self.suite}"
        self._gnupg.mkdir(mode=0o700, exist_ok=True)
        gpg = ("gpg", "--batch", "--homedir", str(self._gnupg), "--passphrase", "")
        _run(*gpg, "--quick-gen-key", f"{self.suite}@icefloe.test", "ed25519", "sign", "never")
        self._gpg = gpg
        self._stop_agent()

    def _stop_agent(self) -> None:
        """gpg starts an agent that outlives the test: stop it after each use."""
        _run("gpgconf", "--homedir", str(self._gnupg), "--kill", "gpg-agent")

    def add(self, *debs: Path) -> None:
        pool = self.root / "pool" / COMPONENT
        pool.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            (pool / deb.name).write_bytes(deb.read_bytes())

    def remove(self, name_glob: str) -> None:
        for deb in (self.root / "pool" / COMPONENT).glob(name_glob):
            deb.unlink()

    def index(self) -> None:
        """Packages per arch, then Release and InRelease, as a mirror push writes them."""
        dists = self.root / "dists" / self.suite
        for arch in self.arches:
            out = dists / COMPONENT / f"binary-{arch}"
            out.mkdir(parents=True, exist_ok=True)
            packages = _run("dpkg-scanpackages", "-a", arch, "pool", cwd=self.root)
            (out / "Packages").write_text(packages)
            (out / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
            (out / "Packages.xz").write_bytes(lzma.compress(packages.encode()))
        release = _run(
            "apt-ftparchive",
            "-o",
            f"APT::FTPArchive::Release::Suite={self.suite}",
            "-o",
            f"APT::FTPArchive::Release::Codename={self.suite}",
            "-o",
            f"APT::FTPArchive::Release::Architectures={' '.join(self.arches)}",
            "-o",
            f"APT::FTPArchive::Release::Components={COMPONENT}",
            "release",
            ".",
            cwd=dists,
        )
        date_end = release.index("\n", release.index("Date:"))
        release = release[: date_end + 1] + EXPIRED + release[date_end:]
        (dists / "Release").write_text(release)
        (dists / "InRelease").unlink(missing_ok=True)
        _run(*self._gpg, "--clearsign", "-o", str(dists / "InRelease"), str(dists / "Release"))
        self._stop_agent()

    def serve(self) -> "ServedRepo":
        return ServedRepo(self)


class ServedRepo:
    """The repository over HTTP on 127.0.0.1 (a port of its own) while in a `with`."""

    def __init__(self, repo: DebianRepo) -> None:
        self.repo = repo

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                repo.requests[self.path] += 1
                super().do_GET()

            def log_message(self, *_: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(repo.root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        repo.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> DebianRepo:
        self._thread.start()
        return self.repo

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
