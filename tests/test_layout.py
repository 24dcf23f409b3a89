"""The README's "Where things live" stays true: import-linter checks the contracts in
pyproject.toml (dependencies point inward; the domain imports nothing with side effects)."""

import subprocess
import sys
from pathlib import Path

from core.config import REPO_DIR


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO_DIR, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
