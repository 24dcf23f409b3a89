"""The tests keep their shared state (the busybox debs, the LXD and Incus logs deploy/setup-host
writes) in the checkout's `.state`, as `deploy/test` sets it, unless ICEFLOE_STATE_DIR is set."""

import os
from pathlib import Path

os.environ.setdefault("ICEFLOE_STATE_DIR", str(Path(__file__).resolve().parents[1] / ".state"))
