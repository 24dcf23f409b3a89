"""deploy/'s scripts run as the user `nobody`, from a copy any user can reach: the checkout may
sit in a directory only root enters (/root, any `mktemp -d`), where nobody gets exit 126."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import REPO_DIR

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@contextmanager
def readable_deploy() -> Iterator[Path]:
    """A checkout of deploy/ alone under /tmp (mode 1777, so every user passes), every file
    readable and every directory enterable by all, whatever the umask of the checkout."""
    top = Path(tempfile.mkdtemp(prefix="icefloe-deploy-", dir="/tmp"))
    try:
        shutil.copytree(
            REPO_DIR / "deploy", top / "deploy", ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in [top, *top.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode | (0o555 if path.is_dir() or mode & 0o100 else 0o444))
        yield top
    finally:
        shutil.rmtree(top)


def run_script(script: Path, *args: str, nobody: bool = False) -> subprocess.CompletedProcess:
    """The script with args, as root or as `nobody` (HOME=/ so nothing reads root's files)."""
    if not nobody:
        return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=900)
    env = {"PATH": os.defpath + ":/usr/sbin:/sbin", "HOME": "/", "LANG": "C.UTF-8"}
    argv = [*NOBODY, str(script), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
