"""Small busybox catalogues the refresh tests write: one-arch definitions that build and boot
in seconds, an allow_failure one whose check fails for real, and a file that does not validate."""

import uuid
from pathlib import Path

import yaml

# A check that fails inside the instance, for real: the image's verdict, not a fault.
ALWAYS_FAILS = {"name": "always-fails", "command": "false"}


def definition(release: str, checks: list | None = None, **extra: object) -> dict:
    return {
        "os": "busybox",
        "release": release,
        "arches": ["x86_64"],
        "builder": "busybox",
        "checks": checks or ["boots"],
        **extra,
    }


def write(directory: Path, name: str, fields: dict) -> str:
    """The definition file `name`.yaml; returns its image's name."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(fields))
    return f"{fields['os']}:{fields['release']}:{fields.get('variant', 'default')}"


def unique(prefix: str) -> str:
    """A release no other test (or earlier run on this server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
