"""`icefloe server` as a process of its own, for the tests that kill it."""

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.config import REPO_DIR, ServerSettings


def serve(state_dir: Path, port: int) -> subprocess.Popen:
    """`icefloe server` in a process of its own, answering."""
    env = os.environ | {
        "ICEFLOE_STATE_DIR": str(state_dir),
        "ICEFLOE_SERVER_PORT": str(port),
        "ICEFLOE_SERVER_PUBLIC_FEEDS": "true",
    }
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "server"], env=env, cwd=REPO_DIR)
    settings = ServerSettings(state_dir=state_dir, port=port)
    for _ in range(1200):  # a ceiling: a loaded 2-core CI machine imports slowly
        assert proc.poll() is None, "the server exited"
        try:
            ca = ssl.create_default_context(cafile=settings.cert_path)
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ca, timeout=1)
            return proc
        except (httpx.TransportError, OSError):
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not answer within 120 s")
