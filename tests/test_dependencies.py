"""One source of truth for dependency pins: pyproject.toml says which ranges Icefloe works
with, requirements.lock pins the versions the venv (deploy/setup-host) and the wheel are
installed with. Every requirement must be pinned in the lock, inside its range."""

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core.config import REPO_DIR


def test_the_lock_pins_every_requirement_inside_its_range() -> None:
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    pins = {}
    for line in (REPO_DIR / "requirements.lock").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if name and not name.startswith("#"):
            pins[canonicalize_name(name)] = version
    problems = [
        f"{r}: locked at {pins.get(canonicalize_name(r.name), 'nothing')}"
        for r in wanted
        if not r.specifier.contains(pins.get(canonicalize_name(r.name), ""), prereleases=True)
    ]
    assert problems == []
